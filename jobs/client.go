package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
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
	// A kind's RetryWith policy replaces it for that kind.
	Backoff relay.Backoff
	// Priorities is how many priority levels the queue has: a job's
	// InsertOpts.Priority from 1 (the default, first) to Priorities.
	// Within the queue, a free worker always takes a job of the lowest
	// level number that has one ready. Default 1. Each level is a lane of
	// its own ("queue/p2", ...): its jobs are fetched apart, so a flood of
	// level 4 does not stand in the way of level 1.
	Priorities int
	// Pool names one of Config.Pools: the queue's jobs then run on the
	// pool's workers, shared with the other queues of the pool, and
	// Concurrency caps each of its levels within the pool (default: the
	// pool's concurrency). Empty: the queue has workers of its own.
	Pool string
	// Priority orders the queues of one pool: a free worker goes to the
	// queue with the lowest Priority that has a job ready (strict
	// choice, levels within it next), and among queues of equal Priority
	// in proportion to their Weight (weighted choice, so that no queue of
	// them starves).
	Priority int
	// KeyConcurrency is how many jobs of one key (InsertOpts.Key) run at
	// once, across every process. Default 1, which also runs them in
	// insert order; above 1 the order of a key's jobs is not kept. The
	// limit holds because a key is spread over KeyConcurrency relay keys,
	// each run one job at a time by the one process that leases it: a
	// key's jobs are spread over its slots at insert, so one slow job
	// holds back the later jobs of its own slot, not the others.
	KeyConcurrency int
	// KeyRate limits how many jobs of one key start per second (a token
	// bucket of KeyBurst, at least 1), across every process: a job over
	// the rate is postponed without spending an attempt. 0 means no
	// limit. The bucket lives in the process that leases the key, so when
	// a key moves to another process it starts with a full burst.
	KeyRate  float64
	KeyBurst int
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
	// LeaseTTL is how long this process's shard leases last without
	// renewal (relay.Options.LeaseTTL): the jobs of a process that dies,
	// running ones included, run again elsewhere after about this long.
	// Default 10s; at least 300ms.
	LeaseTTL time.Duration
	// Logger receives the client's logs; default slog.Default().
	Logger *slog.Logger
	// Pools are worker pools that queues share (Queue.Pool), by name, with
	// the number of jobs they run at once in this process.
	Pools map[string]int
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
	queues   map[string]Queue // with defaults
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
	names := slices.Sorted(maps.Keys(cfg.Queues))
	queues := make(map[string]Queue, len(names))
	for _, name := range names {
		q := cfg.Queues[name]
		setDefault(&q.Concurrency, 100)
		setDefault(&q.MaxAttempts, 25)
		setDefault(&q.Timeout, time.Minute)
		setDefault(&q.Backoff.Initial, time.Second)
		setDefault(&q.Backoff.Max, time.Hour)
		setDefault(&q.KeyConcurrency, 1)
		setDefault(&q.Priorities, 1)
		if q.KeyConcurrency < 0 || q.KeyRate < 0 || q.Priorities < 0 || q.Priorities > maxLevels {
			return nil, fmt.Errorf("jobs: queue %q: KeyConcurrency and KeyRate must not be negative, Priorities must be 1 to %d", name, maxLevels)
		}
		if strings.Contains(name, "/") {
			return nil, fmt.Errorf("jobs: queue %q: a queue name cannot hold '/', which separates a queue from its priority levels", name)
		}
		if _, ok := cfg.Pools[q.Pool]; q.Pool != "" && !ok {
			return nil, fmt.Errorf("jobs: queue %q names pool %q, which is not in Config.Pools", name, q.Pool)
		}
		queues[name] = q
	}
	run := newRunner(cfg.Logger, cfg.Workers, queues, tb, cfg.Retention >= 0)
	var lanes []relay.Lane
	var laneNames []string
	pools := make([]relay.Pool, 0, len(cfg.Pools))
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		pools = append(pools, relay.Pool{Name: name, Concurrency: cfg.Pools[name]})
	}
	for _, name := range names {
		q := queues[name]
		pool, concurrency := q.Pool, q.Concurrency
		if pool != "" && cfg.Queues[name].Concurrency == 0 {
			concurrency = 0 // the pool's
		}
		if pool == "" && q.Priorities > 1 {
			pool = queuePool(name)
			pools = append(pools, relay.Pool{Name: pool, Concurrency: q.Concurrency})
		}
		for level := 1; level <= q.Priorities; level++ {
			l := relay.Lane{Name: laneOf(name, level), Weight: q.Weight, Concurrency: concurrency, Rate: q.Rate, Burst: q.Burst,
				MaxAttempts: unlimitedAttempts, Timeout: q.Timeout, RetryDelay: run.retryDelay(q), OnFailed: relay.Skip, Pool: pool}
			if pool != "" {
				// Queue priority first, then the level within the queue.
				l.Priority = q.Priority*maxLevels + level
			}
			lanes = append(lanes, l)
			laneNames = append(laneNames, l.Name)
		}
	}
	r, err := relay.New(relay.Options{
		Store:     st,
		Lanes:     lanes,
		Pools:     pools,
		Routes:    []relay.Route{{Topic: Topic, Destination: run}},
		Node:      cfg.Node,
		LeaseTTL:  cfg.LeaseTTL,
		Retention: cfg.Retention,
		Logger:    cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	c := &Client{store: st, db: sq.SQLDB(), outbox: ferry.NewOutbox(st, ferry.WithLanes(laneNames...)), workers: cfg.Workers,
		queues: queues, relay: r, periodic: cfg.Periodic, log: cfg.Logger, tables: tb}
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
