package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

func TestMain(m *testing.M) {
	// The tests name their databases; one from the environment would
	// replace the configs' and send them elsewhere.
	os.Unsetenv("FERRY_DATABASE_URL")
	os.Exit(m.Run())
}

// result is what one run of ferry did.
type result struct {
	code           int
	stdout, stderr string
}

// ferryRun runs the command line args in-process.
func ferryRun(t *testing.T, args ...string) result {
	t.Helper()
	return ferryRunCtx(t, context.Background(), args...)
}

func ferryRunCtx(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// want fails t unless r exited with code and its stdout and stderr
// contain the given strings ("out:..." for stdout, "err:..." for stderr).
func (r result) want(t *testing.T, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, c := range contains {
		stream, text, s := "stdout", r.stdout, c
		if rest, ok := strings.CutPrefix(c, "err:"); ok {
			stream, text, s = "stderr", r.stderr, rest
		} else {
			s = strings.TrimPrefix(c, "out:")
		}
		if !strings.Contains(text, s) {
			t.Errorf("%s does not contain %q\nstdout:\n%s\nstderr:\n%s", stream, s, r.stdout, r.stderr)
		}
	}
}

// newDB returns the URL of a new, migrated SQLite database.
func newDB(t *testing.T) (url, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "ferry.db")
	url = "sqlite:" + path
	ferryRun(t, "migrate", "--db", url).want(t, 0, "the outbox schema is up to date")
	return url, path
}

