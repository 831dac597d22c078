package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
)

// Queue configures one queue: a lane of the relay, with its own workers
// and its share of the database work when queues compete.
type Queue struct {
	// Concurrency is how many of the queue's jobs run at once in this
	// process. Default 100.
	Concurrency int
	// Weight is the queue's share when queues compete (weighted fair).
	// Default 1.
	Weight int
	// Rate limits the queue to Rate jobs per second (a token bucket of
	// Burst); 0 means no limit.
	Rate  float64
	Burst int
	// MaxAttempts is how many times a job runs before it is dead.
	// Default 25.
	MaxAttempts int
	// Timeout is one attempt's time limit: the job's context is cancelled
	// at the deadline. Default 1 minute.
	Timeout time.Duration
	// Backoff spaces the retries; default 1s doubling to 1h, with jitter.
	Backoff relay.Backoff
}

// Config configures a Client.
type Config struct {
	// Workers run the jobs. Required: inserting a kind no worker knows is
	// an error.
	Workers *Workers
	// Queues this client runs, by name. Default: DefaultQueue alone.
	// Inserting into another queue is an error.
	Queues map[string]Queue
	// Retention is how long a completed job is kept (and so stays unique).
	// Default 24h; negative deletes it on completion.
	Retention time.Duration
	// Periodic jobs are inserted on their schedules while the client runs.
	Periodic []PeriodicJob
	// Node names this process in the shard leases; default host-pid-random.
	Node string
	// Logger receives the client's logs; default slog.Default().
	Logger *slog.Logger
}

// Client inserts jobs and runs them.
//
// A job is a message in ferry's outbox whose destination is a worker in
// this process: the relay claims it in its queue's lane, runs its worker,
// retries it with backoff and marks it dead (FAILED) when its attempts are
// spent, and a process that dies loses its leases, so its jobs run
// elsewhere. Give the jobs a table of their own (sqlstore.Options.Table,
// e.g. "ferry_jobs") rather than the outbox of a relay that publishes to
// brokers: two relays in one table share its shards between them.
type Client struct {
	store    ferry.Store
	db       *sql.DB
	outbox   *ferry.Outbox
	workers  *Workers
	relay    *relay.Relay
	periodic []PeriodicJob
	log      *slog.Logger
	tables   *tables // outputs, progress and error history
}

// NewClient returns a client of the jobs in st.
func NewClient(st ferry.Store, cfg Config) (*Client, error) {
	if st == nil || cfg.Workers == nil {
		return nil, errors.New("jobs: NewClient needs a store and Workers")
	}
	sq, ok := st.(sqlDB)
	if !ok {
		return nil, fmt.Errorf("jobs: the %s store has no SQL handle; use one of ferry's SQL stores", st.Dialect())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for i := range cfg.Periodic {
		if err := cfg.Periodic[i].parse(cfg.Workers); err != nil {
			return nil, err
		}
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = map[string]Queue{DefaultQueue: {}}
	}
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	tb, err := newTables(st)
	if err != nil {
		return nil, err
	}
	run := &runner{workers: cfg.Workers, tables: tb, keepOutput: cfg.Retention >= 0, log: cfg.Logger}
	names := slices.Sorted(maps.Keys(cfg.Queues))
	var lanes []relay.Lane
	for _, name := range names {
		q := cfg.Queues[name]
		setDefault(&q.Concurrency, 100)
		setDefault(&q.MaxAttempts, 25)
		setDefault(&q.Timeout, time.Minute)
		setDefault(&q.Backoff.Initial, time.Second)
		setDefault(&q.Backoff.Max, time.Hour)
		lanes = append(lanes, relay.Lane{Name: name, Weight: q.Weight, Concurrency: q.Concurrency, Rate: q.Rate, Burst: q.Burst,
			MaxAttempts: q.MaxAttempts, Timeout: q.Timeout, Backoff: q.Backoff, OnFailed: relay.Skip})
	}
	r, err := relay.New(relay.Options{
		Store:     st,
		Lanes:     lanes,
		Routes:    []relay.Route{{Topic: Topic, Destination: run}},
		Node:      cfg.Node,
		Retention: cfg.Retention,
		Logger:    cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	c := &Client{store: st, db: sq.SQLDB(), outbox: ferry.NewOutbox(st, ferry.WithLanes(names...)), workers: cfg.Workers,
		relay: r, periodic: cfg.Periodic, log: cfg.Logger, tables: tb}
	for _, p := range cfg.Periodic {
		if _, err := c.messages([]InsertParams{{Args: p.Args, Opts: p.Opts}}); err != nil {
			return nil, fmt.Errorf("periodic job %q: %w", p.Name, err)
		}
	}
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Run runs the client's queues until ctx ends, then lets the running jobs
// finish (within the relay's shutdown timeout; the others run again
// later, elsewhere or after a restart). It expects the job tables
// (Migrate): without them it logs an error and runs the jobs all the
// same, but their outputs cannot be stored (a job that sets one fails)
// nor their errors kept beyond the last.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	for _, p := range c.periodic {
		wg.Go(func() { c.schedule(ctx, p) })
	}
	wg.Go(func() { c.watchCancels(ctx) })
	wg.Go(func() { c.sweep(ctx) })
	return c.relay.Run(ctx)
}
