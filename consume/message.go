package consume

import (
	"context"

	"github.com/ferry-dev/ferry/transport"
)

// Message is a message as a handler receives it: what the producer wrote,
// where the broker kept it, and how often it has been tried.
type Message struct {
	transport.Message
	// Source is what the consumer read the message from: the broker's
	// topic, subject, queue's exchange or stream. Handlers are registered
	// by source; Topic is the producer's topic, the same unless a relay
	// route published it elsewhere.
	Source string
	// Consumer is the name of the consumer handling the message.
	Consumer string
	// Partition and Offset locate the message in the broker (-1 where the
	// broker has none).
	Partition int32
	Offset    int64
	// Attempt counts this consumer's attempts at the message, from 1; it
	// grows with each retry inside the consumer.
	Attempt int
	// Redelivered is how many times the broker delivered the message
	// before (another consumer crashed, or a nack), where it tells.
	Redelivered int
}

// Handler processes one message. A nil error means the message's effect
// is done and the consumer acknowledges it; an error makes the consumer
// retry it with backoff, holding back the later messages of its key (in
// key order), and after the retry budget send it to the dead letters. An
// error wrapped with Permanent goes to the dead letters at once.
type Handler interface {
	Handle(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// Handle calls f(ctx, m).
func (f HandlerFunc) Handle(ctx context.Context, m *Message) error { return f(ctx, m) }

// Middleware wraps a handler with behaviour of its own: a timeout, panic
// recovery, logging, metrics, tracing.
type Middleware func(Handler) Handler