// openStore opens the database at path for the test to write and read.
func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// write writes msgs with an Outbox, in one transaction.
func write(t *testing.T, st *sqlite.Store, msgs ...ferry.Message) {
	t.Helper()
	ctx := context.Background()
	tx, err := st.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ferry.NewOutbox(st).Write(ctx, tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// complete records the outcomes of the messages with the given ids.
func complete(t *testing.T, st *sqlite.Store, status ferry.Status, errText string, ids ...string) {
	t.Helper()
	ctx := context.Background()
	recs, err := st.List(ctx, ferry.Filter{IDs: ids})
	if err != nil || len(recs) != len(ids) {
		t.Fatalf("list %v: %d records, %v", ids, len(recs), err)
	}
	var outcomes []ferry.Outcome
	for _, r := range recs {
		outcomes = append(outcomes, ferry.Outcome{Seq: r.Seq, Status: status, Attempts: 10, Error: errText})
	}
	if err := st.Complete(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
}

// seed writes the messages most tests use and returns the store:
//
//	online: o1 (FAILED), o2 (DONE), o3 (WAITING)
//	batch:  b1, b2 (WAITING), b3, b4 (FAILED)
func seed(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st := openStore(t, path)
	write(t, st,
		ferry.Message{ID: "o1", Lane: "online", Topic: "orders.placed", Key: "order-1", Type: "OrderPlaced", Payload: []byte(`{"n":1}`)},
		ferry.Message{ID: "o2", Lane: "online", Topic: "orders.placed", Key: "order-2", Payload: []byte(`{"n":2}`)},
		ferry.Message{ID: "o3", Lane: "online", Topic: "orders.shipped", Key: "order-1", Payload: []byte(`{"n":3}`)},
	)
	write(t, st,
		ferry.Message{ID: "b1", Lane: "batch", Topic: "files", Key: "f1", Payload: []byte("x")},
		ferry.Message{ID: "b2", Lane: "batch", Topic: "files", Key: "f2", Payload: []byte("x")},
		ferry.Message{ID: "b3", Lane: "batch", Topic: "files", Key: "f3", Payload: []byte("x")},
		ferry.Message{ID: "b4", Lane: "batch", Topic: "reports", Key: "f4", Payload: []byte("x")},
	)
	complete(t, st, ferry.StatusFailed, "broker said:\nno such topic\tfiles", "o1", "b3", "b4")
	complete(t, st, ferry.StatusDone, "", "o2")
	return st
}

// statuses returns the status of each message by id.
func statuses(t *testing.T, st *sqlite.Store) map[string]ferry.Status {
	t.Helper()
	recs, err := st.List(context.Background(), ferry.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]ferry.Status{}
	for _, r := range recs {
		m[r.ID] = r.Status
	}
	return m
}

// writeFile writes a file in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUsage(t *testing.T) {
	ferryRun(t).want(t, 2, "err:Usage: ferry COMMAND", "err:migrate", "err:inspect")
	ferryRun(t, "--help").want(t, 0, "out:Usage: ferry COMMAND")
	ferryRun(t, "mirgate").want(t, 2, `err:ferry: unknown command "mirgate"; did you mean "migrate"?`)
	ferryRun(t, "migrate", "-h").want(t, 0, "err:Usage: ferry migrate [--db URL | --config FILE] [--table T]", "err:-db URL")
	ferryRun(t, "migrate", "--nope").want(t, 2, "err:flag provided but not defined: -nope")
	ferryRun(t, "migrate", "--db", "sqlite:x.db", "extra").want(t, 2,
		`err:ferry migrate: unexpected argument "extra"`, "err:Run 'ferry migrate -h' for usage.")
}

func TestMigrate(t *testing.T) {
	t.Setenv("FERRY_DATABASE_URL", "")
	dir := t.TempDir()
	url := "sqlite:" + filepath.Join(dir, "a.db")
	ferryRun(t, "migrate", "--db", url).want(t, 0, "out:"+url+" (table ferry_outbox): the outbox schema is up to date")
	ferryRun(t, "migrate", "--db", url).want(t, 0, "out:up to date") // again: nothing to do
	ferryRun(t, "migrate", "--db", url, "--table", "jobs").want(t, 0, "out:(table jobs)")
	ferryRun(t, "migrate", "--db", url, "--table", "bad-name").want(t, 2, `err:--table: table name "bad-name" is not a plain SQL identifier`)

	ferryRun(t, "migrate").want(t, 2, "err:which database? give --db URL (such as --db sqlite:ferry.db), or --config FILE, or set FERRY_DATABASE_URL")
	ferryRun(t, "migrate", "--db", "oracle://scott:tiger@db").want(t, 1, `err:cannot tell which database "oracle://scott:***@db" is`)

	// The environment, then a config file, name the database too.
	t.Setenv("FERRY_DATABASE_URL", "sqlite:"+filepath.Join(dir, "env.db"))
	ferryRun(t, "migrate").want(t, 0, "out:env.db (table ferry_outbox)")
	t.Setenv("FERRY_DATABASE_URL", "")
	cfg := writeFile(t, "relay.yaml", "database: {url: \"sqlite:"+filepath.Join(dir, "cfg.db")+"\", table: outbox}\n"+
		"lanes: {default: {}}\ntransports: {out: {type: stdout}}\nroutes: [{topic: \"*\", to: out}]\n")
	ferryRun(t, "migrate", "--config", cfg).want(t, 0, "out:cfg.db (table outbox)")
	// --db wins over the config.
	ferryRun(t, "migrate", "--config", cfg, "--db", url).want(t, 0, "out:a.db (table outbox)")
	bad := writeFile(t, "bad.yaml", "database: {url: sqlite:x.db}\nlanes: {}\n")
	ferryRun(t, "migrate", "--config", bad).want(t, 2, "err:bad.yaml:2:1: lanes: at least one lane is required", "err:bad.yaml: 2 problems")
}

func TestNoSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.db")
	url := "sqlite:" + path
	commands := [][]string{{"inspect"}, {"list"}, {"retry", "--all"}, {"exclude", "--all"}, {"pause", "batch"}}
	// A file that does not exist (a typo in the path) is not created.
	for _, cmd := range commands {
		ferryRun(t, append(cmd, "--db", url)...).want(t, 1,
			"err:the SQLite database "+path+" does not exist: check the path, or create the outbox with\n  ferry migrate --db "+url+"\n")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after commands that only read or act on messages, %s: %v, want it not created", path, err)
	}
	// An empty database without the outbox table.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range commands[:4] { // pause names its own table, ferry_outbox_paused
		ferryRun(t, append(cmd, "--db", url)...).want(t, 1,
			"err:the outbox table ferry_outbox does not exist in "+url+": create it with\n  ferry migrate --db "+url+"\n")
	}
}

