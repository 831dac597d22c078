// Package config loads and checks the YAML configuration of `ferry relay`.
//
// A complete file, with every setting (only database.url, one lane, one
// destination and one route are required):
//
//	database:
//	  url: sqlite:ferry.db      # or postgres://user:${PGPASSWORD}@host/db, mysql://user@host/db
//	  table: ferry_outbox       # optional; the outbox table's name
//	  max_conns: 16             # optional; the store's connection pool
//
//	relay:                      # optional; see relay.Options
//	  node: ""                  # this instance's name in the shard leases; default host-pid-random
//	  lease_ttl: 10s
//	  poll_interval: 1s
//	  rescan_interval: 1s
//	  retention: 24h            # how long DONE messages are kept; 0 deletes them at once; 7d is a week
//	  shutdown_timeout: 10s
//
//	lanes:                      # at least one; see relay.Lane
//	  online: {weight: 4, concurrency: 32, batch_size: 100}
//	  batch:
//	    weight: 1
//	    concurrency: 16
//	    rate: 2000              # deliveries per second; no limit if absent
//	    burst: 200
//	    timeout: 30s
//	    max_attempts: 10
//	    backoff: {initial: 1s, max: 5m}
//	    on_failed: hold         # hold | skip
//
//	destinations:               # named; each has a type and the options of its type
//	  console: {type: stdout}   # one JSON line per message on standard output
//	  sink: {type: discard}     # accepted and dropped
//
//	routes:                     # the first route whose topic pattern matches wins
//	  - {topic: "orders.*", to: console}
//	  - {topic: "*", to: sink}
//
//	log: {level: info, format: text}   # level: debug|info|warn|error; format: text|json
//
// Durations are Go durations (500ms, 10s, 5m, 2h) with whole days allowed
// in front (7d, 1d12h). Every value may refer to environment variables as
// ${NAME} or ${NAME:-default}; $$ is a literal $. A reference to a variable
// that is not set, and has no default, is an error. The environment
// variable FERRY_DATABASE_URL, when set, replaces database.url, so that a
// deployment can keep the password out of the file.
//
// Load and Parse check everything and report every problem at once, each
// with its file, line, column and key path:
//
//	relay.yaml:12:5: lanes.batch.concurrency: must be a positive integer, got "lots"
//	relay.yaml:20:3: routes[1].to: destination "consle" is not defined; did you mean "console"?
//
// The database URL may hold a password: it never appears in problems, and
// Database formats itself with the password hidden.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport/local"
)

// EnvDatabaseURL is the environment variable that, when set, replaces
// database.url.
const EnvDatabaseURL = "FERRY_DATABASE_URL"

// Config is a checked relay configuration.
type Config struct {
	// File is the name the config was read from, as used in messages.
	File     string
	Database Database
	Relay    Relay
	// Lanes are in file order, with Name set and zero meaning the relay's
	// default for every other field.
	Lanes        []relay.Lane
	Destinations []Destination // in file order
	Routes       []Route       // in file order, which is matching order
	Log          Log
}

// Database says where the outbox is.
type Database struct {
	// URL is the database's URL. It may hold a password: print Database
	// itself, or Describe, never URL.
	URL string
	// FromEnv is true when URL came from FERRY_DATABASE_URL instead of the
	// file.
	FromEnv  bool
	Table    string // the outbox table; empty means sqlstore.DefaultTable
	MaxConns int    // 0 means the store's default
}

// Describe returns the URL with any password hidden, and where it came
// from if not from the file.
func (d Database) Describe() string {
	s := store.Describe(d.URL)
	if d.FromEnv {
		s += " (from " + EnvDatabaseURL + ")"
	}
	return s
}

// String is Describe, so that printing a Config never shows the password.
func (d Database) String() string { return d.Describe() }

// GoString is Describe too, for %#v.
func (d Database) GoString() string { return "config.Database{" + d.Describe() + "}" }

// LogValue logs d with the password hidden.
func (d Database) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", store.Describe(d.URL)), slog.String("table", d.StoreOptions().TableName()))
}

// StoreOptions returns the options to open the store with.
func (d Database) StoreOptions() sqlstore.Options {
	return sqlstore.Options{Table: d.Table, MaxConns: d.MaxConns}
}

