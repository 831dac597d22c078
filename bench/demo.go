package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/store"
)

// DemoConfig configures Demo. Zero fields take the defaults shown.
type DemoConfig struct {
	// DB is the database URL (see store.Open); empty means a SQLite file
	// in a temporary directory, removed at the end. On a database of
	// yours the demo uses a table of its own and drops it at the end.
	DB string
	// Duration is how long the demo runs. Default 60s.
	Duration time.Duration
	// OnlineRate is the online service's messages per second, each in its
	// own transaction. Default 50.
	OnlineRate float64
	// Customers is the number of distinct keys of online messages.
	// Default 300.
	Customers int
	// Batch is how many messages the batch job writes. Default 100,000.
	Batch int
	// Chunk is the batch job's messages per transaction. Default 5,000.
	Chunk int
	// FloodAt is when the batch job starts. Default 10s, or a third of
	// Duration if that is shorter.
	FloodAt time.Duration
	// Out receives the demo's output. Default os.Stdout.
	Out io.Writer
	// Logger receives the relay's logs. Default: warnings to stderr.
	Logger *slog.Logger
}

// Latency summarizes the online lane's commit-to-delivery latency over
// a part of the demo.
type Latency struct {
	N             int // messages measured
	P50, P99, Max time.Duration
}

// DemoSummary is what the demo measured.
type DemoSummary struct {
	// DB is the database: "sqlite", "postgres" or "mysql".
	DB string
	// Before and During are the online lane's latency before the batch job
	// started and from then until the batch was delivered (or the demo
	// ended).
	Before, During Latency
	// BatchWritten and BatchDelivered count the batch job's messages.
	BatchWritten, BatchDelivered int
	// BatchDrain is the time from the batch job's start to its last
	// message's delivery; BatchRate is BatchDelivered per second over it.
	BatchDrain time.Duration
	BatchRate  float64
	// Drained is whether the whole batch was delivered before the end.
	Drained bool
	// MaxBatchWaiting is the largest batch backlog (WAITING) seen.
	MaxBatchWaiting int
}

func (c DemoConfig) withDefaults() (DemoConfig, error) {
	setDefault(&c.Duration, 60*time.Second)
	setDefault(&c.OnlineRate, 50)
	setDefault(&c.Customers, 300)
	setDefault(&c.Batch, 100_000)
	setDefault(&c.Chunk, 5_000)
	if c.FloodAt == 0 {
		c.FloodAt = min(10*time.Second, c.Duration/3)
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = QuietLogger(nil)
	}
	switch {
	case c.Duration < 3*time.Second:
		return c, fmt.Errorf("the demo needs at least 3s to show anything, got %v", c.Duration)
	case c.OnlineRate < 0 || c.Customers < 0 || c.Batch < 0 || c.Chunk < 0:
		return c, errors.New("the online rate, customers, batch and chunk must be positive")
	case c.FloodAt < 0 || c.FloodAt >= c.Duration:
		return c, fmt.Errorf("the batch job must start within the demo's %v, not at %v", c.Duration, c.FloodAt)
	}
	return c, nil
}

