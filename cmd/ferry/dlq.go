package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/consume/deadletters"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

func dlqCommand() command {
	return command{
		name:    "dlq",
		args:    "list|replay|discard [flags]",
		summary: "list, replay or discard consumers' dead letters",
		run:     runDLQ,
	}
}

// dlqCommands are the subcommands of ferry dlq, in the order its usage
// lists them. They are commands of their own, named "dlq NAME".
func dlqCommands() []command {
	return []command{
		{
			name:    "list",
			args:    "[--db URL | --config FILE] [--table T] [--consumer C] [--source S] [--type T] [--id ID] [--status S] [--limit N] [--after SEQ] [--json]",
			summary: "list dead letters, the DEAD ones unless --status says otherwise",
			help: `Lists the dead letters of the consumers that keep them in a table (package
consume/deadletters), in the order they died, with the reason of the last
attempt. Filters combine; --after pages through a long list.`,
			run: runDLQList,
		},
		{
			name:    "replay",
			args:    "[--db URL | --config FILE] [--table T] [--outbox-table T] (--id ID | --consumer C | --source S | --type T)... | --all [--status S] [--limit N] [--topic T] [--lane L]",
			summary: "write dead letters back into the outbox, for the relay to publish again",
			help: `Writes DEAD letters into the outbox of the same database as new messages
(id ORIGINAL:replay:SEQ, header replay-of: ORIGINAL) and marks them REPLAYED,
in one transaction per batch; the relay then publishes them through its
routes, in the order they died. Choose the letters with --id or filters, or
all DEAD letters with --all.

Every consumer of the topic receives a replayed message, under its new id:
to reach only the consumer that gave up, replay to a topic only it reads
with --topic. Exits with 1 if no DEAD letter matches.`,
			run: runDLQReplay,
		},
		{
			name:    "discard",
			args:    "[--db URL | --config FILE] [--table T] (--id ID | --consumer C | --source S | --type T)... | --all",
			summary: "give up on dead letters: mark them DISCARDED",
			help: `Marks DEAD letters DISCARDED: they stay in the table, out of the DEAD
ones, and can still be replayed with 'ferry dlq replay --status DISCARDED'.
Choose the letters with --id or filters, or all DEAD letters with --all.
Exits with 1 if no DEAD letter matches.`,
			run: runDLQDiscard,
		},
	}
}

// runDLQ runs the subcommand args[0] as a command of its own, so that its
// flags, usage and messages say "ferry dlq NAME".
func runDLQ(ctx context.Context, c *cli, args []string) error {
	subs := dlqCommands()
	if len(args) == 0 {
		dlqUsage(c.stderr, subs)
		return &exitError{code: exitUsage}
	}
	switch args[0] {
	case "-h", "-help", "--help":
		dlqUsage(c.stdout, subs)
		return nil
	}
	i := slices.IndexFunc(subs, func(s command) bool { return s.name == args[0] })
	if i < 0 {
		names := make([]string, len(subs))
		for i, s := range subs {
			names[i] = s.name
		}
		msg := fmt.Sprintf("unknown subcommand %q: use %s", args[0], strings.Join(names, ", "))
		if s := closest(args[0], names); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		return usagef("%s", msg)
	}
	sub := &cli{cmd: subs[i], stdout: c.stdout, stderr: c.stderr}
	sub.cmd.name = "dlq " + sub.cmd.name
	if code := sub.exit(sub.cmd.run(ctx, sub, args[1:])); code != exitOK {
		return &exitError{code: code} // sub.exit has said why
	}
	return nil
}