func TestInspect(t *testing.T) {
	url, path := newDB(t)
	ferryRun(t, "inspect", "--db", url).want(t, 0, "out:the outbox "+url+" (table ferry_outbox) is empty")
	seed(t, path)

	r := ferryRun(t, "inspect", "--db", url)
	r.want(t, 0)
	table := regexp.MustCompile(` +`).ReplaceAllString(r.stdout, " ")
	for _, line := range []string{
		"LANE WAITING OLDEST DUE FAILED DONE/MIN \n",
		"batch 2 ", " 2 0 \n",
		"online 1 ", " 1 1 \n",
	} {
		if !strings.Contains(table, line) {
			t.Errorf("inspect output lacks %q:\n%s", line, r.stdout)
		}
	}
	if !regexp.MustCompile(`batch +2 +\d+(ms|\.\d+s|s) +2`).MatchString(r.stdout) {
		t.Errorf("the batch lane shows no age for its oldest due message:\n%s", r.stdout)
	}

	var lanes []laneReport
	r = ferryRun(t, "inspect", "--db", url, "--json")
	r.want(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &lanes); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if len(lanes) != 2 || lanes[0].Lane != "batch" || lanes[0].Waiting != 2 || lanes[0].Failed != 2 || lanes[0].OldestDueSeconds == nil ||
		lanes[1].Lane != "online" || lanes[1].DoneLastMinute != 1 || lanes[1].Configured != nil {
		t.Errorf("--json: %+v", lanes)
	}

	// With a config: its empty lanes show, and lanes it lacks are flagged.
	cfg := writeFile(t, "relay.yaml", "database: {url: \""+url+"\"}\nlanes: {online: {}, reports: {}}\n"+
		"transports: {out: {type: stdout}}\nroutes: [{topic: \"*\", to: out}]\n")
	ferryRun(t, "inspect", "--config", cfg).want(t, 0,
		"batch (not in config)", "reports ",
		`warning: lane "batch" has 2 WAITING and 2 FAILED messages but is not in `+cfg+", so a relay with that config does not serve it: add it under lanes, or exclude them with 'ferry exclude --config "+cfg+" --lane batch --waiting'")
	r = ferryRun(t, "inspect", "--config", cfg, "--json")
	r.want(t, 0)
	lanes = nil
	if err := json.Unmarshal([]byte(r.stdout), &lanes); err != nil || len(lanes) != 3 || *lanes[0].Configured || !*lanes[2].Configured || lanes[2].Lane != "reports" {
		t.Errorf("--json with --config: %v %+v", err, lanes)
	}
}