// Demo plays the north-star scenario at a small scale and narrates it to
// cfg.Out: an online service writes at a steady rate, a batch job floods
// the outbox part way through, and one relay with two lanes delivers both
// to an in-process destination. Every second it prints each lane's
// backlog and deliveries and the online latency; at the end, a summary.
// It runs for cfg.Duration, or until ctx is done, and then still prints
// the summary.
func Demo(ctx context.Context, cfg DemoConfig) (_ *DemoSummary, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tb, err := openTestbed(ctx, cfg.DB, "ferry_demo_")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, tb.close()) }()
	out := cfg.Out

	s := newScenario(tb, cfg.Customers, 200)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	rel, err := s.startRelay(runCtx, SystemFerry, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer rel.stop()
	online := background(runCtx, func(ctx context.Context) error { return s.produceOnline(ctx, cfg.OnlineRate) })
	defer online.stop()

	where := "SQLite, in a temporary file removed at the end"
	if tb.tmpDir == "" {
		where = fmt.Sprintf("%s (table %s, dropped at the end)", store.Describe(tb.url), tb.table)
	}
	fmt.Fprintf(out, "ferry demo: %v on %s.\n", cfg.Duration, where)
	fmt.Fprintf(out, "  An online service writes %s orders/s, each in its own transaction, for %s customers (lane %q, weight %d).\n",
		group(cfg.OnlineRate, 0), group(float64(cfg.Customers), 0), laneOnline, onlineWeight)
	fmt.Fprintf(out, "  At %v a batch job writes %s settlements in transactions of %s (lane %q, weight %d).\n",
		cfg.FloodAt.Round(time.Second), group(float64(cfg.Batch), 0), group(float64(cfg.Chunk), 0), laneBatch, batchWeight)
	fmt.Fprintf(out, "  One relay delivers both lanes to an in-process destination. Latency: from commit to delivery.\n\n")
	fmt.Fprintf(out, "  %5s | %14s %9s %8s %8s | %13s %9s\n", "time", "online waiting", "deliv/s", "p50", "p99", "batch waiting", "deliv/s")

	var (
		batch       *task
		floodStart  time.Duration = -1
		drainedAt   time.Duration = -1
		prevTick    time.Duration
		prevOnline  int64
		prevBatch   int64
		maxBacklog  int
		wroteLogged bool
	)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	floodTimer := time.NewTimer(cfg.FloodAt)
	defer floodTimer.Stop()
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-floodTimer.C:
			floodStart = s.clock.now()
			fmt.Fprintf(out, "  %5s   >>> the batch job starts: %s messages, %s per transaction\n",
				fmtElapsed(floodStart), group(float64(cfg.Batch), 0), group(float64(cfg.Chunk), 0))
			batch = background(runCtx, func(ctx context.Context) error { return s.produceBatch(ctx, cfg.Batch, cfg.Chunk) })
			continue
		case <-tick.C:
		}
		if err := firstErr(rel.failed(), online.failed()); err != nil {
			return nil, err
		}
		if batch != nil {
			if err := batch.failed(); err != nil {
				return nil, err
			}
		}
		now := s.clock.now()
		waiting, err := tb.waiting(runCtx)
		if err != nil {
			if runCtx.Err() != nil {
				break loop
			}
			return nil, err
		}
		maxBacklog = max(maxBacklog, waiting[laneBatch])
		on, ba := s.onlineDelivered.Load(), s.batchDelivered.Load()
		// What happened during the second, then the second's line.
		if w := s.batchWrote.Load(); w > 0 && !wroteLogged {
			wroteLogged = true
			fmt.Fprintf(out, "  %5s   >>> the batch job has committed all %s messages\n", fmtElapsed(time.Duration(w)), group(float64(cfg.Batch), 0))
		}
		if drainedAt < 0 && ba >= int64(cfg.Batch) {
			drainedAt = time.Duration(s.lastBatch.Load())
			fmt.Fprintf(out, "  %5s   >>> the batch is delivered\n", fmtElapsed(drainedAt))
		}
		per := (now - prevTick).Seconds()
		lat := summarize(s.online.deliveredIn(prevTick, now))
		p50, p99 := "-", "-"
		if lat.n > 0 {
			p50, p99 = fmtLatency(lat.p50), fmtLatency(lat.p99)
		}
		fmt.Fprintf(out, "  %5s | %14s %9s %8s %8s | %13s %9s\n", fmtElapsed(now),
			group(float64(waiting[laneOnline]), 0), group(float64(on-prevOnline)/per, 0), p50, p99,
			group(float64(waiting[laneBatch]), 0), group(float64(ba-prevBatch)/per, 0))
		prevTick, prevOnline, prevBatch = now, on, ba
	}
	// Stop the producers first, then the relay.
	if batch != nil {
		if err := batch.stop(); err != nil {
			return nil, err
		}
	}
	if err := firstErr(online.stop(), rel.stop()); err != nil {
		return nil, err
	}

	end := s.clock.now()
	sum := &DemoSummary{DB: tb.dialect, BatchWritten: int(s.batchWritten.Load()), BatchDelivered: int(s.batchDelivered.Load()),
		Drained: drainedAt >= 0, MaxBatchWaiting: maxBacklog}
	beforeTo, duringTo := end, end
	if floodStart >= 0 {
		beforeTo = floodStart
		if drainedAt >= 0 {
			duringTo = drainedAt
		}
	}
	before, _ := s.online.window(floodWarmup, beforeTo, 0)
	sum.Before = toLatency(summarize(before))
	if floodStart >= 0 {
		during, _ := s.online.window(floodStart, duringTo, 0)
		sum.During = toLatency(summarize(during))
		drainEnd := end
		if sum.Drained {
			drainEnd = drainedAt
		}
		sum.BatchDrain = drainEnd - time.Duration(s.firstBatch.Load())
		sum.BatchRate = rate(sum.BatchDelivered, sum.BatchDrain)
	}
	if ctx.Err() != nil {
		fmt.Fprintf(out, "\n  (stopped early at %v)\n", fmtElapsed(end))
	}
	printSummary(out, cfg, sum)
	return sum, nil
}

