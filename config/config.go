// Package config loads and checks the YAML configuration of `ferry relay`.
//
// A complete file, with every setting (only database.url, one lane, one
// transport and one route are required):
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
//	  poll_above: 0             # commits/s to a lane above which relays poll it and producers skip NOTIFY (PostgreSQL); 0: off
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
//	transports:                 # named; each has a type and the options of its type
//	  events: {type: kafka, brokers: [localhost:9092]}
//	  console: {type: stdout}   # one JSON line per message on standard output
//	  sink: {type: discard}     # accepted and dropped
//
//	routes:                     # the first route whose topic pattern matches wins
//	  - {topic: "orders.*", to: events, destination: orders}   # the Kafka topic "orders"
//	  - {topic: "audit.*", to: console}
//	  - {topic: "*", to: sink}
//
// A route's destination names where its messages go in the broker's terms
// (a Kafka topic, a NATS subject, a RabbitMQ exchange, a Redis stream, a
// webhook URL or path) and may use {topic}, {key}, {type} and {lane}; the
// default is {topic}, the message's own topic.
//
// A route to some transport types may also change settings of its
// transport for its own messages, sharing the transport's connection:
//
//	routes:
//	  - {topic: "orders.*", to: rabbit, destination: orders, routing_key: "{key}"}   # amqp
//	  - {topic: "audit.*", to: cache, max_len: 10000000}                             # redis streams
//	  - topic: "partner.*"                                                          # webhook
//	    to: hooks
//	    destination: https://partner.example/ferry
//	    headers: {Authorization: "Bearer ${PARTNER_TOKEN}"}   # added to the transport's
//	    secret: ${PARTNER_SECRET}                             # or secrets: [new, old]; replaces the transport's
//	    timeout: 30s
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
//	relay.yaml:20:3: routes[1].to: transport "consle" is not defined; did you mean "console"?
//
// The database URL may hold a password: it never appears in problems, and
// Database formats itself with the password hidden.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
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
	Lanes      []relay.Lane
	Transports []Transport // in file order
	Routes     []Route     // in file order, which is matching order
	Log        Log
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
	PollAbove       float64 // 0: never announce polling
	RescanInterval  time.Duration
	Retention       time.Duration // negative: delete DONE messages at once
	ShutdownTimeout time.Duration
}

// Transport is a named connection to a broker, or a local sink, that
// routes send messages to.
type Transport struct {
	Name string
	Type string
	Pos  Pos // where it is defined
	// build makes the transport; set by its type's check.
	build builder
}

// Sink reports whether t takes every message whatever the destination
// (stdout, discard), so that its routes name none.
func (t Transport) Sink() bool { return transportTypes()[t.Type].sink }