func dlqUsage(w io.Writer, subs []command) {
	fmt.Fprintln(w, "ferry dlq works on the dead letters that consumers keep in a table of the")
	fmt.Fprintln(w, "database (package consume/deadletters).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: ferry dlq list|replay|discard [flags]")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range subs {
		fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'ferry dlq COMMAND -h' for a command's flags.")
}

// dlqFlags are the database flags of the dlq commands: those of the other
// commands, except that --table names the dead-letter table, and the
// outbox table, which only replay needs, is --outbox-table.
type dlqFlags struct {
	db    dbFlags
	table string
}

func (f *dlqFlags) register(fs *flag.FlagSet, outbox bool) {
	var theirs flag.FlagSet
	f.db.register(&theirs)
	fs.StringVar(&f.db.url, "db", "", "the database `URL`: sqlite:FILE, postgres://..., mysql://... (default $"+config.EnvDatabaseURL+", or the config's)")
	cfg := theirs.Lookup("config")
	fs.Var(cfg.Value, "config", cfg.Usage)
	fs.StringVar(&f.table, "table", deadletters.DefaultTable, "the dead-letter table's `name`")
	if outbox {
		t := theirs.Lookup("table")
		fs.Var(t.Value, "outbox-table", t.Usage)
	}
}

// dlqEnv is what a dlq command works on.
type dlqEnv struct {
	db    database
	st    ferry.Store
	dead  *deadletters.Table
	flags string // the flags that select the database and table again
}

// open opens the database and checks that the dead-letter table is there.
// The caller closes e.st.
func (f *dlqFlags) open(ctx context.Context) (*dlqEnv, error) {
	if err := sqlstore.CheckTable(f.table); err != nil {
		return nil, usagef("--table: %s", strings.TrimPrefix(err.Error(), "ferry: "))
	}
	db, _, st, err := f.db.openNow(ctx)
	if err != nil {
		return nil, err
	}
	h, ok := st.(interface{ SQLDB() *sql.DB })
	if !ok {
		st.Close()
		return nil, fmt.Errorf("the %s store has no database/sql handle for the dead-letter table", st.Dialect())
	}
	dead, err := deadletters.New(h.SQLDB(), st.Dialect(), deadletters.Options{Table: f.table})
	if err != nil {
		st.Close()
		return nil, err
	}
	// db.flags ends with the outbox's --table, which is --outbox-table
	// here and which listing needs not.
	flags := db.flags
	if f.db.table != "" {
		flags = strings.TrimSuffix(flags, " --table "+f.db.table)
	}
	if f.table != deadletters.DefaultTable {
		flags = strings.TrimSpace(flags + " --table " + f.table)
	}
	e := &dlqEnv{db: db, st: st, dead: dead, flags: flags}
	if _, err := dead.List(ctx, deadletters.Filter{Limit: 1}); err != nil {
		st.Close()
		return nil, e.explain(err)
	}
	return e, nil
}

// explain turns a missing dead-letter table into advice; other errors
// pass through.
func (e *dlqEnv) explain(err error) error {
	if err == nil || !missingTable(err) {
		return err
	}
	return fmt.Errorf("the dead-letter table %s does not exist in %s%s: consumers that keep dead letters create it when they start (deadletters.Table.Migrate); is --table right?\n(%w)",
		e.dead.Name(), store.Describe(e.db.url), e.db.origin(), err)
}

// letterReport is one dead letter in dlq list's JSON output.
type letterReport struct {
	Seq         int64              `json:"seq"`
	Consumer    string             `json:"consumer"`
	Source      string             `json:"source"`
	ID          string             `json:"id"`
	Topic       string             `json:"topic,omitempty"`
	Key         string             `json:"key,omitempty"`
	Type        string             `json:"type,omitempty"`
	Headers     map[string]string  `json:"headers,omitempty"`
	PayloadSize int                `json:"payload_size"`
	OccurredAt  *time.Time         `json:"occurred_at,omitempty"`
	Status      deadletters.Status `json:"status"`
	Attempts    int                `json:"attempts"`
	DeadAt      time.Time          `json:"dead_at"`
	Reason      string             `json:"reason"`
	ReplayedAt  *time.Time         `json:"replayed_at,omitempty"`
	ReplayID    string             `json:"replay_id,omitempty"`
}

func letterReportOf(l deadletters.Letter) letterReport {
	t := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC()
		return &t
	}
	return letterReport{Seq: l.Seq, Consumer: l.Consumer, Source: l.Source, ID: l.ID, Topic: l.Topic, Key: l.Key, Type: l.Type,
		Headers: l.Headers, PayloadSize: len(l.Payload), OccurredAt: t(l.OccurredAt), Status: l.Status, Attempts: l.Attempts,
		DeadAt: l.DeadAt.UTC(), Reason: l.Reason, ReplayedAt: t(l.ReplayedAt), ReplayID: l.ReplayID}
}