func toLatency(s stats) Latency { return Latency{N: s.n, P50: s.p50, P99: s.p99, Max: s.max} }

// printSummary prints the demo's summary and what it means.
func printSummary(out io.Writer, cfg DemoConfig, s *DemoSummary) {
	line := func(label string, l Latency) {
		if l.N == 0 {
			fmt.Fprintf(out, "  %-32s no messages measured\n", label)
			return
		}
		fmt.Fprintf(out, "  %-32s p50 %-8s p99 %-8s max %-8s (%s messages)\n", label,
			fmtLatency(l.P50), fmtLatency(l.P99), fmtLatency(l.Max), group(float64(l.N), 0))
	}
	fmt.Fprintf(out, "\nSummary\n")
	line("online latency before the batch:", s.Before)
	line("online latency during the batch:", s.During)
	switch {
	case s.BatchWritten == 0 && s.BatchDelivered == 0:
		fmt.Fprintf(out, "  batch: did not start\n")
	case s.Drained:
		fmt.Fprintf(out, "  batch: %s messages delivered in %s (%s msg/s); its backlog peaked at %s\n",
			group(float64(s.BatchDelivered), 0), fmtLatency(s.BatchDrain), group(s.BatchRate, 0), group(float64(s.MaxBatchWaiting), 0))
	default:
		fmt.Fprintf(out, "  batch: %s of %s messages written, %s delivered by the end (%s msg/s); its backlog peaked at %s\n",
			group(float64(s.BatchWritten), 0), group(float64(cfg.Batch), 0), group(float64(s.BatchDelivered), 0),
			group(s.BatchRate, 0), group(float64(s.MaxBatchWaiting), 0))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, explain(s))
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Run it on PostgreSQL:  ferry demo --db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'")
	fmt.Fprintln(out, "Measure it, next to a single FIFO relay:  ferry bench flood --db 'postgres://...' --batch 200000")
}

// explain says in a few sentences what the demo showed, going by the
// numbers rather than by what it was meant to show.
func explain(s *DemoSummary) string {
	if s.During.N == 0 || s.Before.N == 0 {
		return "The demo ended before it could compare the online lane's latency before and during the batch; run it longer (--duration 60s)."
	}
	fifo := "A single FIFO relay, as most outboxes start, would have made every online message wait for the whole batch backlog ahead of it."
	if s.During.P99 <= 2*s.Before.P99+5*time.Millisecond {
		return fmt.Sprintf("What you saw: while up to %s batch messages waited, online messages still arrived with p99 %s, as before the batch (%s). "+
			"Each lane has its own queue, workers and weighted share of the relay's database work, so the batch's backlog is invisible "+
			"to the online lane: there is no shared queue to wait in. %s",
			group(float64(s.MaxBatchWaiting), 0), fmtLatency(s.During.P99), fmtLatency(s.Before.P99), fifo)
	}
	return fmt.Sprintf("What you saw: while up to %s batch messages waited, the online p50 went from %s to %s and the p99 from %s to %s. "+
		"The online lane does not queue behind the batch: each lane has its own queue, workers and weighted share of the relay. "+
		"But both share one database and this machine's CPUs, and the batch job's large transactions and the relay's work on "+
		"the batch slow down the online lane's queries and commits. %s",
		group(float64(s.MaxBatchWaiting), 0), fmtLatency(s.Before.P50), fmtLatency(s.During.P50),
		fmtLatency(s.Before.P99), fmtLatency(s.During.P99), fifo)
}

// fmtElapsed formats an offset of the demo's clock as whole seconds.
func fmtElapsed(d time.Duration) string {
	return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
}

// fmtLatency formats a latency for people: 0.8ms, 12ms, 1.4s.
func fmtLatency(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", ms(d)), ".0") + "ms"
	case d < time.Second:
		return fmt.Sprintf("%.0fms", ms(d))
	default:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
}
