// Package transporttest is the conformance suite every transport runs
// against its real broker: publish and read back with payload and headers
// intact, per-key order, redelivery after a nack and after a subscriber
// dies, competing consumers and fan-out, a broker that is down at start
// and one that goes away mid-run (through a TCP proxy that is cut, not a
// mock), a message the broker refuses, and the relay end to end from a
// PostgreSQL outbox.
//
// A transport's test describes its broker in a Broker and calls Run:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, transporttest.Broker{
//			Name:          "nats",
//			Addr:          "127.0.0.1:4222",
//			NewPublisher:  func(t *testing.T, addr string) transport.Publisher { ... },
//			NewSubscriber: func(t *testing.T, addr string) transport.Subscriber { ... },
//			NewDest:       func(t *testing.T) string { ... },
//			Ordered: true, Groups: true, Persistent: true,
//			Redelivery: 2 * time.Second,
//		})
//	}
package transporttest

import (
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// Broker describes a transport and its broker to the suite.
type Broker struct {
	// Name names the transport in messages ("kafka", "nats", ...).
	Name string
	// Addr is the broker's host:port. The outage cases put a TCP proxy in
	// front of it and pass the proxy's address to NewPublisher and
	// NewSubscriber; the other cases pass Addr itself. Empty (an
	// in-process transport) leaves the outage cases out.
	Addr string
	// NewPublisher returns a publisher that talks to the broker at addr.
	// It must not fail when the broker is unreachable: a relay that starts
	// while its broker is down retries until it is back. The suite closes
	// the publisher.
	NewPublisher func(t *testing.T, addr string) transport.Publisher
	// NewSubscriber returns a subscriber that talks to the broker at addr;
	// the suite closes it.
	NewSubscriber func(t *testing.T, addr string) transport.Subscriber
	// NewDest returns a destination name no other test uses, ready to be
	// published to and subscribed from (a Kafka topic with several
	// partitions, a NATS subject inside a stream, a RabbitMQ exchange, a
	// Redis stream key, a webhook path). It is both the publisher's dest
	// and the subscriber's source.
	NewDest func(t *testing.T) string

	// Ordered: messages of one key published one after another are
	// received in that order by one subscription.
	Ordered bool
	// Groups: subscriptions of one group share the messages and those of
	// different groups each get all of them.
	Groups bool
	// Persistent: a message published while a group's subscription is
	// closed is kept and delivered when the group subscribes again (false
	// for Redis Pub/Sub and webhooks).
	Persistent bool
	// Synchronous: Publish returns only once a subscriber has acknowledged
	// the message (webhooks), so the suite publishes and receives at once.
	Synchronous bool
	// Redelivery bounds how long the broker takes to deliver again the
	// unacknowledged messages of a subscriber that died without closing
	// (a lost connection): an ack wait, a claim idle time, a session
	// timeout. Default 10s.
	Redelivery time.Duration

	// Reject, if set, returns a message the broker refuses when published
	// to dest (too large, unroutable, wrong type) and a piece of the
	// broker's reason that the error must contain.
	Reject func(t *testing.T, dest string) (m *transport.Message, reason string)
}
