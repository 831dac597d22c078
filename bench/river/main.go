// Command river benchmarks River (github.com/riverqueue/river), a job
// queue on PostgreSQL, with no-op jobs, so that ferry's job queue
// (ferry bench jobs) can be compared with it on the same machine and
// database, in the same run:
//
//	cd bench/river && go run . --db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' [--json]
//
// It is a module of its own so that ferry does not depend on River. It
// reports its results in ferry's bench format (bench.Result), with
// bench "jobs" and system "river":
//
//   - drain_rate: jobs completed per second working a preloaded backlog
//     of --jobs, from the client's start until the last is completed;
//   - sustained_rate: jobs completed per second while --inserters
//     goroutines insert transactions of --insert-batch jobs at full
//     speed for --duration (their insert rate is a note);
//   - start_p50_ms and start_p99_ms: the time from an insert's commit to
//     the worker's start, with jobs inserted one at a time at --rate per
//     second for --duration.
//
// Everything happens in a fresh schema, river_bench_<random>, migrated
// with rivermigrate and dropped at the end, so nothing else in the
// database is touched.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/ferry-dev/ferry/bench"
)

// The bench and system of the results; the metrics and units are
// ferry's (package bench), so that runs of the two line up.
const (
	benchJobs   = "jobs"
	systemRiver = "river"
)

// DefaultDB is the database the benchmark uses without --db.
const DefaultDB = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// defaultMaxConns is the connection pool's size unless the URL sets
// pool_max_conns. pgxpool's own default (max(4, CPUs)) starves River's
// producer and completer of connections while the benchmark's inserters
// hold theirs.
const defaultMaxConns = 20

// config is one run's settings; the flags set them.
type config struct {
	DB          string
	Jobs        int           // preloaded backlog of the drain phase
	Chunk       int           // jobs per InsertMany while preloading
	Workers     int           // MaxWorkers of the default queue
	Duration    time.Duration // of the sustained and the latency phases
	Inserters   int           // goroutines inserting in the sustained phase
	InsertBatch int           // jobs per transaction of those inserters
	Rate        float64       // jobs per second of the latency phase
	// FetchCooldown and FetchPollInterval are River's fetch settings (see
	// river.Config).
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
	// Progress receives progress lines and River's warnings; nil for none.
	Progress io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "river bench:", err)
		os.Exit(1)
	}
}

// run parses args, runs the benchmark and writes its results to stdout,
// as a table or, with --json, as one JSON object per line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("river bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{Progress: stderr}
	fs.StringVar(&cfg.DB, "db", DefaultDB, "PostgreSQL `URL`; the benchmark works in a schema of its own, dropped at the end")
	fs.IntVar(&cfg.Jobs, "jobs", 200_000, "preloaded `jobs` of the drain phase")
	fs.IntVar(&cfg.Chunk, "chunk", 10_000, "jobs per InsertMany while preloading")
	fs.IntVar(&cfg.Workers, "workers", 100, "MaxWorkers of the default queue")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the sustained and the latency phases")
	fs.IntVar(&cfg.Inserters, "inserters", 4, "goroutines inserting in the sustained phase")
	fs.IntVar(&cfg.InsertBatch, "insert-batch", 100, "jobs per transaction of the sustained phase's inserters")
	fs.Float64Var(&cfg.Rate, "rate", 500, "jobs per second, inserted one at a time, of the latency phase")
	fs.DurationVar(&cfg.FetchCooldown, "fetch-cooldown", 2*time.Millisecond, "River's FetchCooldown (River's default is 100ms)")
	fs.DurationVar(&cfg.FetchPollInterval, "fetch-poll-interval", 20*time.Millisecond, "River's FetchPollInterval (River's default is 1s)")
	asJSON := fs.Bool("json", false, "write one JSON object per line per result instead of a table")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run . [--db URL] [--jobs N] [--workers N] [--duration D] [--rate R] [--json]\n\n"+
			"Benchmarks River with no-op jobs on PostgreSQL, in ferry's bench format\n"+
			"(bench jobs, system river): drain_rate, sustained_rate, start_p50_ms, start_p99_ms.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	results, err := benchmark(ctx, cfg)
	if len(results) > 0 {
		write := bench.WriteTable
		if *asJSON {
			write = bench.WriteJSON
		}
		err = errors.Join(err, write(stdout, results))
	}
	return err
}

