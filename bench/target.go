package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport"
)

// A brokerTarget is what `ferry bench relay --to NAME` needs of a broker:
// ferry's publisher for the relay (system ferry) and the same messages
// published by a plain client of that broker (system raw), so the relay's
// overhead shows next to what the broker itself takes.
type brokerTarget struct {
	// concurrency is the lane's concurrency in the benchmark unless
	// --concurrency says otherwise; 0 means brokerConcurrency.
	concurrency int
	// defaultURL is the broker's address when --broker is not given
	// ("nats://127.0.0.1:4222"). Empty means the target starts its own
	// broker in the process (Kafka: kfake).
	defaultURL string
	// start readies the broker at url and returns the URL to use and a
	// function that stops what start started. Targets with a broker
	// already running return url unchanged.
	start func(ctx context.Context, url string) (string, func(), error)
	// prepare makes dest ready to receive (creates a Kafka topic, a NATS
	// stream, a RabbitMQ exchange with a queue bound to it, ...) and
	// returns a function that removes it after the run.
	prepare func(ctx context.Context, url, dest string) (func(), error)
	// publisher returns ferry's publisher for the broker at url, as the
	// relay uses it.
	publisher func(ctx context.Context, url string) (transport.Publisher, error)
	// raw publishes msgs to dest with the broker's plain client, as fast
	// as that client goes while keeping the same guarantees ferry asks
	// for (acks from all replicas, publisher confirms, ...), and returns
	// once the broker has acknowledged every one.
	raw func(ctx context.Context, url, dest string, msgs []*transport.Message) error
	// subscriber, if set, returns a subscriber to the broker at url, for
	// `ferry bench consume`.
	subscriber func(ctx context.Context, url string) (transport.Subscriber, error)
	// onePartition, if set, prepares dest with a single partition, as the
	// consume benchmark wants; without it prepare serves.
	onePartition func(ctx context.Context, url, dest string) (func(), error)
}

// Brokers returns the names `ferry bench relay --to` accepts, sorted.
func Brokers() []string {
	return slices.Sorted(maps.Keys(brokerTargets()))
}

// brokerTargets returns the brokers the relay benchmark can publish to.
func brokerTargets() map[string]brokerTarget {
	return map[string]brokerTarget{
		"amqp":    amqpTarget(),
		"kafka":   kafkaTarget(),
		"nats":    natsTarget(),
		"redis":   redisTarget(),
		"webhook": webhookTarget(),
	}
}

// benchBroker is a broker ready for one benchmark run.
type benchBroker struct {
	target brokerTarget
	url    string
	dest   string
	pub    transport.Publisher
	// destination is the relay's route to dest.
	destination ferry.Destination
	cleanups    []func()
}

// openBroker starts (if need be) the broker named name, readies a
// destination of the run's own, and opens ferry's publisher to it.
func openBroker(ctx context.Context, name, url string) (_ *benchBroker, err error) {
	t, ok := brokerTargets()[name]
	if !ok {
		return nil, fmt.Errorf("unknown broker %q: use one of %s", name, strings.Join(Brokers(), ", "))
	}
	if url == "" {
		url = t.defaultURL
	}
	b := &benchBroker{target: t, dest: "ferry-bench-" + randomSuffix()}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	var stop func()
	b.url, stop, err = t.start(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b.cleanups = append(b.cleanups, stop)
	remove, err := t.prepare(ctx, b.url, b.dest)
	if err != nil {
		return nil, fmt.Errorf("prepare %s destination %s: %w", name, b.dest, err)
	}
	b.cleanups = append(b.cleanups, remove)
	b.pub, err = t.publisher(ctx, b.url)
	if err != nil {
		return nil, fmt.Errorf("%s publisher: %w", name, err)
	}
	b.cleanups = append(b.cleanups, func() { b.pub.Close() })
	b.destination = transport.Destination(b.pub, transport.Target(b.dest))
	return b, nil
}

// raw publishes messages 0..n-1 of gen to a destination of its own with
// the broker's plain client and returns how long that took.
func (b *benchBroker) raw(ctx context.Context, gen *generator, n int) (time.Duration, error) {
	dest := b.dest + "-raw"
	remove, err := b.target.prepare(ctx, b.url, dest)
	if err != nil {
		return 0, err
	}
	defer remove()
	msgs := make([]*transport.Message, n)
	now := time.Now()
	for i, m := range gen.messages(0, n) {
		msgs[i] = &transport.Message{ID: m.ID, Topic: m.Topic, Key: m.Key, Type: m.Type, Headers: m.Headers, Payload: m.Payload, OccurredAt: now}
	}
	began := time.Now()
	if err := b.target.raw(ctx, b.url, dest, msgs); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

// close undoes what openBroker did, last first.
func (b *benchBroker) close() {
	for _, f := range slices.Backward(b.cleanups) {
		f()
	}
	b.cleanups = nil
}
