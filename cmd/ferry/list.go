package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/ferry-dev/ferry"
)

func listCommand() command {
	return command{
		name:    "list",
		args:    "[--db URL | --config FILE] [--status S] [--lane L] [--topic T] [--key K] [--limit N] [--after SEQ] [--json]",
		summary: "list messages, such as the FAILED ones",
		help: `Lists messages in the order they were written, with their state, failed
attempts and last error. Filters combine; --after pages through a long list.`,
		run: runList,
	}
}

// messageReport is one message in list's JSON output.
type messageReport struct {
	Seq         int64             `json:"seq"`
	ID          string            `json:"id"`
	Lane        string            `json:"lane"`
	Topic       string            `json:"topic"`
	Key         string            `json:"key,omitempty"`
	Type        string            `json:"type,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Status      ferry.Status      `json:"status"`
	Attempts    int               `json:"attempts"`
	PayloadSize int               `json:"payload_size"`
	OccurredAt  *time.Time        `json:"occurred_at,omitempty"`
	AvailableAt *time.Time        `json:"available_at,omitempty"`
	ProcessedAt *time.Time        `json:"processed_at,omitempty"`
	FailedAt    *time.Time        `json:"failed_at,omitempty"`
	LastError   string            `json:"last_error,omitempty"`
}

func runList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var dbf dbFlags
	dbf.register(fs)
	status := fs.String("status", "", "only messages in this `state`: WAITING, DONE, FAILED or EXCLUDED")
	lane := fs.String("lane", "", "only messages of this `lane`")
	topic := fs.String("topic", "", "only messages of this `topic`")
	key := fs.String("key", "", "only messages with this `key`")
	limit := fs.Int("limit", 100, "show at most `N` messages")
	after := fs.Int64("after", 0, "only messages after this `seq`, to page through a long list")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	f := ferry.Filter{Lane: *lane, Topic: *topic, Key: *key, Limit: *limit + 1, AfterSeq: *after}
	if *status != "" {
		f.Status = ferry.Status(strings.ToUpper(*status))
		if !f.Status.Valid() {
			return usagef("--status %q: use WAITING, DONE, FAILED or EXCLUDED", *status)
		}
	}
	if *limit < 1 {
		return usagef("--limit must be at least 1, got %d", *limit)
	}
	db, _, st, err := dbf.openNow(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	recs, err := st.List(ctx, f)
	if err != nil {
		return db.explain(err)
	}
	return printListing(c, recs, *limit, *asJSON, listing[ferry.Record, messageReport]{
		seq:    func(r ferry.Record) int64 { return r.Seq },
		report: report,
		none:   "no messages match",
		header: "SEQ\tID\tLANE\tTOPIC\tKEY\tSTATUS\tATTEMPTS\tLAST ERROR",
		row: func(r ferry.Record) string {
			return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s", r.Seq, cell(r.ID, 40), cell(r.Lane, 20), cell(r.Topic, 30),
				cell(r.Key, 30), r.Status, r.Attempts, cell(r.LastError, 60))
		},
	})
}

// listing says how printListing shows items of type T: as JSON reports of
// type R, or as table rows.
type listing[T, R any] struct {
	seq    func(T) int64 // the position --after pages on
	report func(T) R
	none   string // the line when nothing matches
	header string // tab-separated column names
	row    func(T) string
}

// printListing prints up to limit of items (one more was asked for, to
// tell whether more match) as indented JSON or as a table, and says on
// stderr how to see the next ones.
func printListing[T, R any](c *cli, items []T, limit int, asJSON bool, l listing[T, R]) error {
	more := len(items) > limit
	if more {
		items = items[:limit]
	}
	if asJSON {
		out := make([]R, len(items))
		for i, it := range items {
			out[i] = l.report(it)
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		if len(items) == 0 {
			fmt.Fprintln(c.stdout, l.none)
			return nil
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, l.header)
		for _, it := range items {
			fmt.Fprintln(tw, l.row(it))
		}
		tw.Flush()
	}
	if more {
		fmt.Fprintf(c.stderr, "showing the first %d; see the next ones with --after %d, or raise --limit\n", limit, l.seq(items[len(items)-1]))
	}
	return nil
}

func report(r ferry.Record) messageReport {
	t := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		t = t.UTC()
		return &t
	}
	return messageReport{Seq: r.Seq, ID: r.ID, Lane: r.Lane, Topic: r.Topic, Key: r.Key, Type: r.Type, Headers: r.Headers,
		Status: r.Status, Attempts: r.Attempts, PayloadSize: len(r.Payload),
		OccurredAt: t(r.OccurredAt), AvailableAt: t(r.AvailableAt), ProcessedAt: t(r.ProcessedAt), FailedAt: t(r.FailedAt),
		LastError: r.LastError}
}

// cell makes s fit one table cell: one line of at most n characters, and
// "-" if empty.
func cell(s string, n int) string {
	if s == "" {
		return "-"
	}
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
