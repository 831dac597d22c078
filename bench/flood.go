package bench

import (
	"context"
	"errors"
	"fmt"
	"github.com/ferry-dev/ferry"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"time"
)

// FloodConfig configures the flood benchmark. Zero fields take the
// defaults shown.
type FloodConfig struct {
	// DB is the database URL (see store.Open). Required.
	DB string
	// Batch is how many messages the batch job writes. Default 1,000,000.
	Batch int
	// Chunk is the batch job's messages per transaction. Default 5,000.
	Chunk int
	// OnlineRate is the online lane's messages per second, each in its own
	// transaction. Default 500.
	OnlineRate float64
	// Customers is the number of distinct keys of the online messages.
	// Default 1,000.
	Customers int
	// Payload is the payload size in bytes. Default 200.
	Payload int
	// Idle is how long the online lane runs alone before the flood (after
	// one second of warm-up that is not measured). Default 5s.
	Idle time.Duration
	// MaxFlood bounds the flood phase of each system: a relay that has not
	// delivered the whole batch by then is stopped, and its results say
	// so (the online latencies then count the undelivered messages at
	// their wait so far: a lower bound). Default 2m.
	MaxFlood time.Duration
	// PollAbove is ferry's relay's relay.Options.PollAbove: the rate of
	// commits to a lane above which it polls the lane and producers skip
	// notifying it (PostgreSQL). Default 0: off.
	PollAbove float64
	// Systems are the relays to measure, in order. Default ferry, then
	// the FIFO baseline.
	Systems []string
	// Logger receives the relay's logs. Default: warnings to stderr.
	Logger *slog.Logger
	// Progress, if set, receives a line now and then about the run.
	Progress io.Writer
	// StoreTimings, if set, prints to Progress how many store calls of each
	// kind ferry's relay made during the flood and how long they took.
	StoreTimings bool
}

// floodWarmup is the start of each run that is not measured: the relay
// takes its leases and the producers settle.
const floodWarmup = time.Second

func (c FloodConfig) withDefaults() (FloodConfig, error) {
	if c.DB == "" {
		return c, errors.New("the flood benchmark needs a database: give its URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable or sqlite:bench.db")
	}
	setDefault(&c.Batch, 1_000_000)
	setDefault(&c.Chunk, 5_000)
	setDefault(&c.OnlineRate, 500)
	setDefault(&c.Customers, 1_000)
	setDefault(&c.Payload, 200)
	setDefault(&c.Idle, 5*time.Second)
	setDefault(&c.MaxFlood, 2*time.Minute)
	if len(c.Systems) == 0 {
		c.Systems = []string{SystemFerry, SystemFIFO}
	}
	if c.Logger == nil {
		c.Logger = QuietLogger(nil)
	}
	var errs []error
	for _, bad := range []struct {
		cond bool
		msg  string
	}{
		{c.Batch < 0, "the batch size must be positive"},
		{c.Chunk < 0, "the chunk size must be positive"},
		{c.OnlineRate < 0, "the online rate must be positive"},
		{c.Customers < 0, "the number of customers must be positive"},
		{c.Payload < 0, "the payload size must not be negative"},
		{c.Idle < 0, "the idle phase must not be negative"},
		{c.MaxFlood < 0, "the flood phase limit must be positive"},
		{c.PollAbove < 0, "the rate above which lanes are polled must not be negative (0 is off)"},
	} {
		if bad.cond {
			errs = append(errs, errors.New(bad.msg))
		}
	}
	for _, s := range c.Systems {
		if s != SystemFerry && s != SystemFIFO {
			errs = append(errs, fmt.Errorf("unknown system %q; use %s or %s", s, SystemFerry, SystemFIFO))
		}
	}
	return c, errors.Join(errs...)
}