// validate reports the first setting that cannot work.
func (c config) validate() error {
	switch {
	case c.Jobs < 1:
		return errors.New("--jobs must be at least 1")
	case c.Chunk < 1:
		return errors.New("--chunk must be at least 1")
	case c.Workers < 1 || c.Workers > river.QueueNumWorkersMax:
		return fmt.Errorf("--workers must be between 1 and %d", river.QueueNumWorkersMax)
	case c.Duration <= 0:
		return errors.New("--duration must be positive")
	case c.Inserters < 1:
		return errors.New("--inserters must be at least 1")
	case c.InsertBatch < 1:
		return errors.New("--insert-batch must be at least 1")
	case c.Rate <= 0:
		return errors.New("--rate must be positive")
	case c.FetchCooldown < river.FetchCooldownMin:
		return fmt.Errorf("--fetch-cooldown must be at least %v", river.FetchCooldownMin)
	case c.FetchPollInterval < river.FetchPollIntervalMin || c.FetchPollInterval < c.FetchCooldown:
		return errors.New("--fetch-poll-interval must be at least 1ms and at least --fetch-cooldown")
	}
	return nil
}

// benchmark runs the three phases on one River client and returns their
// results; on an error, those of the phases that finished.
func benchmark(ctx context.Context, cfg config) (results []bench.Result, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	tb, err := openTestbed(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, tb.close()) }()

	// The parameters ferry bench jobs reports, in its order, then River's.
	params := []bench.Param{
		{Name: "workers", Value: cfg.Workers}, {Name: "duration_s", Value: cfg.Duration.Seconds()},
		{Name: "inserters", Value: cfg.Inserters}, {Name: "insert_batch", Value: cfg.InsertBatch},
		{Name: "rate", Value: cfg.Rate}, {Name: "cpus", Value: runtime.NumCPU()},
		{Name: "chunk", Value: cfg.Chunk},
		{Name: "fetch_cooldown_ms", Value: ms(cfg.FetchCooldown)},
		{Name: "fetch_poll_interval_ms", Value: ms(cfg.FetchPollInterval)},
		{Name: "pool_max_conns", Value: tb.pool.Config().MaxConns},
		{Name: "river", Value: riverVersion()},
	}
	// Messages is what the result is about, as in ferry's: the backlog,
	// the jobs completed, the jobs timed.
	res := func(metric string, v float64, unit string, n int, notes ...bench.Param) bench.Result {
		return bench.Result{Bench: benchJobs, System: systemRiver, Metric: metric, Value: v, Unit: unit,
			Messages: n, DB: "postgres", Params: params, Notes: notes}
	}

	// (a) Drain a preloaded backlog.
	progress(cfg, "preloading %d jobs in InsertMany batches of %d", cfg.Jobs, cfg.Chunk)
	began := time.Now()
	if err := tb.preload(ctx, cfg.Jobs, cfg.Chunk); err != nil {
		return nil, err
	}
	loaded := time.Since(began)
	progress(cfg, "preloaded in %v (%.0f jobs/s); starting the client with %d workers", loaded.Round(time.Millisecond),
		rate(cfg.Jobs, loaded), cfg.Workers)
	start := tb.done.clock.now()
	if err := tb.client.Start(ctx); err != nil {
		return nil, fmt.Errorf("start the River client: %w", err)
	}
	last, err := tb.done.waitFor(ctx, int64(cfg.Jobs))
	if err != nil {
		return nil, fmt.Errorf("drain: %w", err)
	}
	if err := tb.checkCompleted(ctx, cfg.Jobs); err != nil {
		return nil, fmt.Errorf("drain: %w", err)
	}
	took := last - start
	progress(cfg, "drained %d jobs in %v", cfg.Jobs, took.Round(time.Millisecond))
	results = append(results, res(bench.MetricDrainRate, rate(cfg.Jobs, took), bench.UnitJobRate, cfg.Jobs,
		bench.Param{Name: "seconds", Value: round(took.Seconds())},
		bench.Param{Name: "preload_rate", Value: round(rate(cfg.Jobs, loaded))}))

	// (b) Work while inserters insert at full speed.
	progress(cfg, "sustained: %d inserters, transactions of %d jobs, for %v", cfg.Inserters, cfg.InsertBatch, cfg.Duration)
	s, err := tb.sustained(ctx, cfg)
	if err != nil {
		return results, fmt.Errorf("sustained: %w", err)
	}
	progress(cfg, "sustained: inserted %d, completed %d in the window; %d left behind", s.inserted, s.completed, s.backlog)
	results = append(results, res(bench.MetricSustainedRate, rate(int(s.completed), s.window), bench.UnitJobRate, int(s.completed),
		bench.Param{Name: "inserted_per_s", Value: round(rate(int(s.inserted), s.window))},
		bench.Param{Name: "backlog", Value: s.backlog}))
	progress(cfg, "sustained: waiting for the %d jobs left behind", s.backlog)
	if _, err := tb.done.waitFor(ctx, tb.inserted.Load()); err != nil {
		return results, fmt.Errorf("sustained, completing the jobs left behind: %w", err)
	}

	// (c) Start latency at a steady rate.
	progress(cfg, "latency: one job at a time at %.0f/s for %v", cfg.Rate, cfg.Duration)
	l, err := tb.latency(ctx, cfg)
	if err != nil {
		return results, fmt.Errorf("latency: %w", err)
	}
	st := summarize(l.lat)
	progress(cfg, "latency: %d jobs (%.0f/s), start p50 %.2fms p99 %.2fms max %.2fms", l.inserted,
		l.rate, ms(st.p50), ms(st.p99), ms(st.max))
	// A job not started when the phase stopped waiting counts with a
	// lower bound of its latency (see tracker.latencies).
	notes := []bench.Param{{Name: "jobs", Value: l.inserted}, {Name: "not_started", Value: l.pending},
		{Name: "rate_measured", Value: round(l.rate)}, {Name: "over_100ms", Value: countOver(l.lat, 100*time.Millisecond)}}
	results = append(results,
		res(bench.MetricStartP50, ms(st.p50), bench.UnitMillis, l.inserted, notes...),
		res(bench.MetricStartP99, ms(st.p99), bench.UnitMillis, l.inserted, notes...))
	return results, nil
}