// Route sends the topics matching Topic (a path.Match pattern) to
// Destination through the transport named To.
type Route struct {
	Topic       string
	To          string
	Destination transport.Target // "{topic}" unless the route names one
	Pos         Pos
	// settings makes the route's publisher when the route has settings of
	// its own (a routing key, webhook credentials); nil otherwise.
	settings routeBuilder
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

// Built is a relay's options made from a config, with the transports
// they publish through. Close it when the relay has stopped.
type Built struct {
	Options    relay.Options
	transports []openTransport
	routes     []Route
}

type openTransport struct {
	Transport
	built
}

// Build returns the relay options the config describes, with the
// transports made (without connecting: a broker that is down is retried by
// the relay) and st as the store. stdout is where the stdout transport
// writes; log receives the transports' logs (nil: none). The relay's
// Logger is left unset: use Logger.
func (c *Config) Build(st ferry.Store, stdout io.Writer, log *slog.Logger) (*Built, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	env := buildEnv{stdout: local.NewWriter(stdout), logger: log}
	b := &Built{routes: c.Routes}
	opened := make(map[string]built, len(c.Transports))
	var errs []error
	for _, t := range c.Transports {
		if t.build == nil {
			errs = append(errs, fmt.Errorf("config: %s: transport %q was not checked by Load or Parse", t.Pos, t.Name))
			continue
		}
		tr, err := t.build(env)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: transport %q (%s): %w", t.Pos, t.Name, t.Type, err))
			continue
		}
		opened[t.Name] = tr
		b.transports = append(b.transports, openTransport{Transport: t, built: tr})
	}
	routes := make([]relay.Route, 0, len(c.Routes))
	for _, r := range c.Routes {
		tr, ok := opened[r.To]
		if !ok {
			if !slices.ContainsFunc(c.Transports, func(t Transport) bool { return t.Name == r.To }) {
				errs = append(errs, fmt.Errorf("config: %s: route %q names transport %q, which is not defined", r.Pos, r.Topic, r.To))
			}
			continue // else its build failed, reported above
		}
		dest, err := tr.route(r.Destination, r.settings)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: route %q: %w", r.Pos, r.Topic, err))
			continue
		}
		routes = append(routes, relay.Route{Topic: r.Topic, Destination: dest})
	}
	if err := errors.Join(errs...); err != nil {
		b.Close()
		return nil, err
	}
	b.Options = relay.Options{
		Store:           st,
		Lanes:           append([]relay.Lane(nil), c.Lanes...),
		Routes:          routes,
		Node:            c.Relay.Node,
		LeaseTTL:        c.Relay.LeaseTTL,
		PollInterval:    c.Relay.PollInterval,
		PollAbove:       c.Relay.PollAbove,
		RescanInterval:  c.Relay.RescanInterval,
		Retention:       c.Relay.Retention,
		ShutdownTimeout: c.Relay.ShutdownTimeout,
	}
	return b, nil
}

// Check asks each broker about the routes' fixed destinations (those
// without placeholders) where its transport can tell: a Kafka topic that
// does not exist, a RabbitMQ exchange that was never declared. refused
// holds the destinations a broker said no to, each naming the route;
// unchecked holds the questions that got no answer (a broker that is
// down), which the relay will retry. Check stops asking when ctx ends.
func (b *Built) Check(ctx context.Context) (refused error, unchecked []error) {
	byName := map[string]openTransport{}
	for _, t := range b.transports {
		byName[t.Name] = t
	}
	var errs []error
	for _, r := range b.routes {
		t, ok := byName[r.To]
		if !ok || t.publisher == nil || !r.Destination.Static() {
			continue
		}
		err := transport.Check(ctx, t.publisher, r.Destination)
		switch {
		case err == nil:
		case transport.IsRejected(err):
			errs = append(errs, fmt.Errorf("config: %s: route %q: %w", r.Pos, r.Topic, err))
		default:
			unchecked = append(unchecked, fmt.Errorf("route %q: could not check destination %q with transport %q: %w", r.Topic, r.Destination, r.To, err))
		}
	}
	return errors.Join(errs...), unchecked
}

// Close closes the transports' connections, waiting for messages in
// flight.
func (b *Built) Close() error {
	var errs []error
	for _, t := range b.transports {
		if t.publisher != nil {
			if err := t.publisher.Close(); err != nil {
				errs = append(errs, fmt.Errorf("transport %q: %w", t.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Logger returns a logger writing to w in the configured format, at the
// configured level.
func (c *Config) Logger(w io.Writer) *slog.Logger { return c.Log.Logger(w) }

// Logger returns a logger writing to w in l's format, at l's level.
func (l Log) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == "json" {
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

// Transport returns the transport named name.
func (c *Config) Transport(name string) (Transport, bool) {
	for _, t := range c.Transports {
		if t.Name == name {
			return t, true
		}
	}
	return Transport{}, false
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
		top.renamed("destinations", "this section is now called transports: rename it; a route names its transport with `to:` and, optionally, the broker's destination with `destination:`")
		known := p.transports(c, top)
		p.routes(c, top, known)
		top.get("consumers") // `ferry consume`'s; known, not read here
		top.get("inbox")
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
