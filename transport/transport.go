package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry"
)

// Message is a message as it travels through a broker: the fields of a
// ferry.Message that reach consumers, and when it happened. The payload is
// carried byte for byte; the other fields travel as headers (see the
// package documentation for each broker's mapping).
type Message struct {
	ID         string
	Topic      string
	Key        string
	Type       string
	Headers    map[string]string
	Payload    []byte
	OccurredAt time.Time
}

// FromRecord returns the message the relay publishes for r. It shares r's
// headers map and payload, which publishers must not modify.
func FromRecord(r *ferry.Record) *Message {
	return &Message{
		ID:         r.ID,
		Topic:      r.Topic,
		Key:        r.Key,
		Type:       r.Type,
		Headers:    r.Headers,
		Payload:    r.Payload,
		OccurredAt: r.OccurredAt,
	}
}

// Publisher sends messages to a broker. The relay uses one through a
// Destination; producers that bypass the outbox may call it directly.
//
// Publish returns nil only once the broker has durably accepted the message
// (an acknowledgement, a publisher confirm, a 2xx response). An error
// wrapped in *RejectedError means the broker refused this message and will
// refuse it again (too large, unroutable, not authorised): the relay marks
// the message FAILED with the broker's reason instead of retrying. Any other
// error is taken as transient and retried with backoff.
//
// dest names where the message goes in the broker's own terms: a Kafka
// topic, a NATS subject, a RabbitMQ exchange, a Redis stream or channel, a
// webhook URL. Publish is safe for concurrent use; a publisher may batch
// concurrent calls into one round trip.
type Publisher interface {
	Publish(ctx context.Context, dest string, m *Message) error
	// Close waits for messages in flight and releases the connection.
	Close() error
}

// Checker is implemented by publishers that can ask the broker whether a
// destination exists and accepts messages, so that a route to a missing
// topic or exchange fails when the relay starts rather than message by
// message. Check returns a *RejectedError when the broker says no, and
// another error when it could not ask (the broker is down).
type Checker interface {
	Check(ctx context.Context, dest string) error
}

// Subscriber reads messages from a broker. The consumer runtime uses one;
// so do tests that check what a publisher sent.
type Subscriber interface {
	// Subscribe starts reading source in group. source is the subscriber's
	// counterpart of a publisher's dest: what was published to dest is read
	// from source == dest. Subscriptions in the same group share the
	// messages (each goes to one of them); subscriptions in different
	// groups each receive every message. A broker without groups (Redis
	// Pub/Sub, webhooks) documents what it does instead.
	Subscribe(ctx context.Context, source, group string) (Subscription, error)
	Close() error
}

// Subscription is a stream of deliveries from one source and group.
type Subscription interface {
	// Next blocks until a delivery arrives, ctx ends or the subscription
	// is closed (ErrClosed). A broker that goes away is reconnected to
	// behind Next; Next returns an error only when it cannot go on.
	Next(ctx context.Context) (*Delivery, error)
	// Close stops the subscription. Deliveries not yet acknowledged are
	// given back to the broker, which delivers them again.
	Close() error
}

// Delivery is one message received from a subscription, to be
// acknowledged once its effect is durable.
type Delivery struct {
	Message
	// Partition is the broker partition the message came from, or -1 for
	// brokers without partitions.
	Partition int32
	// Offset is the message's position in its partition or stream, or -1
	// when the broker has no positions.
	Offset int64
	// Redelivered is how many times the broker delivered this message
	// before, when it tells (0 otherwise). AMQP only says "at least once",
	// reported as 1.
	Redelivered int

	acker Acker
}

// Acker settles deliveries; each transport implements it for its broker.
type Acker interface {
	// Ack tells the broker the message is done with.
	Ack(ctx context.Context, d *Delivery) error
	// Nack gives the message back to be delivered again, no sooner than
	// after delay where the broker supports a delay.
	Nack(ctx context.Context, d *Delivery, delay time.Duration) error
}

// NewDelivery returns a delivery of m that a settles. Transports call it.
func NewDelivery(m Message, partition int32, offset int64, redelivered int, a Acker) *Delivery {
	return &Delivery{Message: m, Partition: partition, Offset: offset, Redelivered: redelivered, acker: a}
}

// Ack tells the broker the message is done with: it will not be delivered
// again to this group (Kafka commits the offset once every earlier offset
// of the partition is acknowledged too).
func (d *Delivery) Ack(ctx context.Context) error {
	if d.acker == nil {
		return errors.New("transport: Ack on a delivery that no subscription made")
	}
	return d.acker.Ack(ctx, d)
}

// Nack gives the message back to the broker to be delivered again after
// delay (or at once, where the broker has no delays).
func (d *Delivery) Nack(ctx context.Context, delay time.Duration) error {
	if d.acker == nil {
		return errors.New("transport: Nack on a delivery that no subscription made")
	}
	return d.acker.Nack(ctx, d, delay)
}

// ErrClosed is returned by operations on a closed publisher, subscriber or
// subscription.
var ErrClosed = errors.New("transport: closed")

// RejectedError is a broker's refusal of a message that will not change by
// retrying: a message too large, a destination that does not exist or does
// not route, a permission denied. The relay marks such a message FAILED at
// once, with Error as its last error.
type RejectedError struct {
	Transport string // "kafka", "nats", ...
	Dest      string
	MessageID string
	Reason    string // what the broker said
	Hint      string // what to do, if known
	Err       error  // the client's error, if any
}

func (e *RejectedError) Error() string {
	var msg string
	if e.MessageID != "" {
		msg = fmt.Sprintf("%s: %s refused message %s: %s", e.Transport, describeDest(e.Dest), e.MessageID, e.Reason)
	} else {
		msg = fmt.Sprintf("%s: %s refused: %s", e.Transport, describeDest(e.Dest), e.Reason)
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *RejectedError) Unwrap() error { return e.Err }

func describeDest(dest string) string {
	if dest == "" {
		return "the broker"
	}
	return fmt.Sprintf("%q", dest)
}

// IsRejected reports whether err is, or wraps, a *RejectedError.
func IsRejected(err error) bool {
	var r *RejectedError
	return errors.As(err, &r)
}