// Relay holds the relay-wide settings; zero means the relay's default.
type Relay struct {
	Node            string
	LeaseTTL        time.Duration
	PollInterval    time.Duration
	RescanInterval  time.Duration
	Retention       time.Duration // negative: delete DONE messages at once
	ShutdownTimeout time.Duration
}

// Destination is a named destination.
type Destination struct {
	Name string
	Type string
	Pos  Pos // where it is defined
	// build makes the destination; set by its type's check.
	build builder
}

// Route sends the topics matching Topic (a path.Match pattern) to the
// destination named To.
type Route struct {
	Topic string
	To    string
	Pos   Pos
}

// Log configures the relay's logs.
type Log struct {
	Level  slog.Level
	Format string // "text" or "json"
}

// Load reads and checks the config file at path. Problems in the file are
// reported as an *Error holding all of them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse checks the config in data; name is the file name used in
// problems. Environment variables are read with os.LookupEnv.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name, os.LookupEnv)
}

// RelayOptions returns the relay options the config describes, with the
// destinations built and st as the store. stdout is where the stdout
// destination writes. The Logger is left unset: use Logger.
func (c *Config) RelayOptions(st ferry.Store, stdout io.Writer) (relay.Options, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	env := buildEnv{stdout: local.NewWriter(stdout)}
	built := make(map[string]ferry.Destination, len(c.Destinations))
	var errs []error
	for _, d := range c.Destinations {
		if d.build == nil {
			errs = append(errs, fmt.Errorf("config: %s: destination %q was not checked by Load or Parse", d.Pos, d.Name))
			continue
		}
		dest, err := d.build(env)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: destination %q (%s): %w", d.Pos, d.Name, d.Type, err))
			continue
		}
		built[d.Name] = dest
	}
	routes := make([]relay.Route, 0, len(c.Routes))
	for _, r := range c.Routes {
		dest, ok := built[r.To]
		if !ok {
			if _, defined := c.Destination(r.To); !defined {
				errs = append(errs, fmt.Errorf("config: %s: route %q names destination %q, which is not defined", r.Pos, r.Topic, r.To))
			}
			continue // else its build failed, reported above
		}
		routes = append(routes, relay.Route{Topic: r.Topic, Destination: dest})
	}
	if err := errors.Join(errs...); err != nil {
		return relay.Options{}, err
	}
	return relay.Options{
		Store:           st,
		Lanes:           append([]relay.Lane(nil), c.Lanes...),
		Routes:          routes,
		Node:            c.Relay.Node,
		LeaseTTL:        c.Relay.LeaseTTL,
		PollInterval:    c.Relay.PollInterval,
		RescanInterval:  c.Relay.RescanInterval,
		Retention:       c.Relay.Retention,
		ShutdownTimeout: c.Relay.ShutdownTimeout,
	}, nil
}

// Logger returns a logger writing to w in the configured format, at the
// configured level.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Log.Level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// LaneNames returns the names of the configured lanes, in file order.
func (c *Config) LaneNames() []string {
	names := make([]string, len(c.Lanes))
	for i, l := range c.Lanes {
		names[i] = l.Name
	}
	return names
}

// Destination returns the destination named name.
func (c *Config) Destination(name string) (Destination, bool) {
	for _, d := range c.Destinations {
		if d.Name == name {
			return d, true
		}
	}
	return Destination{}, false
}

// parse is Parse with the environment given.
func parse(data []byte, name string, lookup func(string) (string, bool)) (*Config, error) {
	p := &parser{file: name, lookup: lookup}
	c := &Config{File: name, Log: Log{Level: slog.LevelInfo, Format: "text"}}
	root, ok := p.document(data)
	if ok {
		top := p.mapping(nil, root, "")
		p.database(c, top)
		p.relay(c, top)
		p.lanes(c, top)
		known := p.destinations(c, top)
		p.routes(c, top, known)
		p.log(c, top)
		top.done()
	}
	if len(p.problems) > 0 {
		sortProblems(p.problems)
		return nil, &Error{Problems: p.problems}
	}
	return c, nil
}

// checkPattern reports whether pattern is a valid path.Match pattern.
func checkPattern(pattern string) error {
	_, err := path.Match(pattern, "")
	return err
}