// setDefault sets *v to def if it is zero.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Flood runs the seed scenario: for each system, in the same process and
// each on a fresh table, the online lane alone (idle_p50_ms,
// idle_p99_ms), then a batch job floods the outbox while the online lane
// goes on (online_p50_ms, online_p99_ms, online_max_ms, batch_drain_rate,
// batch_write_rate). Latency is commit to delivery: from tx.Commit
// returning in the producer to the destination being called.
func Flood(ctx context.Context, cfg FloodConfig) ([]Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var results []Result
	for _, system := range cfg.Systems {
		rs, err := floodOne(ctx, cfg, system)
		if err != nil {
			return results, fmt.Errorf("flood benchmark, %s: %w", system, err)
		}
		results = append(results, rs...)
	}
	return results, nil
}

// floodOne runs the scenario with one system on a fresh table.
func floodOne(ctx context.Context, cfg FloodConfig, system string) (_ []Result, err error) {
	tb, err := openTestbed(ctx, cfg.DB, "ferry_bench_")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, tb.close()) }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	s := newScenario(tb, cfg.Customers, cfg.Payload)
	s.pollAbove = cfg.PollAbove
	timings := newStoreTimings()
	if cfg.StoreTimings {
		s.timings = timings
	}
	// Beside ferry's relay, PostgreSQL's own wake-up is timed: the floor
	// under the relay's latency (SystemNotify).
	if n, ok := tb.relay.(ferry.Notifier); ok && system == SystemFerry {
		s.notices = newNoticeTracker(s.clock)
		watch := background(ctx, func(ctx context.Context) error { return s.notices.listen(ctx, n) })
		defer watch.stop()
	}
	rel, err := s.startRelay(ctx, system, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer rel.stop()
	online := background(ctx, func(ctx context.Context) error { return s.produceOnline(ctx, cfg.OnlineRate) })
	defer online.stop()

	progress(cfg.Progress, "%s: %s, idle phase: the online lane alone at %v msg/s for %v", system, tb.where(), cfg.OnlineRate, floodWarmup+cfg.Idle)
	sleep(ctx, floodWarmup+cfg.Idle)
	if err := firstErr(ctx.Err(), rel.failed(), online.failed()); err != nil {
		return nil, err
	}

	floodStart := s.clock.now()
	timings.reset()
	progress(cfg.Progress, "%s: flood phase: a batch job writes %d messages in transactions of %d (at most %v)", system, cfg.Batch, cfg.Chunk, cfg.MaxFlood)
	batch := background(ctx, func(ctx context.Context) error { return s.produceBatch(ctx, cfg.Batch, cfg.Chunk) })
	defer batch.stop()
	truncated := false
	report := time.NewTicker(5 * time.Second)
	defer report.Stop()
	for s.batchDelivered.Load() < int64(cfg.Batch) {
		if err := firstErr(ctx.Err(), rel.failed(), online.failed(), batch.failed()); err != nil {
			return nil, err
		}
		if s.clock.now()-floodStart >= cfg.MaxFlood {
			truncated = true
			break
		}
		select {
		case <-report.C:
			progress(cfg.Progress, "%s:   %v: batch written %d, delivered %d of %d; online delivered %d of %d",
				system, (s.clock.now() - floodStart).Round(time.Second), s.batchWritten.Load(), s.batchDelivered.Load(), cfg.Batch,
				s.onlineDelivered.Load(), s.onlineWritten.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	floodEnd := s.clock.now()
	if !truncated {
		floodEnd = time.Duration(s.lastBatch.Load())
	}
	if cfg.StoreTimings && system == SystemFerry {
		timings.write(cfg.Progress, "the flood", floodEnd-floodStart)
	}
	if err := batch.stop(); err != nil {
		return nil, err
	}
	if !truncated {
		// Online messages committed near the end of the phase still count:
		// give them time to arrive.
		s.waitOnline(ctx, floodEnd, 5*time.Second)
	}
	if err := firstErr(online.stop(), rel.stop()); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	now := s.clock.now()

	idleLat, _ := s.online.window(floodWarmup, floodStart, now)
	idle := summarize(idleLat)
	floodLat, undelivered := s.online.window(floodStart, floodEnd, now)
	fl := summarize(floodLat)

	delivered := int(s.batchDelivered.Load())
	first := time.Duration(s.firstBatch.Load())
	drainEnd := time.Duration(s.lastBatch.Load())
	if truncated {
		drainEnd = floodEnd
	}
	wrote := time.Duration(s.batchWrote.Load())

	params := []Param{
		{"batch", cfg.Batch}, {"chunk", cfg.Chunk}, {"online_rate", cfg.OnlineRate}, {"customers", cfg.Customers},
		{"payload_bytes", cfg.Payload}, {"idle_s", cfg.Idle.Seconds()}, {"max_flood_s", cfg.MaxFlood.Seconds()},
		{"poll_above", cfg.PollAbove},
		{"cpus", runtime.NumCPU()},
	}
	onlineNotes := []Param{{"samples", fl.n}, {"over_100ms", countOver(floodLat, 100*time.Millisecond)},
		{"flood_s", round((floodEnd - floodStart).Seconds())},
		{"online_rate_measured", round(float64(s.onlineWritten.Load()) / now.Seconds())}}
	if undelivered > 0 {
		onlineNotes = append(onlineNotes, Param{"undelivered", undelivered}, Param{"lower_bound", true})
	}
	idleNotes := []Param{{"samples", idle.n}, {"over_100ms", countOver(idleLat, 100*time.Millisecond)}}
	batchNotes := []Param{{"delivered", delivered}}
	if truncated {
		batchNotes = append(batchNotes, Param{"truncated", true})
	}
	resOf := func(system, metric string, v float64, unit string, notes []Param) Result {
		return Result{Bench: "flood", System: system, Metric: metric, Value: v, Unit: unit, Messages: cfg.Batch,
			DB: tb.dialect, Params: params, Notes: slices.Clone(notes)}
	}
	res := func(metric string, v float64, unit string, notes []Param) Result {
		return resOf(system, metric, v, unit, notes)
	}
	results := []Result{
		res(MetricIdleP50, ms(idle.p50), UnitMillis, idleNotes),
		res(MetricIdleP99, ms(idle.p99), UnitMillis, idleNotes),
		res(MetricOnlineP50, ms(fl.p50), UnitMillis, onlineNotes),
		res(MetricOnlineP99, ms(fl.p99), UnitMillis, onlineNotes),
		res(MetricOnlineMax, ms(fl.max), UnitMillis, onlineNotes),
		res(MetricBatchDrainRate, rate(delivered, drainEnd-first), UnitRate, batchNotes),
	}
	if wrote > 0 {
		results = append(results, res(MetricBatchWriteRate, rate(cfg.Batch, wrote-first), UnitRate, nil))
	}
	if s.notices != nil {
		idle := summarize(s.notices.window(s.online, floodWarmup, floodStart))
		fl := summarize(s.notices.window(s.online, floodStart, floodEnd))
		idleNotes, floodNotes := []Param{{"samples", idle.n}}, []Param{{"samples", fl.n}}
		results = append(results,
			resOf(SystemNotify, MetricIdleP50, ms(idle.p50), UnitMillis, idleNotes),
			resOf(SystemNotify, MetricIdleP99, ms(idle.p99), UnitMillis, idleNotes),
			resOf(SystemNotify, MetricOnlineP50, ms(fl.p50), UnitMillis, floodNotes),
			resOf(SystemNotify, MetricOnlineP99, ms(fl.p99), UnitMillis, floodNotes),
			resOf(SystemNotify, MetricOnlineMax, ms(fl.max), UnitMillis, floodNotes))
	}
	return results, nil
}

// rate is n per second over d; 0 if d is not positive.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// countOver counts the latencies above d: the tail behind a p99.
func countOver(lat []time.Duration, d time.Duration) int {
	n := 0
	for _, l := range lat {
		if l > d {
			n++
		}
	}
	return n
}
