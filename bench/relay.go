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

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
)

// RelayConfig configures the relay benchmark. Zero fields take the
// defaults shown.
type RelayConfig struct {
	// DB is the database URL (see store.Open). Required.
	DB string
	// Messages is how many messages are preloaded and drained. Default
	// 1,000,000.
	Messages int
	// Chunk is the preload's messages per transaction. Default 10,000.
	Chunk int
	// Keys is the number of distinct message keys; negative means unkeyed
	// messages. Default 10,000.
	Keys int
	// Payload is the payload size in bytes. Default 200.
	Payload int
	// Duration is the length of the sustained phase; negative skips it.
	// Default 10s.
	Duration time.Duration
	// Writers and WriterBatch shape the sustained phase's load: Writers
	// goroutines each insert WriterBatch messages per transaction, as fast
	// as they can. Default 4 and 100.
	Writers     int
	WriterBatch int
	// Lanes spreads the messages over this many lanes, round robin.
	// Default 1. Each lane has its own fetcher and its own writer of
	// outcomes, so this shows how far the relay scales with lanes.
	Lanes int
	// Lane overrides the relay's lane settings (its Name is ignored); the
	// zero Lane takes relay's defaults.
	Lane relay.Lane
	// Retention is the relay's (relay.Options.Retention): negative deletes
	// delivered messages instead of keeping them DONE.
	Retention time.Duration
	// Logger receives the relay's logs. Default: warnings to stderr.
	Logger *slog.Logger
	// Progress, if set, receives a line now and then about the run.
	Progress io.Writer
	// StoreTimings, if set, prints to Progress how many store calls of each
	// kind the relay made in each phase and how long they took.
	StoreTimings bool
	// To names a broker the relay publishes to (see Brokers); empty means
	// a destination that only counts. With a broker, the drain is measured
	// a second time as system raw: the same messages published by a plain
	// client of the broker, so the relay's overhead shows.
	To string
	// Broker is the broker's URL; empty means the broker's default (a
	// local server, or for Kafka an in-process kfake cluster).
	Broker string
}

// brokerConcurrency is the lane concurrency of the relay benchmark when it
// publishes to a broker.
const brokerConcurrency = 1024

// relayLane is the lane of the relay benchmark's messages (with several
// lanes, the prefix of their names).
const relayLane = "bench"

// stallTimeout is how long the drain may make no progress before the
// benchmark gives up with an error rather than wait forever.
const stallTimeout = time.Minute

func (c RelayConfig) withDefaults() (RelayConfig, error) {
	if c.DB == "" {
		return c, errors.New("the relay benchmark needs a database: give its URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable or sqlite:bench.db")
	}
	setDefault(&c.Messages, 1_000_000)
	setDefault(&c.Chunk, 10_000)
	setDefault(&c.Keys, 10_000)
	setDefault(&c.Payload, 200)
	setDefault(&c.Duration, 10*time.Second)
	setDefault(&c.Writers, 4)
	setDefault(&c.WriterBatch, 100)
	setDefault(&c.Lanes, 1)
	if c.To != "" {
		// A broker acknowledges a message after a round trip; the relay
		// keeps many in flight to keep the broker's pipeline full, as a
		// broker route's lane should (see the README).
		conc := brokerConcurrency
		if t, ok := brokerTargets()[c.To]; ok && t.concurrency > 0 {
			conc = t.concurrency
		}
		setDefault(&c.Lane.Concurrency, conc)
	}
	if c.Logger == nil {
		c.Logger = QuietLogger(nil)
	}
	var errs []error
	if c.Messages < 0 {
		errs = append(errs, errors.New("the number of messages must be positive"))
	}
	if c.Chunk < 0 || c.Writers < 0 || c.WriterBatch < 0 || c.Lanes < 0 {
		errs = append(errs, errors.New("chunk, writers, writer batch and lanes must be positive"))
	}
	if c.Payload < 0 {
		errs = append(errs, errors.New("the payload size must not be negative"))
	}
	return c, errors.Join(errs...)
}