// testbed is the run's schema, pool and River client.
type testbed struct {
	schema string
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	worker *noopWorker
	// done counts completed jobs, from the client's subscription.
	done *completions
	// inserted counts the jobs inserted, in all phases.
	inserted atomic.Int64
	// unsubscribe ends the subscription feeding done.
	unsubscribe func()
}

// openTestbed creates the schema, migrates it and makes the client (not
// started).
func openTestbed(ctx context.Context, cfg config) (tb *testbed, err error) {
	tb = &testbed{schema: "river_bench_" + randomSuffix()}
	pc, err := pgxpool.ParseConfig(cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("parse --db: %w", err)
	}
	if !strings.Contains(cfg.DB, "pool_max_conns") {
		pc.MaxConns = defaultMaxConns
	}
	// Unqualified names (the benchmark's own queries) resolve in the
	// schema too; River itself is told the schema, which also keeps its
	// LISTEN/NOTIFY topics apart from any other River in the database.
	pc.ConnConfig.RuntimeParams["search_path"] = tb.schema
	tb.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := tb.pool.Ping(ctx); err != nil {
		tb.pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if _, err := tb.pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{tb.schema}.Sanitize()); err != nil {
		tb.pool.Close()
		return nil, fmt.Errorf("create schema %s: %w", tb.schema, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tb.close())
		}
	}()
	progress(cfg, "schema %s; pool of %d connections", tb.schema, tb.pool.Config().MaxConns)

	driver := riverpgxv5.New(tb.pool)
	logger := slog.New(slog.NewTextHandler(cfg.Progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: tb.schema, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("River's migrator: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("River's migrations: %w", err)
	}

	tb.worker = &noopWorker{}
	workers := river.NewWorkers()
	river.AddWorker(workers, tb.worker)
	tb.client, err = river.NewClient(driver, &river.Config{
		// River's own benchmark (river bench) uses these fetch settings
		// for throughput; its defaults (100ms, 1s) cap a client's fetches.
		FetchCooldown:     cfg.FetchCooldown,
		FetchPollInterval: cfg.FetchPollInterval,
		Logger:            logger,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers}},
		Schema:            tb.schema,
		Workers:           workers,
	})
	if err != nil {
		return nil, fmt.Errorf("River's client: %w", err)
	}
	// River's own benchmark counts completions the same way: the event
	// comes once the completer has recorded the job completed. The
	// buffer is large so that no event is dropped; the reader is fast.
	events, cancel := tb.client.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: 200_000,
		Kinds:    []river.EventKind{river.EventKindJobCompleted},
	})
	tb.unsubscribe = cancel
	tb.done = &completions{clock: newClock()}
	go tb.done.count(events)
	return tb, nil
}

