package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/transport"
)

// ConsumeConfig configures the consume benchmark. Zero fields take the
// defaults shown.
type ConsumeConfig struct {
	// Transport is the broker (see Brokers) whose subscriber the consumer
	// reads; default kafka, on an in-process kfake cluster.
	Transport string
	// Broker is the broker's URL; empty means the transport's default.
	Broker string
	// Messages is how many messages the key and unordered systems handle.
	// Default 20,000.
	Messages int
	// BaselineMessages is how many the partition system handles: one at a
	// time, it is slow. Default 1,000.
	BaselineMessages int
	// Keys is the number of distinct keys. Default 100.
	Keys int
	// HandlerDelay is how long the handler waits, like an I/O call.
	// Default 5ms.
	HandlerDelay time.Duration
	// Concurrency is the handlers in flight of the key and unordered
	// systems. Default Keys, so that key order and no order have the same
	// goroutines and differ only in the order they keep.
	Concurrency int
	// Systems to measure, of "partition", "key" and "unordered". Default
	// all three.
	Systems []string
	// Logger receives the consumers' logs. Default: warnings to stderr.
	Logger *slog.Logger
	// Progress, if set, receives a line now and then about the run.
	Progress io.Writer
}

func (c ConsumeConfig) withDefaults() (ConsumeConfig, error) {
	setDefault(&c.Transport, "kafka")
	setDefault(&c.Messages, 20_000)
	setDefault(&c.BaselineMessages, 1_000)
	setDefault(&c.Keys, 100)
	setDefault(&c.HandlerDelay, 5*time.Millisecond)
	setDefault(&c.Concurrency, c.Keys)
	if len(c.Systems) == 0 {
		c.Systems = []string{"partition", "key", "unordered"}
	}
	if c.Logger == nil {
		c.Logger = QuietLogger(nil)
	}
	var errs []error
	if c.Messages < 0 || c.BaselineMessages < 0 || c.Keys < 0 || c.Concurrency < 0 || c.HandlerDelay < 0 {
		errs = append(errs, errors.New("messages, baseline messages, keys, concurrency and the handler delay must be positive"))
	}
	for _, s := range c.Systems {
		if _, err := consume.ParseOrder(s); err != nil {
			errs = append(errs, fmt.Errorf("unknown system %q: use partition, key or unordered", s))
		}
	}
	return c, errors.Join(errs...)
}

// Consume measures the consumer runtime as the seeds' Parallel Consumer
// experiment does: one partition, Keys keys, a handler that waits
// HandlerDelay. For each system (an ordering mode) it preloads a topic of
// its own and reports metric throughput, messages handled per second from
// the consumer's start to the last message handled.
func Consume(ctx context.Context, cfg ConsumeConfig) (_ []Result, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t, ok := brokerTargets()[cfg.Transport]
	if !ok || t.subscriber == nil {
		return nil, fmt.Errorf("transport %q cannot be consumed by the benchmark: use one of %s", cfg.Transport, consumable())
	}
	url := cfg.Broker
	if url == "" {
		url = t.defaultURL
	}
	url, stop, err := t.start(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Transport, err)
	}
	defer stop()

	var results []Result
	for _, system := range cfg.Systems {
		order, _ := consume.ParseOrder(system)
		n := cfg.Messages
		if order == consume.PartitionOrder {
			n = cfg.BaselineMessages
		}
		progress(cfg.Progress, "consume: %s: %d messages of %d keys, handler %v", system, n, cfg.Keys, cfg.HandlerDelay)
		took, err := consumeOnce(ctx, t, url, cfg, order, n)
		if err != nil {
			return results, fmt.Errorf("%s: %w", system, err)
		}
		progress(cfg.Progress, "consume: %s: %d messages in %v", system, n, took.Round(time.Millisecond))
		results = append(results, Result{Bench: "consume", System: system, Metric: MetricThroughput, Value: rate(n, took), Unit: UnitRate,
			Messages: n, Params: []Param{{"transport", cfg.Transport}, {"keys", cfg.Keys}, {"handler_ms", ms(cfg.HandlerDelay)},
				{"concurrency", cfg.Concurrency}, {"partitions", 1}, {"cpus", runtime.NumCPU()}},
			Notes: []Param{{"seconds", round(took.Seconds())}}})
	}
	return results, nil
}

func consumable() string {
	var names []string
	for _, name := range Brokers() {
		if brokerTargets()[name].subscriber != nil {
			names = append(names, name)
		}
	}
	return fmt.Sprint(names)
}

// consumeOnce preloads n messages on a topic of one partition and times a
// consumer handling all of them in the given order.
func consumeOnce(ctx context.Context, t brokerTarget, url string, cfg ConsumeConfig, order consume.Order, n int) (time.Duration, error) {
	dest := "ferry-bench-consume-" + randomSuffix()
	prepare := t.prepare
	if t.onePartition != nil {
		prepare = t.onePartition
	}
	remove, err := prepare(ctx, url, dest)
	if err != nil {
		return 0, err
	}
	defer remove()
	sub, err := t.subscriber(ctx, url)
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	const group = "bench"
	// Subscribe once before the preload, so that brokers that route only
	// to existing queues (RabbitMQ) keep the messages for the group.
	first, err := sub.Subscribe(ctx, dest, group)
	if err != nil {
		return 0, err
	}
	first.Close()

	pub, err := t.publisher(ctx, url)
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	msgs := make([]*transport.Message, n)
	for i := range msgs {
		msgs[i] = &transport.Message{ID: fmt.Sprintf("c%08d", i), Topic: dest, Key: "key-" + strconv.Itoa(i%cfg.Keys), Type: "Benchmarked", Payload: []byte(strconv.Itoa(i))}
	}
	if err := t.raw(ctx, url, dest, msgs); err != nil {
		return 0, fmt.Errorf("preload: %w", err)
	}

	var handled atomic.Int64
	all := make(chan struct{})
	handler := consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		select {
		case <-time.After(cfg.HandlerDelay):
		case <-ctx.Done():
			return ctx.Err()
		}
		if handled.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	c, err := consume.New(consume.Options{Name: group, Subscriber: sub, Handler: handler, Topics: []string{dest},
		Order: order, Concurrency: cfg.Concurrency, Logger: cfg.Logger})
	if err != nil {
		return 0, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	began := time.Now()
	run := background(runCtx, c.Run)
	defer run.stop()
	report := time.NewTicker(5 * time.Second)
	defer report.Stop()
	for {
		select {
		case <-all:
			took := time.Since(began)
			cancel()
			return took, run.stop()
		case <-report.C:
			progress(cfg.Progress, "consume:   handled %d of %d", handled.Load(), n)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if err := run.failed(); err != nil {
			return 0, err
		}
	}
}
