package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/jobs"
)

// JobsConfig configures the job queue benchmark. Zero fields take the
// defaults shown.
type JobsConfig struct {
	// DB is the database URL (see store.Open). Required.
	DB string
	// Jobs is the preloaded backlog of the drain. Default 200,000.
	Jobs int
	// Chunk is the jobs per transaction of the preload. Default 10,000.
	Chunk int
	// Workers is the queue's concurrency. Default 100.
	Workers int
	// Duration is the length of the sustained and latency phases.
	// Default 10s.
	Duration time.Duration
	// Inserters and InsertBatch shape the sustained phase's load. Default
	// 4 and 100.
	Inserters   int
	InsertBatch int
	// Rate is the latency phase's inserts per second, one job per
	// transaction. Default 500.
	Rate float64
	// Logger receives the client's logs. Default: warnings to stderr.
	Logger *slog.Logger
	// Progress, if set, receives a line now and then about the run.
	Progress io.Writer
}

// noop is the benchmark's job: it does nothing, so the queue's own cost
// shows.
type noop struct {
	N int `json:"n"`
}

func (noop) Kind() string { return "noop" }

// Jobs measures the job queue with no-op jobs on a fresh table: drain_rate
// (a preloaded backlog run to completion), sustained_rate (completed per
// second while inserters insert at full speed) and start_p50_ms and
// start_p99_ms (from an insert's commit to its worker starting, at Rate
// jobs per second). The benchmark module in bench/river measures River
// the same way.
func Jobs(ctx context.Context, cfg JobsConfig) (_ []Result, err error) {
	if cfg.DB == "" {
		return nil, errors.New("the jobs benchmark needs a database: give its URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
	setDefault(&cfg.Jobs, 200_000)
	setDefault(&cfg.Chunk, 10_000)
	setDefault(&cfg.Workers, 100)
	setDefault(&cfg.Duration, 10*time.Second)
	setDefault(&cfg.Inserters, 4)
	setDefault(&cfg.InsertBatch, 100)
	setDefault(&cfg.Rate, 500)
	if cfg.Logger == nil {
		cfg.Logger = QuietLogger(nil)
	}
	tb, err := openTestbed(ctx, cfg.DB, "ferry_bench_jobs_")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, tb.close()) }()

	clock := newClock()
	track := newTracker(clock)
	var completed atomic.Int64
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[noop]) error {
		track.deliveredNow(job.ID)
		completed.Add(1)
		return nil
	})
	client, err := jobs.NewClient(tb.store, jobs.Config{Workers: workers, Logger: cfg.Logger,
		Queues: map[string]jobs.Queue{jobs.DefaultQueue: {Concurrency: cfg.Workers}}})
	if err != nil {
		return nil, err
	}
	if err := client.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("create the job tables beside %s: %w", tb.table, err)
	}
	params := []Param{{"workers", cfg.Workers}, {"duration_s", cfg.Duration.Seconds()}, {"inserters", cfg.Inserters},
		{"insert_batch", cfg.InsertBatch}, {"rate", cfg.Rate}, {"cpus", runtime.NumCPU()}}
	res := func(metric string, v float64, unit string, n int, notes ...Param) Result {
		return Result{Bench: "jobs", System: SystemFerry, Metric: metric, Value: v, Unit: unit, Messages: n, DB: tb.dialect, Params: params, Notes: notes}
	}
	insert := func(ctx context.Context, n int) ([]string, time.Time, error) {
		params := make([]jobs.InsertParams, n)
		for i := range params {
			params[i] = jobs.InsertParams{Args: noop{N: i}}
		}
		if tb.writeMu != nil {
			tb.writeMu.Lock()
			defer tb.writeMu.Unlock()
		}
		tx, err := tb.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, time.Time{}, err
		}
		ids, err := client.InsertMany(ctx, tx, params)
		if err != nil {
			tx.Rollback()
			return nil, time.Time{}, err
		}
		if err := tx.Commit(); err != nil {
			return nil, time.Time{}, err
		}
		return ids, time.Now(), nil
	}

	// (a) Drain a preloaded backlog.
	progress(cfg.Progress, "jobs: %s: inserting %d jobs in transactions of %d", tb.where(), cfg.Jobs, cfg.Chunk)
	for done := 0; done < cfg.Jobs; {
		n := min(cfg.Chunk, cfg.Jobs-done)
		if _, _, err := insert(ctx, n); err != nil {
			return nil, fmt.Errorf("preload, after %d of %d jobs: %w", done, cfg.Jobs, err)
		}
		done += n
	}
	began := time.Now()
	run := background(ctx, client.Run)
	defer run.stop()
	var results []Result
	for completed.Load() < int64(cfg.Jobs) {
		if err := firstErr(ctx.Err(), run.failed()); err != nil {
			return results, err
		}
		sleep(ctx, 2*time.Millisecond)
	}
	for waiting, err := tb.anyWaiting(ctx); waiting || err != nil; waiting, err = tb.anyWaiting(ctx) {
		if err != nil {
			return results, err
		}
		sleep(ctx, 5*time.Millisecond)
	}
	drained := time.Since(began)
	results = append(results, res(MetricDrainRate, rate(cfg.Jobs, drained), UnitJobRate, cfg.Jobs, Param{"seconds", round(drained.Seconds())}))
	progress(cfg.Progress, "jobs: drained %d jobs in %v", cfg.Jobs, drained.Round(time.Millisecond))

	// (b) Sustained: inserters at full speed.
	phase, stop := context.WithTimeout(ctx, cfg.Duration)
	var (
		inserted atomic.Int64
		wg       sync.WaitGroup
		errs     = make([]error, cfg.Inserters)
	)
	base := completed.Load()
	began = time.Now()
	for w := range cfg.Inserters {
		wg.Go(func() {
			for phase.Err() == nil {
				if _, _, err := insert(phase, cfg.InsertBatch); err != nil {
					if phase.Err() == nil {
						errs[w] = err
						stop()
					}
					return
				}
				inserted.Add(int64(cfg.InsertBatch))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	stop()
	if err := errors.Join(errs...); err != nil {
		return results, fmt.Errorf("sustained phase: %w", err)
	}
	done := completed.Load() - base
	results = append(results, res(MetricSustainedRate, rate(int(done), elapsed), UnitJobRate, int(done),
		Param{"inserted_per_s", round(rate(int(inserted.Load()), elapsed))}))
	progress(cfg.Progress, "jobs: sustained: %d completed, %d inserted in %v", done, inserted.Load(), elapsed.Round(time.Millisecond))

	// Let the sustained phase's backlog drain before measuring latency.
	for waiting, err := tb.anyWaiting(ctx); waiting || err != nil; waiting, err = tb.anyWaiting(ctx) {
		if err != nil {
			return results, err
		}
		sleep(ctx, 20*time.Millisecond)
	}

	// (c) Latency at Rate jobs per second, one per transaction.
	from := clock.now()
	phase, stop = context.WithTimeout(ctx, cfg.Duration)
	made, err := pace(phase, cfg.Rate, 8, func(ctx context.Context, i int) error {
		ids, at, err := insert(ctx, 1)
		if err == nil {
			track.committed(ids, at)
		}
		return err
	})
	stop()
	if err != nil && ctx.Err() == nil {
		return results, fmt.Errorf("latency phase: %w", err)
	}
	to := clock.now()
	sleep(ctx, time.Second) // the last jobs start
	lat, pending := track.window(from, to, clock.now())
	s := summarize(lat)
	notes := []Param{{"jobs", made}, {"not_started", pending}}
	results = append(results,
		res(MetricStartP50, ms(s.p50), UnitMillis, made, notes...),
		res(MetricStartP99, ms(s.p99), UnitMillis, made, notes...))
	progress(cfg.Progress, "jobs: latency at %g/s: p50 %.2fms p99 %.2fms", cfg.Rate, ms(s.p50), ms(s.p99))
	return results, run.stop()
}