// counter is a destination that counts deliveries: to next if set, else
// it accepts everything.
type counter struct {
	n    atomic.Int64
	next ferry.Destination
}

func (c *counter) Deliver(ctx context.Context, r *ferry.Record) error {
	if c.next != nil {
		if err := c.next.Deliver(ctx, r); err != nil {
			return err
		}
	}
	c.n.Add(1)
	return nil
}

// Relay measures ferry's relay on a fresh table. On an error it returns
// the results measured so far with it. The metrics: write_rate (preloading
// Messages in big transactions through the Outbox's bulk path),
// drain_rate (a relay delivering all of them to a no-op destination,
// until none is WAITING: delivered and recorded DONE), then, unless
// Duration is negative, sustained_rate and sustained_write_rate (writers
// inserting at full speed while the relay delivers) and
// sustained_backlog.
func Relay(ctx context.Context, cfg RelayConfig) (_ []Result, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tb, err := openTestbed(ctx, cfg.DB, "ferry_bench_")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, tb.close()) }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	lanes := []string{relayLane}
	if cfg.Lanes > 1 {
		lanes = nil
		for i := range cfg.Lanes {
			lanes = append(lanes, fmt.Sprintf("%s-%d", relayLane, i))
		}
	}
	gen := &generator{lanes: lanes, topic: "events", typ: "Benchmarked", keyPrefix: "key-",
		keys: max(cfg.Keys, 0), payload: payloadOf(cfg.Payload)}
	params := []Param{
		{"lanes", len(lanes)}, {"keys", max(cfg.Keys, 0)}, {"payload_bytes", cfg.Payload}, {"chunk", cfg.Chunk},
		{"writers", cfg.Writers}, {"writer_batch", cfg.WriterBatch}, {"duration_s", max(cfg.Duration, 0).Seconds()},
		{"cpus", runtime.NumCPU()},
	}
	res := func(metric string, v float64, unit string, notes ...Param) Result {
		return Result{Bench: "relay", System: SystemFerry, Metric: metric, Value: v, Unit: unit,
			Messages: cfg.Messages, DB: tb.dialect, Params: params, Notes: notes}
	}
	var results []Result

	// Preload.
	progress(cfg.Progress, "relay: %s: writing %d messages in transactions of %d", tb.where(), cfg.Messages, cfg.Chunk)
	began := time.Now()
	for written := 0; written < cfg.Messages; {
		n := min(cfg.Chunk, cfg.Messages-written)
		if _, err := tb.write(ctx, gen.messages(written, n)); err != nil {
			return results, fmt.Errorf("preload, after %d of %d messages: %w", written, cfg.Messages, err)
		}
		written += n
	}
	loaded := time.Since(began)
	results = append(results, res(MetricWriteRate, rate(cfg.Messages, loaded), UnitRate, Param{"seconds", round(loaded.Seconds())}))
	progress(cfg.Progress, "relay: wrote %d messages in %v", cfg.Messages, loaded.Round(time.Millisecond))

	// Drain.
	var relayLanes []relay.Lane
	for _, name := range lanes {
		l := cfg.Lane
		l.Name = name
		relayLanes = append(relayLanes, l)
	}
	dest := &counter{}
	var broker *benchBroker
	if cfg.To != "" {
		broker, err = openBroker(ctx, cfg.To, cfg.Broker)
		if err != nil {
			return results, err
		}
		defer broker.close()
		progress(cfg.Progress, "relay: publishing to %s at %s, destination %s", cfg.To, broker.url, broker.dest)
		dest.next = broker.destination
		params = append(params, Param{"to", cfg.To})
	}
	st, timings := tb.relay, newStoreTimings()
	if cfg.StoreTimings {
		st = timed(st, timings)
	}
	r, err := relay.New(relay.Options{Store: st, Lanes: relayLanes, Retention: cfg.Retention,
		Routes: []relay.Route{{Topic: "*", Destination: dest}}, Logger: cfg.Logger})
	if err != nil {
		return results, err
	}
	began = time.Now()
	run := background(ctx, r.Run)
	defer run.stop()
	if err := drain(ctx, tb, dest, int64(cfg.Messages), run, cfg.Progress); err != nil {
		return results, err
	}
	drained := time.Since(began)
	results = append(results, res(MetricDrainRate, rate(cfg.Messages, drained), UnitRate, Param{"seconds", round(drained.Seconds())}))
	progress(cfg.Progress, "relay: drained %d messages in %v", cfg.Messages, drained.Round(time.Millisecond))
	if cfg.StoreTimings {
		timings.write(cfg.Progress, "the drain", drained)
		timings.reset()
	}
	if broker != nil {
		progress(cfg.Progress, "relay: publishing the same %d messages with a plain %s client", cfg.Messages, cfg.To)
		took, err := broker.raw(ctx, gen, cfg.Messages)
		if err != nil {
			return results, fmt.Errorf("raw %s client: %w", cfg.To, err)
		}
		raw := res(MetricDrainRate, rate(cfg.Messages, took), UnitRate, Param{"seconds", round(took.Seconds())})
		raw.System = SystemRaw
		results = append(results, raw)
		progress(cfg.Progress, "relay: the plain client published %d messages in %v", cfg.Messages, took.Round(time.Millisecond))
	}

	if cfg.Duration < 0 {
		return results, run.stop()
	}

	// Sustained: writers at full speed while the relay delivers.
	progress(cfg.Progress, "relay: sustained phase: %d writers of %d messages per transaction for %v", cfg.Writers, cfg.WriterBatch, cfg.Duration)
	phase, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var (
		written atomic.Int64
		wg      sync.WaitGroup
		errs    = make([]error, cfg.Writers)
	)
	base := dest.n.Load()
	began = time.Now()
	for w := range cfg.Writers {
		wg.Go(func() {
			for i := 0; phase.Err() == nil; i++ {
				if _, err := tb.write(phase, gen.messages(i*cfg.WriterBatch, cfg.WriterBatch)); err != nil {
					if phase.Err() == nil {
						errs[w] = fmt.Errorf("sustained phase, writer %d: %w", w, err)
						stop()
					}
					return
				}
				written.Add(int64(cfg.WriterBatch))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	delivered := dest.n.Load() - base
	if cfg.StoreTimings {
		timings.write(cfg.Progress, "the sustained phase", elapsed)
	}
	if err := errors.Join(errs...); err != nil {
		return results, err
	}
	if err := run.stop(); err != nil {
		return results, err
	}
	backlog, err := tb.waiting(ctx)
	if err != nil {
		return results, err
	}
	results = append(results,
		res(MetricSustainedWriteRate, rate(int(written.Load()), elapsed), UnitRate, Param{"written", written.Load()}),
		res(MetricSustainedRate, rate(int(delivered), elapsed), UnitRate, Param{"delivered", delivered}),
		res(MetricSustainedBacklog, float64(sum(backlog)), UnitMessages),
	)
	return results, nil
}

// drain waits until dest has seen n deliveries and then until no message
// is WAITING: every outcome is recorded. It fails if the
// relay stops or makes no progress for stallTimeout.
func drain(ctx context.Context, tb *testbed, dest *counter, n int64, run *task, w io.Writer) error {
	var (
		last      = int64(-1)
		lastMoved = time.Now()
		report    = time.Now()
	)
	for {
		if err := firstErr(ctx.Err(), run.failed()); err != nil {
			return err
		}
		got := dest.n.Load()
		if got >= n {
			waiting, err := tb.anyWaiting(ctx)
			if err != nil {
				return err
			}
			if !waiting {
				return nil
			}
		}
		if got != last {
			last, lastMoved = got, time.Now()
		} else if time.Since(lastMoved) > stallTimeout {
			return fmt.Errorf("the relay delivered %d of %d messages and then nothing for %v; look for FAILED messages with ferry inspect on %s",
				got, n, stallTimeout, tb.where())
		}
		if time.Since(report) >= 5*time.Second {
			progress(w, "relay:   delivered %d of %d", got, n)
			report = time.Now()
		}
		sleep(ctx, 5*time.Millisecond)
	}
}

// sum adds up the values of m.
func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