func runDLQList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var (
		df  dlqFlags
		ids stringList
	)
	df.register(fs, false)
	consumer := fs.String("consumer", "", "only the letters of this `consumer`")
	source := fs.String("source", "", "only the letters read from this `source` (topic, subject, queue)")
	typ := fs.String("type", "", "only the letters of this message `type`")
	fs.Var(&ids, "id", "only the letters of this message `id`; repeat the flag or separate ids with commas")
	status := fs.String("status", "DEAD", "only the letters in this `state`: DEAD, REPLAYED, DISCARDED, or ALL")
	limit := fs.Int("limit", 100, "show at most `N` letters")
	after := fs.Int64("after", 0, "only letters after this `seq`, to page through a long list")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *limit < 1 {
		return usagef("--limit must be at least 1, got %d", *limit)
	}
	f := deadletters.Filter{Consumer: *consumer, Source: *source, Type: *typ, IDs: ids, Limit: *limit + 1, After: *after}
	if !strings.EqualFold(*status, "all") {
		f.Status = deadletters.Status(strings.ToUpper(*status))
		if !f.Status.Valid() {
			return usagef("--status %q: use DEAD, REPLAYED, DISCARDED or ALL", *status)
		}
	}
	e, err := df.open(ctx)
	if err != nil {
		return err
	}
	defer e.st.Close()
	letters, err := e.dead.List(ctx, f)
	if err != nil {
		return e.explain(err)
	}
	return printListing(c, letters, *limit, *asJSON, listing[deadletters.Letter, letterReport]{
		seq:    func(l deadletters.Letter) int64 { return l.Seq },
		report: letterReportOf,
		none:   "no dead letters match",
		header: "SEQ\tDEAD AT (UTC)\tCONSUMER\tSOURCE\tID\tTYPE\tKEY\tATTEMPTS\tSTATUS\tREASON",
		row: func(l deadletters.Letter) string {
			return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s", l.Seq, l.DeadAt.UTC().Format(time.DateTime),
				cell(l.Consumer, 20), cell(l.Source, 30), cell(l.ID, 40), cell(l.Type, 30), cell(l.Key, 30),
				l.Attempts, l.Status, cell(l.Reason, 60))
		},
	})
}

// dlqSelection is how replay and discard choose dead letters: by message
// id, by filters, or all of them with --all.
type dlqSelection struct {
	ids                   stringList
	consumer, source, typ string
	all                   bool
}

func (s *dlqSelection) register(fs *flag.FlagSet, verb string) {
	fs.Var(&s.ids, "id", "the message `id` whose dead letters to "+verb+"; repeat the flag or separate ids with commas")
	fs.StringVar(&s.consumer, "consumer", "", "only the letters of this `consumer`")
	fs.StringVar(&s.source, "source", "", "only the letters read from this `source`")
	fs.StringVar(&s.typ, "type", "", "only the letters of this message `type`")
	fs.BoolVar(&s.all, "all", false, verb+" every DEAD letter")
}

// filter returns the selection's filter, or a usage error if it selects
// nothing in particular without --all.
func (s *dlqSelection) filter(verb string) (deadletters.Filter, error) {
	f := deadletters.Filter{IDs: s.ids, Consumer: s.consumer, Source: s.source, Type: s.typ}
	narrowed := len(f.IDs) > 0 || f.Consumer != "" || f.Source != "" || f.Type != ""
	switch {
	case s.all && narrowed:
		return f, usagef("--all means every dead letter: leave it out when you choose letters with --id, --consumer, --source or --type")
	case !s.all && !narrowed:
		return f, usagef("which dead letters? choose them with --id, --consumer, --source or --type, or give --all to %s every one", verb)
	}
	return f, nil
}

// String describes the selection for messages, as its flags.
func (s *dlqSelection) String() string {
	var parts []string
	if len(s.ids) > 0 {
		parts = append(parts, "--id "+quoteArg(strings.Join(s.ids, ",")))
	}
	for _, p := range []struct{ flag, v string }{{"--consumer", s.consumer}, {"--source", s.source}, {"--type", s.typ}} {
		if p.v != "" {
			parts = append(parts, p.flag+" "+quoteArg(p.v))
		}
	}
	if s.all {
		parts = append(parts, "--all")
	}
	return strings.Join(parts, " ")
}

// what describes the letters n counts in words: "3 dead letters of
// consumer billing from source orders".
func (s *dlqSelection) what(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", n, plural(n, "dead letter", "dead letters"))
	if s.consumer != "" {
		fmt.Fprintf(&b, " of consumer %s", s.consumer)
	}
	if s.source != "" {
		fmt.Fprintf(&b, " from source %s", s.source)
	}
	if s.typ != "" {
		fmt.Fprintf(&b, " of type %s", s.typ)
	}
	if len(s.ids) > 0 {
		fmt.Fprintf(&b, " with %s %s", plural(len(s.ids), "id", "ids"), strings.Join(s.ids, ", "))
	}
	return b.String()
}

