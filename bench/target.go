package bench

import (
	"context"

	"github.com/ferry-dev/ferry/transport"
)

// A brokerTarget is what `ferry bench relay --to NAME` needs of a broker:
// ferry's publisher for the relay (system ferry) and the same messages
// published by a plain client of that broker (system raw), so the relay's
// overhead shows next to what the broker itself takes.
type brokerTarget struct {
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
}