func TestList(t *testing.T) {
	url, path := newDB(t)
	seed(t, path)

	r := ferryRun(t, "list", "--db", url)
	r.want(t, 0, "out:SEQ", "out:LAST ERROR")
	if n := strings.Count(r.stdout, "\n"); n != 8 {
		t.Errorf("%d lines, want a header and 7 messages:\n%s", n, r.stdout)
	}
	// The last error is on one line, its whitespace collapsed.
	if !regexp.MustCompile(`\n1 +o1 +online +orders\.placed +order-1 +FAILED +10 +broker said: no such topic files\n`).MatchString(r.stdout) {
		t.Errorf("message o1 is not listed as expected:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`\n2 +o2 +online +orders\.placed +order-2 +DONE +0 +-\n`).MatchString(r.stdout) {
		t.Errorf("message o2 is not listed as expected:\n%s", r.stdout)
	}

	r = ferryRun(t, "list", "--db", url, "--status", "failed", "--lane", "batch")
	r.want(t, 0, "out: b3 ", "out: b4 ")
	if strings.Contains(r.stdout, " o1 ") || strings.Contains(r.stdout, " b1 ") {
		t.Errorf("filters ignored:\n%s", r.stdout)
	}
	ferryRun(t, "list", "--db", url, "--topic", "reports").want(t, 0, "out: b4 ")
	ferryRun(t, "list", "--db", url, "--key", "order-1", "--status", "WAITING").want(t, 0, "out: o3 ")
	ferryRun(t, "list", "--db", url, "--lane", "nope").want(t, 0, "out:no messages match")

	r = ferryRun(t, "list", "--db", url, "--limit", "2")
	r.want(t, 0, "err:showing the first 2; see the next ones with --after 2, or raise --limit")
	ferryRun(t, "list", "--db", url, "--after", "6").want(t, 0, "out: b4 ")

	r = ferryRun(t, "list", "--db", url, "--json", "--status", "FAILED", "--key", "order-1")
	r.want(t, 0)
	var msgs []messageReport
	if err := json.Unmarshal([]byte(r.stdout), &msgs); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if len(msgs) != 1 || msgs[0].ID != "o1" || msgs[0].Type != "OrderPlaced" || msgs[0].Attempts != 10 ||
		msgs[0].LastError != "broker said:\nno such topic\tfiles" || msgs[0].PayloadSize != 7 || msgs[0].FailedAt == nil {
		t.Errorf("--json: %+v", msgs)
	}
	ferryRun(t, "list", "--db", url, "--json", "--lane", "nope").want(t, 0, "out:[]")

	ferryRun(t, "list", "--db", url, "--status", "LOST").want(t, 2, `err:--status "LOST": use WAITING, DONE, FAILED or EXCLUDED`)
	ferryRun(t, "list", "--db", url, "--limit", "0").want(t, 2, "err:--limit must be at least 1")
}

func TestRetry(t *testing.T) {
	url, path := newDB(t)
	st := seed(t, path)

	ferryRun(t, "retry", "--db", url).want(t, 2,
		"err:ferry retry: which messages? choose them with --id, --seq, --lane, --topic or --key, or give --all to retry every FAILED message")
	ferryRun(t, "retry", "--db", url, "--all", "--lane", "x").want(t, 2, "err:--all means every FAILED message")
	ferryRun(t, "retry", "--db", url, "--seq", "x").want(t, 2, `err:invalid value "x" for flag -seq: "x" is not a seq`)

	// By id, and the counts.
	ferryRun(t, "retry", "--db", url, "--id", "o1").want(t, 0, "out:retried 1 message: they are WAITING again")
	if s := statuses(t, st); s["o1"] != ferry.StatusWaiting || s["b3"] != ferry.StatusFailed {
		t.Fatalf("after retry --id o1: %v", s)
	}
	// Nothing left to retry by that id: exit 1, and why.
	ferryRun(t, "retry", "--db", url, "--id", "o1,zz", "--seq", "99").want(t, 1,
		"err:ferry retry: no FAILED message matches --id o1,zz --seq 99, so nothing changed",
		"err:  message 1 (id o1, lane online) is WAITING, not FAILED",
		"err:  no message has id zz",
		"err:  no message has seq 99",
		"err:see the FAILED messages with: ferry list --db "+url+" --status FAILED")
	// By filter.
	ferryRun(t, "retry", "--db", url, "--lane", "batch", "--topic", "reports").want(t, 0, "out:retried 1 message")
	ferryRun(t, "retry", "--db", url, "--lane", "online").want(t, 1, "err:no FAILED message matches --lane online")
	// Everything.
	ferryRun(t, "retry", "--db", url, "--all").want(t, 0, "out:retried 1 message")
	ferryRun(t, "retry", "--db", url, "--all").want(t, 1, "err:ferry retry: there are no FAILED messages, so nothing changed")
	if s := statuses(t, st); s["b3"] != ferry.StatusWaiting || s["b4"] != ferry.StatusWaiting || s["o2"] != ferry.StatusDone {
		t.Fatalf("after retry --all: %v", s)
	}
	// Seqs, repeated and comma-separated.
	complete(t, st, ferry.StatusFailed, "again", "o1", "b1", "b2")
	ferryRun(t, "retry", "--db", url, "--seq", "1", "--seq", "4,5").want(t, 0, "out:retried 3 messages")
}

func TestExclude(t *testing.T) {
	url, path := newDB(t)
	st := seed(t, path)

	ferryRun(t, "exclude", "--db", url).want(t, 2, "err:or give --all to exclude every FAILED message")
	ferryRun(t, "exclude", "--db", url, "--waiting").want(t, 2, "err:or give --all to exclude every FAILED and WAITING message")

	ferryRun(t, "exclude", "--db", url, "--lane", "batch").want(t, 0, "out:excluded 2 messages: they will not be delivered")
	if s := statuses(t, st); s["b3"] != ferry.StatusExcluded || s["b4"] != ferry.StatusExcluded || s["b1"] != ferry.StatusWaiting {
		t.Fatalf("after exclude --lane batch: %v", s)
	}
	ferryRun(t, "exclude", "--db", url, "--lane", "batch").want(t, 1, "err:no FAILED message matches --lane batch")
	ferryRun(t, "exclude", "--db", url, "--lane", "batch", "--waiting").want(t, 0, "out:excluded 2 messages (0 FAILED, 2 WAITING)")
	ferryRun(t, "exclude", "--db", url, "--id", "o2").want(t, 1, "err:message 2 (id o2, lane online) is DONE, not FAILED")
	ferryRun(t, "exclude", "--db", url, "--all", "--waiting").want(t, 0, "out:excluded 2 messages (1 FAILED, 1 WAITING)")
	s := statuses(t, st)
	for id, want := range map[string]ferry.Status{"o1": "EXCLUDED", "o2": "DONE", "o3": "EXCLUDED", "b1": "EXCLUDED", "b2": "EXCLUDED", "b3": "EXCLUDED", "b4": "EXCLUDED"} {
		if s[id] != want {
			t.Errorf("message %s is %s, want %s", id, s[id], want)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "relay.yaml", `database: {url: "postgres://app:s3cret@db/app", table: outbox}
lanes:
  online: {weight: 4, concurrency: 32}
  batch: {rate: 100, backoff: {initial: 2s, max: 1h}}
transports: {console: {type: stdout}, sink: {type: discard}}
routes:
  - {topic: "orders.*", to: console}
  - {topic: "*", to: sink}
`)
	r := ferryRun(t, "config", "check", good)
	r.want(t, 0, "out:"+good+": ok\n", "out:database: postgres://app:***@db/app, table outbox",
		"out:lanes: 2", "out:online  weight 4, concurrency 32", "out:batch   rate 100/s, backoff initial 2s, backoff max 1h",
		"out:routes: 2", "out:orders.*  -> console (stdout)", "out:*         -> sink (discard)")
	if strings.Contains(r.stdout+r.stderr, "s3cret") {
		t.Errorf("the password shows:\n%s", r.stdout)
	}
	// Flags may follow the file.
	ferryRun(t, "config", "check", good, "-h").want(t, 0, "err:Usage: ferry config check FILE")

	bad := writeFile(t, "bad.yaml", `database: {url: "postgres://app:s3cret@db/app"}
lanes:
  batch: {concurrency: lots, rat: 5}
transports: {console: {type: stdot}}
routes:
  - {topic: "*", to: consle}
`)
	r = ferryRun(t, "config", "check", bad)
	r.want(t, 2,
		"err:"+bad+`:3:24: lanes.batch.concurrency: must be a positive integer, got "lots"`+"\n",
		"err:"+bad+`:3:30: lanes.batch.rat: unknown key "rat"; did you mean "rate"?`+"\n",
		"err:"+bad+`:4:30: transports.console.type: unknown transport type "stdot"; did you mean "stdout"?`,
		"err:"+bad+`:6:22: routes[0].to: transport "consle" is not defined; did you mean "console"?`+"\n",
		"err:"+bad+": 4 problems\n")
	if r.stdout != "" || strings.Contains(r.stderr, "s3cret") {
		t.Errorf("stdout %q; stderr:\n%s", r.stdout, r.stderr)
	}

	ferryRun(t, "config", "check", filepath.Join(t.TempDir(), "none.yaml")).want(t, 2, "err:cannot read the config file: open ", "err:no such file or directory")
	ferryRun(t, "config").want(t, 2, "err:missing subcommand: use 'ferry config check FILE'")
	ferryRun(t, "config", "lint", good).want(t, 2, `err:unknown subcommand "lint"`)
	ferryRun(t, "config", "check").want(t, 2, "err:which file?")
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		1234 * time.Microsecond:                   "1ms",
		3240 * time.Millisecond:                   "3.2s",
		5*time.Minute + 12*time.Second:            "5m12s",
		2*time.Hour + 3*time.Minute + time.Second: "2h3m",
		76*time.Hour + 20*time.Minute:             "3d4h",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