func runDLQReplay(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var (
		df  dlqFlags
		sel dlqSelection
	)
	df.register(fs, true)
	sel.register(fs, "replay")
	topic := fs.String("topic", "", "write the messages to this outbox `topic` instead of their own")
	lane := fs.String("lane", ferry.DefaultLane, "write the messages to this outbox `lane`")
	status := fs.String("status", "DEAD", "replay the letters in this `state`: DEAD, or DISCARDED to take back a discard")
	limit := fs.Int("limit", 0, "replay at most `N` letters, the oldest first (0: all that match)")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	f, err := sel.filter("replay")
	if err != nil {
		return err
	}
	f.Status = deadletters.Status(strings.ToUpper(*status))
	if f.Status != deadletters.StatusDead && f.Status != deadletters.StatusDiscarded {
		return usagef("--status %q: replay takes DEAD or DISCARDED letters", *status)
	}
	if *limit < 0 {
		return usagef("--limit must not be negative, got %d", *limit)
	}
	f.Limit = *limit
	if *lane == "" {
		*lane = ferry.DefaultLane
	}
	e, err := df.open(ctx)
	if err != nil {
		return err
	}
	defer e.st.Close()
	// The outbox must be there before the first batch, which would fail
	// on it with a less helpful message.
	if err := e.db.checkSchema(ctx, e.st); err != nil {
		return err
	}
	n, err := e.dead.Replay(ctx, f, deadletters.Replayer{Store: e.st, Topic: *topic, Lane: *lane})
	if err != nil {
		if n > 0 {
			return fmt.Errorf("replayed %s into the outbox, then failed; the rest are still %s: %w", sel.what(n), f.Status, err)
		}
		return e.explain(err)
	}
	if n == 0 {
		return dlqNoneMatched(ctx, c, e, &sel, f.Status)
	}
	where := "lane " + *lane
	if *topic != "" {
		where += ", topic " + *topic
	}
	fmt.Fprintf(c.stdout, "replayed %s into the outbox (%s); the relay publishes %s\n", sel.what(n), where, plural(n, "it", "them"))
	return nil
}

func runDLQDiscard(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var (
		df  dlqFlags
		sel dlqSelection
	)
	df.register(fs, false)
	sel.register(fs, "discard")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	f, err := sel.filter("discard")
	if err != nil {
		return err
	}
	e, err := df.open(ctx)
	if err != nil {
		return err
	}
	defer e.st.Close()
	n, err := e.dead.Discard(ctx, f)
	if err != nil {
		if n > 0 {
			return fmt.Errorf("discarded %s, then failed: %w", sel.what(n), err)
		}
		return e.explain(err)
	}
	if n == 0 {
		return dlqNoneMatched(ctx, c, e, &sel, deadletters.StatusDead)
	}
	fmt.Fprintf(c.stdout, "discarded %s; %s in the table as DISCARDED\n", sel.what(n), plural(n, "it stays", "they stay"))
	return nil
}

// dlqNoneMatched reports that a selection changed nothing, and why if it
// can tell, and returns the exit error.
func dlqNoneMatched(ctx context.Context, c *cli, e *dlqEnv, sel *dlqSelection, want deadletters.Status) error {
	if sel.all {
		fmt.Fprintf(c.stderr, "ferry %s: there are no %s letters, so nothing changed\n", c.cmd.name, want)
	} else {
		fmt.Fprintf(c.stderr, "ferry %s: no %s letter matches %s, so nothing changed\n", c.cmd.name, want, sel)
	}
	if len(sel.ids) > 0 {
		letters, err := e.dead.List(ctx, deadletters.Filter{IDs: sel.ids, Limit: 100})
		if err == nil {
			seen := map[string]bool{}
			for _, l := range letters {
				seen[l.ID] = true
				line := fmt.Sprintf("the letter %d (consumer %s, id %s) is %s", l.Seq, l.Consumer, l.ID, l.Status)
				if l.ReplayID != "" {
					line += " as " + l.ReplayID
				}
				fmt.Fprintf(c.stderr, "  %s\n", line)
			}
			for _, id := range sel.ids {
				if !seen[id] {
					fmt.Fprintf(c.stderr, "  no dead letter has id %s\n", id)
				}
			}
		}
	}
	fmt.Fprintf(c.stderr, "see the %s letters with: ferry dlq list%s --status %s\n", want, prefixSpace(e.flags), want)
	return &exitError{code: exitFailure}
}