// close stops the client, drops the schema and closes the pool.
func (tb *testbed) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if tb.client != nil {
		if err := tb.client.Stop(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("stop the River client: %w", err))
		}
	}
	if tb.unsubscribe != nil {
		tb.unsubscribe()
	}
	if _, err := tb.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{tb.schema}.Sanitize()+" CASCADE"); err != nil {
		errs = append(errs, fmt.Errorf("drop schema %s: %w", tb.schema, err))
	}
	tb.pool.Close()
	return errors.Join(errs...)
}

// preload inserts n jobs with InsertMany, chunk at a time, before the
// client starts.
func (tb *testbed) preload(ctx context.Context, n, chunk int) error {
	params := make([]river.InsertManyParams, 0, chunk)
	for written := 0; written < n; {
		params = params[:0]
		for range min(chunk, n-written) {
			params = append(params, river.InsertManyParams{Args: noopArgs{}})
		}
		if _, err := tb.client.InsertMany(ctx, params); err != nil {
			return fmt.Errorf("preload, after %d of %d jobs: %w", written, n, err)
		}
		written += len(params)
		tb.inserted.Add(int64(len(params)))
	}
	return nil
}

// checkCompleted makes sure the database agrees with the subscription
// that want jobs are completed and none is left to work.
func (tb *testbed) checkCompleted(ctx context.Context, want int) error {
	var completed, other int
	err := tb.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state <> 'completed') FROM river_job`).
		Scan(&completed, &other)
	if err != nil {
		return fmt.Errorf("count the jobs: %w", err)
	}
	if completed != want || other != 0 {
		return fmt.Errorf("the job table has %d jobs completed and %d in other states; want %d completed", completed, other, want)
	}
	return nil
}

// sustainedResult is what the sustained phase measured.
type sustainedResult struct {
	window              time.Duration
	inserted, completed int64
	backlog             int64 // inserted and not completed when the window closed
}

// sustained runs cfg.Inserters goroutines inserting transactions of
// cfg.InsertBatch jobs for cfg.Duration, and counts what River completes
// meanwhile.
func (tb *testbed) sustained(ctx context.Context, cfg config) (sustainedResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		inserted atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	completedBefore := tb.done.n.Load()
	insertedBefore := tb.inserted.Load()
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for range cfg.Inserters {
		wg.Go(func() {
			params := make([]river.InsertManyParams, cfg.InsertBatch)
			for i := range params {
				params[i].Args = noopArgs{}
			}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				err := pgx.BeginFunc(ctx, tb.pool, func(tx pgx.Tx) error {
					_, err := tb.client.InsertManyTx(ctx, tx, params)
					return err
				})
				if err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				tb.inserted.Add(int64(len(params)))
				if time.Now().Before(deadline) {
					inserted.Add(int64(len(params)))
				}
			}
		})
	}
	// The window closes at the deadline, not when the last inserter's
	// transaction ends.
	timer := time.NewTimer(time.Until(deadline))
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	timer.Stop()
	window := time.Since(start)
	completed := tb.done.n.Load() - completedBefore
	backlog := tb.inserted.Load() - insertedBefore - completed
	wg.Wait()
	if firstErr != nil {
		return sustainedResult{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return sustainedResult{}, err
	}
	return sustainedResult{window: window, inserted: inserted.Load(), completed: completed, backlog: max(backlog, 0)}, nil
}

// latencyResult is what the latency phase measured.
type latencyResult struct {
	lat      []time.Duration // commit to start, per job
	inserted int
	rate     float64 // inserts per second achieved
	pending  int     // jobs that had not started when the phase gave up waiting
}

// latencyWait is how long the latency phase waits, after its last
// insert, for the jobs it inserted to start.
const latencyWait = 10 * time.Second

// latency inserts one job at a time at cfg.Rate per second for
// cfg.Duration and measures, per job, the time from its commit to the
// worker's start.
func (tb *testbed) latency(ctx context.Context, cfg config) (latencyResult, error) {
	tr := newTracker(tb.done.clock)
	tb.worker.setOnStart(tr.started)
	defer tb.worker.setOnStart(nil)

	pctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	began := time.Now()
	// Several goroutines, as in ferry bench jobs, so that a slow insert
	// does not hold up the next; the schedule is the same.
	made, err := pace(pctx, cfg.Rate, 8, func(ctx context.Context) error {
		res, err := tb.client.Insert(ctx, noopArgs{}, nil)
		if err != nil {
			return err
		}
		tr.committed(res.Job.ID, time.Now())
		tb.inserted.Add(1)
		return nil
	})
	took := time.Since(began)
	if err != nil {
		return latencyResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return latencyResult{}, err
	}
	wait, stop := context.WithTimeout(ctx, latencyWait)
	defer stop()
	for tr.pending() > 0 && wait.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	lat, pending := tr.latencies(tb.done.clock.now())
	return latencyResult{lat: lat, inserted: made, rate: rate(made, took), pending: pending}, nil
}

// noopArgs is the benchmark's job: it does nothing.
type noopArgs struct{}

// Kind is the job kind River stores.
func (noopArgs) Kind() string { return "ferry_bench_noop" }

// noopWorker works noopArgs by doing nothing, after telling onStart, if
// set, which job it starts.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	onStart atomic.Pointer[func(id int64)]
}

// Work starts job.
func (w *noopWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	if f := w.onStart.Load(); f != nil {
		(*f)(job.ID)
	}
	return nil
}

// setOnStart sets the function Work calls; nil for none.
func (w *noopWorker) setOnStart(f func(id int64)) {
	if f == nil {
		w.onStart.Store(nil)
		return
	}
	w.onStart.Store(&f)
}

// clock measures times as offsets from its start, on the monotonic clock.
type clock struct{ start time.Time }

func newClock() clock { return clock{start: time.Now()} }

// now is the time since the clock started.
func (c clock) now() time.Duration { return time.Since(c.start) }

// at converts t to an offset.
func (c clock) at(t time.Time) time.Duration { return t.Sub(c.start) }

// completions counts the jobs River reports completed.
type completions struct {
	clock clock
	n     atomic.Int64
	last  atomic.Int64 // offset of the latest completion, in nanoseconds
}

// count reads events until the channel closes.
func (c *completions) count(events <-chan *river.Event) {
	for ev := range events {
		if ev.Kind == river.EventKindJobCompleted {
			c.last.Store(int64(c.clock.now()))
			c.n.Add(1)
		}
	}
}

// stallTimeout is how long waitFor waits without a completion before it
// gives up.
const stallTimeout = 30 * time.Second

// waitFor waits until at least target jobs have been completed, and
// returns the offset of the completion that reached it (or a later one).
func (c *completions) waitFor(ctx context.Context, target int64) (time.Duration, error) {
	seen, progressed := c.n.Load(), time.Now()
	for {
		n := c.n.Load()
		if n >= target {
			return time.Duration(c.last.Load()), nil
		}
		if n != seen {
			seen, progressed = n, time.Now()
		}
		if time.Since(progressed) > stallTimeout {
			return 0, fmt.Errorf("%d of %d jobs completed, none in the last %v", n, target, stallTimeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// tracker pairs each job's commit with its worker's start, by job id. A
// start can be recorded before the commit (the worker may see the job as
// soon as it is committed, before Insert returns); that job's latency
// counts as zero, as in ferry's benchmarks.
type tracker struct {
	clock   clock
	mu      sync.Mutex
	commits map[int64]time.Duration
	starts  map[int64]time.Duration
}

func newTracker(c clock) *tracker {
	return &tracker{clock: c, commits: map[int64]time.Duration{}, starts: map[int64]time.Duration{}}
}

// committed records that job id was committed at t.
func (t *tracker) committed(id int64, at time.Time) {
	off := t.clock.at(at)
	t.mu.Lock()
	t.commits[id] = off
	t.mu.Unlock()
}

// started records that job id started now; a second start (a retry) is
// not counted.
func (t *tracker) started(id int64) {
	off := t.clock.now()
	t.mu.Lock()
	if _, ok := t.starts[id]; !ok {
		t.starts[id] = off
	}
	t.mu.Unlock()
}

// pending counts the committed jobs that have not started.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for id := range t.commits {
		if _, ok := t.starts[id]; !ok {
			n++
		}
	}
	return n
}

// latencies returns each committed job's commit-to-start time. A job that
// has not started counts with a lower bound, until - commit, so that
// jobs never started cannot flatter the percentiles.
func (t *tracker) latencies(until time.Duration) (lat []time.Duration, pending int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, c := range t.commits {
		s, ok := t.starts[id]
		if !ok {
			pending++
			s = until
		}
		lat = append(lat, max(0, s-c))
	}
	return lat, pending
}

// pace calls insert at rate calls per second, spread over workers
// goroutines, until ctx is done. Calls are scheduled at fixed times from
// the start; a call that cannot keep up is made late rather than
// skipped. It returns the calls made and the first error other than
// ctx's.
func pace(ctx context.Context, rate float64, workers int, insert func(ctx context.Context) error) (int, error) {
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	var (
		next, made atomic.Int64
		once       sync.Once
		first      error
		wg         sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(1, workers) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
				if err := insert(ctx); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { first = err; cancel() })
					}
					return
				}
				made.Add(1)
			}
		})
	}
	wg.Wait()
	return int(made.Load()), first
}

// stats are the nearest-rank percentiles of a set of latencies.
type stats struct {
	n             int
	p50, p99, max time.Duration
}

func summarize(lat []time.Duration) stats {
	if len(lat) == 0 {
		return stats{}
	}
	slices.Sort(lat)
	return stats{n: len(lat), p50: percentile(lat, 0.50), p99: percentile(lat, 0.99), max: lat[len(lat)-1]}
}

// percentile returns the nearest-rank q-th percentile of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	rank := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// countOver counts the latencies above d.
func countOver(lat []time.Duration, d time.Duration) int {
	n := 0
	for _, l := range lat {
		if l > d {
			n++
		}
	}
	return n
}

// rate is n per second over d; 0 if d is not positive.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// round keeps three decimals, as bench.Result does for values.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }

// riverVersion is the version of River this program was built with.
func riverVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/riverqueue/river" {
				return m.Version
			}
		}
	}
	return "unknown"
}

func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func progress(cfg config, format string, args ...any) {
	fmt.Fprintf(cfg.Progress, "river bench: "+format+"\n", args...)
}
