package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/relay"
)

// env returns a lookup over vars.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// noEnv is an empty environment.
var noEnv = env(nil)

// good is a small valid config that the cases below break one line at a
// time; its line numbers matter.
const good = `database:
  url: sqlite:ferry.db
lanes:
  online: {weight: 4, concurrency: 32}
  batch:
    concurrency: 16
transports:
  console: {type: stdout}
routes:
  - {topic: "orders.*", to: console}
`

func TestParseGood(t *testing.T) {
	c, err := parse([]byte(good), "relay.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.URL != "sqlite:ferry.db" || c.Database.FromEnv {
		t.Errorf("Database = %+v", c.Database)
	}
	want := []relay.Lane{{Name: "online", Weight: 4, Concurrency: 32}, {Name: "batch", Concurrency: 16}}
	if fmt.Sprint(c.Lanes) != fmt.Sprint(want) {
		t.Errorf("Lanes = %+v, want %+v", c.Lanes, want)
	}
	if len(c.Routes) != 1 || c.Routes[0].Topic != "orders.*" || c.Routes[0].To != "console" || c.Routes[0].Pos.String() != "relay.yaml:10:5" {
		t.Errorf("Routes = %+v", c.Routes)
	}
	if c.Log.Level != slog.LevelInfo || c.Log.Format != "text" {
		t.Errorf("Log = %+v, want info and text", c.Log)
	}
}

// TestParseExample checks the commented example in examples/relay.yaml,
// which is also the package documentation's format.
func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("../examples/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parse(data, "relay.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.URL != "sqlite:ferry.db" || c.Database.Table != "ferry_outbox" || c.Database.MaxConns != 16 {
		t.Errorf("Database = %+v", c.Database)
	}
	wantRelay := Relay{LeaseTTL: 10 * time.Second, PollInterval: time.Second, RescanInterval: time.Second,
		Retention: 24 * time.Hour, ShutdownTimeout: 10 * time.Second}
	if c.Relay != wantRelay {
		t.Errorf("Relay = %+v, want %+v", c.Relay, wantRelay)
	}
	batch := relay.Lane{Name: "batch", Weight: 1, Concurrency: 16, Rate: 2000, Burst: 200, BatchSize: 500,
		Timeout: 30 * time.Second, MaxAttempts: 10, Backoff: relay.Backoff{Initial: time.Second, Max: 5 * time.Minute},
		OnFailed: relay.Hold}
	if len(c.Lanes) != 3 || !reflect.DeepEqual(c.Lanes[1], batch) || !reflect.DeepEqual(c.Lanes[2], relay.Lane{Name: "default"}) {
		t.Errorf("Lanes = %+v", c.Lanes)
	}
	if len(c.Transports) != 2 || c.Transports[0].Type != "stdout" || c.Transports[1].Type != "discard" {
		t.Errorf("Destinations = %+v", c.Transports)
	}
	// The example's URL refers to ${FERRY_DB:-...}.
	c, err = parse(data, "relay.yaml", env(map[string]string{"FERRY_DB": "postgres://u:pw@h/db"}))
	if err != nil || c.Database.URL != "postgres://u:pw@h/db" {
		t.Fatalf("with FERRY_DB set: %v, %+v", err, c)
	}
}

// TestParseProblems breaks configs and checks every problem reported:
// its position, key path and message.
func TestParseProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{
			name: "not a positive integer",
			yaml: strings.Replace(good, "concurrency: 16", "concurrency: lots", 1),
			want: []string{`relay.yaml:6:18: lanes.batch.concurrency: must be a positive integer, got "lots"`},
		},
		{
			name: "zero, negative and fractional integers",
			yaml: strings.Replace(good, "{weight: 4, concurrency: 32}", "{weight: 0, concurrency: -3, batch_size: 1.5}", 1),
			want: []string{
				`relay.yaml:4:20: lanes.online.weight: must be a positive integer, got 0`,
				`relay.yaml:4:36: lanes.online.concurrency: must be a positive integer, got -3`,
				`relay.yaml:4:52: lanes.online.batch_size: must be a positive integer, got 1.5`,
			},
		},
		{
			name: "typo in a key",
			yaml: strings.Replace(good, "concurrency: 16", "concurency: 16", 1),
			want: []string{`relay.yaml:6:5: lanes.batch.concurency: unknown key "concurency"; did you mean "concurrency"?`},
		},
		{
			name: "key in another style",
			yaml: strings.Replace(good, "concurrency: 16", "batchSize: 16", 1),
			want: []string{`relay.yaml:6:5: lanes.batch.batchSize: unknown key "batchSize"; did you mean "batch_size"?`},
		},
		{
			name: "unknown top-level key",
			yaml: good + "metrics: {port: 9090}\nroute: []\n",
			want: []string{
				`relay.yaml:11:1: metrics: unknown key "metrics" (known keys: database, relay, lanes, transports, routes, consumers, inbox, log)`,
				`relay.yaml:12:1: route: unknown key "route"; did you mean "routes"?`,
			},
		},
		{
			name: "durations",
			yaml: good + "relay:\n  lease_ttl: 100ms\n  poll_interval: 10\n  rescan_interval: soon\n  shutdown_timeout: -1s\n  retention: -5m\n  poll_above: -1\n",
			want: []string{
				`relay.yaml:12:14: relay.lease_ttl: must be at least 300ms, got "100ms"`,
				`relay.yaml:13:18: relay.poll_interval: must be a duration with a unit, got 10: write 10s for seconds or 10ms for milliseconds`,
				`relay.yaml:14:20: relay.rescan_interval: must be a duration such as 500ms, 10s, 5m, 2h or 7d, got "soon"`,
				`relay.yaml:15:21: relay.shutdown_timeout: must be a positive duration, got "-1s"`,
				`relay.yaml:16:14: relay.retention: must not be negative, got "-5m"`,
				`relay.yaml:17:15: relay.poll_above: must be a number of commits per second, 0 or more, got -1`,
			},
		},
		{
			name: "lane settings",
			yaml: strings.Replace(good, "    concurrency: 16\n",
				"    rate: -1\n    timeout: 0s\n    on_failed: holdd\n    backoff: {initial: 10m}\n    max_attempts: many\n", 1),
			want: []string{
				`relay.yaml:6:11: lanes.batch.rate: must be a number of messages per second, 0 or more, got -1`,
				`relay.yaml:7:14: lanes.batch.timeout: must be a positive duration, got "0s"`,
				`relay.yaml:8:16: lanes.batch.on_failed: must be one of hold, skip, got "holdd"; did you mean "hold"?`,
				`relay.yaml:9:5: lanes.batch.backoff.max: the longest wait (5m0s) must not be shorter than backoff.initial (10m0s)`,
				`relay.yaml:10:19: lanes.batch.max_attempts: must be a positive integer, got "many"`,
			},
		},
		{
			name: "backoff max below initial",
			yaml: strings.Replace(good, "    concurrency: 16\n", "    backoff:\n      initial: 1m\n      max: 1s\n      jitter: yes\n", 1),
			want: []string{
				`relay.yaml:8:12: lanes.batch.backoff.max: the longest wait (1s) must not be shorter than backoff.initial (1m0s)`,
				`relay.yaml:9:7: lanes.batch.backoff.jitter: unknown key "jitter" (known keys: initial, max)`,
			},
		},
		{
			name: "burst without rate",
			yaml: strings.Replace(good, "concurrency: 16", "burst: 10", 1),
			want: []string{`relay.yaml:6:12: lanes.batch.burst: has no effect without rate: set rate (messages per second) too, or remove burst`},
		},
		{
			name: "unknown transport type",
			yaml: strings.Replace(good, "{type: stdout}", "{type: stdot, extra: 1}", 1),
			want: []string{`relay.yaml:8:19: transports.console.type: unknown transport type "stdot"; did you mean "stdout"? (known types: ` + strings.Join(transportTypeNames(), ", ") + `)`},
		},
		{
			name: "destination without type, and unknown option",
			yaml: strings.Replace(good, "{type: stdout}", "{tpye: stdout}", 1),
			want: []string{
				`relay.yaml:8:3: transports.console.type: is required: one of ` + strings.Join(transportTypeNames(), ", "),
				`relay.yaml:8:13: transports.console.tpye: unknown key "tpye"; did you mean "type"?`,
			},
		},
		{
			name: "route to a missing destination",
			yaml: good + `  - {topic: "a", to: consle}` + "\n" + `  - {topic: "b", to: kafka}` + "\n",
			want: []string{
				`relay.yaml:11:22: routes[1].to: transport "consle" is not defined; did you mean "console"?`,
				`relay.yaml:12:22: routes[2].to: transport "kafka" is not defined (defined: console)`,
			},
		},
		{
			name: "bad topic pattern, missing keys",
			yaml: good + `  - {topic: "orders[", to: console}` + "\n" + "  - {to: console}\n  - {topic: x}\n",
			want: []string{
				`relay.yaml:11:13: routes[1].topic: "orders[" is not a valid topic pattern: use a topic name, or * (any characters but /), ? and [a-z] wildcards`,
				`relay.yaml:12:5: routes[2].topic: is required: the topics this route matches, such as "orders.*" or "*"`,
				`relay.yaml:13:5: routes[3].to: is required: the name of the transport, defined under transports`,
			},
		},
		{
			name: "route shadowed by a catch-all",
			yaml: strings.Replace(good, `"orders.*"`, `"*"`, 1) + `  - {topic: "orders", to: console}` + "\n",
			want: []string{`relay.yaml:11:13: routes[1].topic: this route never matches: routes[0] (topic "*", line 10) comes first and matches every topic this one does`},
		},
		{
			name: "routes not a list",
			yaml: strings.Replace(good, "routes:\n  - {topic: \"orders.*\", to: console}\n", "routes: {orders: console}\n", 1),
			want: []string{`relay.yaml:9:9: routes: must be a list of {topic: PATTERN, to: TRANSPORT, destination: NAME}, got a mapping`},
		},
		{
			name: "no lanes, no routes",
			yaml: "database: {url: sqlite:x.db}\nlanes: {}\ntransports: {c: {type: stdout}}\nroutes: []\n",
			want: []string{
				`relay.yaml:2:1: lanes: at least one lane is required, such as ` + "`lanes: {default: {}}`" + `; a message's lane is "default" unless it names one`,
				`relay.yaml:4:9: routes: at least one route is required; a message no route matches becomes FAILED`,
			},
		},
		{
			name: "empty file",
			yaml: "# nothing yet\n",
			want: []string{
				`relay.yaml:1:1: database.url: is required: the outbox's database, such as sqlite:ferry.db, postgres://user@host/db or mysql://user@host/db (or set FERRY_DATABASE_URL)`,
				`relay.yaml:1:1: lanes: at least one lane is required, such as ` + "`lanes: {default: {}}`" + `; a message's lane is "default" unless it names one`,
				`relay.yaml:1:1: routes: at least one route is required, such as ` + "`routes: [{topic: \"*\", to: NAME}]`" + `; a message no route matches becomes FAILED`,
			},
		},
		{
			name: "lane is not a mapping",
			yaml: strings.Replace(good, "{weight: 4, concurrency: 32}", "4", 1),
			want: []string{`relay.yaml:4:11: lanes.online: must be a mapping of keys to values, got 4`},
		},
		{
			name: "duplicate keys",
			yaml: good + "lanes:\n  x: {}\n" + "log: {level: info, level: debug}\n",
			want: []string{
				`relay.yaml:11:1: lanes: duplicate key: it is already set at line 3; remove one of them`,
				`relay.yaml:13:20: log.level: duplicate key: it is already set at line 13; remove one of them`,
			},
		},
		{
			name: "unset variable",
			yaml: strings.Replace(good, "url: sqlite:ferry.db", "url: postgres://app:${DB_PASSWORD}@db/app", 1) + "relay: {node: \"${HOSTNAME:-}x\", lease_ttl: \"${TTL}\"}\n",
			want: []string{
				`relay.yaml:2:8: database.url: environment variable DB_PASSWORD is not set: set it, or give a default with ${DB_PASSWORD:-value}`,
				`relay.yaml:11:44: relay.lease_ttl: environment variable TTL is not set: set it, or give a default with ${TTL:-value}`,
			},
		},
		{
			name: "bad variable reference",
			yaml: strings.Replace(good, "url: sqlite:ferry.db", "url: sqlite:${DB FILE}", 1),
			want: []string{`relay.yaml:2:8: database.url: "${DB FILE}" is not a valid variable reference: write ${NAME} or ${NAME:-default} with NAME made of letters, digits and underscores (and $$ for a literal $)`},
		},
		{
			name: "a value from a variable is checked too",
			yaml: strings.Replace(good, "concurrency: 16", "concurrency: ${CONC}", 1),
			env:  map[string]string{"CONC": "lots"},
			want: []string{`relay.yaml:6:18: lanes.batch.concurrency: must be a positive integer, got "lots" (from "${CONC}")`},
		},
		{
			name: "bad table name",
			yaml: strings.Replace(good, "url: sqlite:ferry.db", "url: sqlite:ferry.db\n  table: ferry-outbox\n  max_conns: 0", 1),
			want: []string{
				`relay.yaml:3:10: database.table: table name "ferry-outbox" is not a plain SQL identifier: use letters, digits and underscores, start with a letter or underscore, at most 48 characters`,
				`relay.yaml:4:14: database.max_conns: must be a positive integer, got 0`,
			},
		},
		{
			name: "missing database url",
			yaml: strings.Replace(good, "url: sqlite:ferry.db", "table: outbox", 1),
			want: []string{`relay.yaml:1:1: database.url: is required: the outbox's database, such as sqlite:ferry.db, postgres://user@host/db or mysql://user@host/db (or set FERRY_DATABASE_URL)`},
		},
		{
			name: "unknown database, password hidden",
			yaml: strings.Replace(good, "url: sqlite:ferry.db", "url: postgress://app:s3cret@db/app", 1),
			want: []string{`relay.yaml:2:8: database.url: cannot tell which database "postgress://app:***@db/app" is; use one of: sqlite:PATH, sqlite://PATH, file:PATH or a file name ending in .db, .sqlite or .sqlite3 (SQLite); postgres://... or postgresql://... (PostgreSQL); mysql://... or mariadb://... (MySQL/MariaDB)`},
		},
		{
			name: "log",
			yaml: good + "log: {level: verbose, format: jsn}\n",
			want: []string{
				`relay.yaml:11:14: log.level: must be one of debug, info, warn, error, got "verbose"`,
				`relay.yaml:11:31: log.format: must be one of text, json, got "jsn"; did you mean "json"?`,
			},
		},
		{
			name: "not YAML",
			yaml: "database:\n  url: [sqlite\nlanes: {}\n",
			want: []string{`relay.yaml:1: not valid YAML at or after this line: did not find expected ',' or ']'`},
		},
		{
			name: "tab indentation",
			yaml: "database:\n\turl: sqlite:x.db\n",
			want: []string{`relay.yaml:2:1: a tab indents this line; YAML indents with spaces only`},
		},
		{
			name: "two documents",
			yaml: good + "---\nlanes: {}\n",
			want: []string{`relay.yaml:11:1: a second YAML document starts here; a config is one document: remove the '---' line and what follows, or merge it into the first`},
		},
		{
			name: "entries of the wrong shape",
			yaml: strings.Replace(good, "console: {type: stdout}", "console: stdout", 1) + "  - console\n",
			want: []string{
				`relay.yaml:8:12: transports.console: must be a mapping such as {type: kafka, brokers: [localhost:9092]}, got "stdout"`,
				`relay.yaml:11:5: routes[1]: must be a mapping such as {topic: "orders.*", to: NAME}, got "console"`,
			},
		},
		{
			name: "a section that is not a mapping",
			yaml: good + "relay: fast\n",
			want: []string{`relay.yaml:11:8: relay: must be a mapping of keys to values, got "fast"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse([]byte(tc.yaml), "relay.yaml", env(tc.env))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("got %v, want an *Error\n%s", err, tc.yaml)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n  %s\nwant:\n  %s\nconfig:\n%s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "), tc.yaml)
			}
			if len(cerr.Problems) != len(tc.want) {
				t.Errorf("%d problems, want %d", len(cerr.Problems), len(tc.want))
			}
		})
	}
}

// TestParseCollectsEverything breaks many things in one file: every
// problem is reported, in file order.
func TestParseCollectsEverything(t *testing.T) {
	yaml := `database:
  url: ""
  tabel: x
relay:
  retention: 1 day
lanes:
  online:
    weight: heavy
    concurency: 4
transports:
  out: {type: kafkaa}
routes:
  - {topic: "*", to: nowhere}
`
	_, err := parse([]byte(yaml), "r.yaml", noEnv)
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got %v, want an *Error", err)
	}
	wantPaths := []string{"database.url", "database.tabel", "relay.retention", "lanes.online.weight",
		"lanes.online.concurency", "transports.out.type", "routes[0].to"}
	var gotPaths []string
	for _, p := range cerr.Problems {
		gotPaths = append(gotPaths, p.Path)
	}
	if strings.Join(gotPaths, " ") != strings.Join(wantPaths, " ") {
		t.Fatalf("problems at %v, want %v:\n%v", gotPaths, wantPaths, err)
	}
}

func TestEnvironment(t *testing.T) {
	yaml := strings.Replace(good, "url: sqlite:ferry.db", `url: "postgres://app:${PW}@${HOST:-localhost}/app?x=$$y"`, 1)
	c, err := parse([]byte(yaml), "relay.yaml", env(map[string]string{"PW": "pa$$word"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://app:pa$$word@localhost/app?x=$y"; c.Database.URL != want {
		t.Errorf("URL = %q, want %q (a variable's value is not expanded again)", c.Database.URL, want)
	}

	// FERRY_DATABASE_URL replaces the file's URL, even one that would be
	// a problem.
	yaml = strings.Replace(good, "url: sqlite:ferry.db", "url: ${UNSET}", 1)
	c, err = parse([]byte(yaml), "relay.yaml", env(map[string]string{EnvDatabaseURL: "mysql://root:pw@localhost/test"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.URL != "mysql://root:pw@localhost/test" || !c.Database.FromEnv {
		t.Errorf("Database = %+v", c.Database)
	}
	if got, want := c.Database.Describe(), "mysql://root:***@localhost/test (from FERRY_DATABASE_URL)"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
	// ... and stands in for a missing one.
	yaml = strings.Replace(good, "url: sqlite:ferry.db", "table: t", 1)
	if _, err := parse([]byte(yaml), "relay.yaml", env(map[string]string{EnvDatabaseURL: "sqlite:x.db"})); err != nil {
		t.Fatal(err)
	}
}

// TestPasswordNeverShown prints a config and its database every way a
// program might.
func TestPasswordNeverShown(t *testing.T) {
	yaml := strings.Replace(good, "url: sqlite:ferry.db", "url: postgres://app:s3cret@db/app", 1)
	c, err := parse([]byte(yaml), "relay.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "database", c.Database)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("start", "database", c.Database)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%v", *c), fmt.Sprintf("%#v", *c), c.Database.String(), logged.String()} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("the password shows in %s", s)
		}
		if !strings.Contains(s, "postgres://app:***@db/app") {
			t.Errorf("the database is not described in %s", s)
		}
	}
}

func TestDurationsAndRetention(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"7d", 7 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"90m", 90 * time.Minute},
		{"0", -1}, // the relay reads 0 as "default": 0 in the file deletes at once
		{"0s", -1},
	} {
		yaml := good + "relay: {retention: " + tc.in + "}\n"
		c, err := parse([]byte(yaml), "relay.yaml", noEnv)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if c.Relay.Retention != tc.want {
			t.Errorf("retention %s = %v, want %v", tc.in, c.Relay.Retention, tc.want)
		}
	}
}

func TestMergeKeys(t *testing.T) {
	yaml := strings.Replace(good, "lanes:\n", "lanes:\n  base: &base {concurrency: 8, max_attempts: 3}\n  merged: {<<: *base, concurrency: 2}\n", 1)
	c, err := parse([]byte(yaml), "relay.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Lanes[1]; l.Name != "merged" || l.Concurrency != 2 || l.MaxAttempts != 3 {
		t.Errorf("merged lane = %+v, want concurrency 2 (its own) and max attempts 3 (merged)", l)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(good, "16", "x", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":6:18: lanes.batch.concurrency:") {
		t.Fatalf("got %v, want a problem naming %s:6:18", err, path)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v, want os.ErrNotExist", err)
	}
}

func TestBuild(t *testing.T) {
	yaml := good + `  - {topic: "*", to: sink}
transports:
  sink: {type: discard}
relay: {node: n1, lease_ttl: 5s, poll_interval: 20ms, poll_above: 200, rescan_interval: 2s, retention: 1h, shutdown_timeout: 3s}
log: {level: debug, format: json}
`
	yaml = strings.Replace(yaml, "transports:\n  console: {type: stdout}\n", "", 1)
	yaml = strings.Replace(yaml, "transports:\n  sink:", "transports:\n  console: {type: stdout}\n  sink:", 1)
	c, err := parse([]byte(yaml), "relay.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b, err := c.Build(nil, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	opts := b.Options
	if opts.Node != "n1" || opts.LeaseTTL != 5*time.Second || opts.PollInterval != 20*time.Millisecond || opts.PollAbove != 200 ||
		opts.RescanInterval != 2*time.Second || opts.Retention != time.Hour || opts.ShutdownTimeout != 3*time.Second {
		t.Errorf("options = %+v", opts)
	}
	if len(opts.Lanes) != 2 || opts.Lanes[0].Name != "online" {
		t.Errorf("lanes = %+v", opts.Lanes)
	}
	if len(opts.Routes) != 2 || opts.Routes[0].Topic != "orders.*" || opts.Routes[1].Topic != "*" {
		t.Fatalf("routes = %+v", opts.Routes)
	}
	if _, err := relay.New(opts); err == nil || !strings.Contains(err.Error(), "Store is required") {
		t.Errorf("relay.New without a store: %v; want only the store missing", err)
	}

	var logs bytes.Buffer
	c.Logger(&logs).Debug("hello")
	if !strings.HasPrefix(logs.String(), `{"time":`) || !strings.Contains(logs.String(), `"msg":"hello"`) {
		t.Errorf("debug-level JSON logger wrote %q", logs.String())
	}
}

// TestPollAbove: poll_above is a rate of commits; absent or 0, relays
// never announce polling.
func TestPollAbove(t *testing.T) {
	for yaml, want := range map[string]float64{good: 0, good + "relay: {poll_above: 0}\n": 0, good + "relay: {poll_above: 50.5}\n": 50.5} {
		c, err := parse([]byte(yaml), "relay.yaml", noEnv)
		if err != nil {
			t.Fatal(err)
		}
		if c.Relay.PollAbove != want {
			t.Errorf("%q: PollAbove = %v, want %v", yaml[len(good):], c.Relay.PollAbove, want)
		}
	}
}
