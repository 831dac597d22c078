package consume

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// CommandTopic is the topic that commands for the consumer named consumer
// are sent to. An event is published for whoever listens, on a topic of
// its own; a command is sent to one named consumer, on that consumer's
// command topic:
//
//	outbox.Write(ctx, tx, ferry.Message{Topic: consume.CommandTopic("billing"), Type: "ChargeCard", ...})
func CommandTopic(consumer string) string { return "commands." + consumer }

// UnknownPolicy is what a Router does with a message no handler is
// registered for.
type UnknownPolicy int

const (
	// UnknownDeadLetter sends the message to the dead letters with a
	// NoHandlerError, where a person can replay it once a handler exists.
	// The default.
	UnknownDeadLetter UnknownPolicy = iota
	// UnknownSkip acknowledges the message and logs a warning.
	UnknownSkip
	// UnknownRetry fails the message with a retryable error: it is tried
	// again with backoff, holding back its key, as when a new message type
	// reaches consumers before the version that handles it is deployed.
	UnknownRetry
)

// Router is a Handler that routes each message to the handler registered
// for its topic and type, in the manner of net/http's ServeMux, with
// middleware around every handler.
//
// A Router is safe for concurrent use; register handlers before the
// consumer runs.
type Router struct {
	mu         sync.RWMutex
	name       string // the consumer's name, for command topics
	handlers   map[route]Handler
	topics     []string // event topics, in registration order
	commands   bool
	middleware []Middleware
	unknown    UnknownPolicy
	log        *slog.Logger
}

type route struct{ topic, typ string }

// NewRouter returns a router for the consumer named consumer; its
// commands arrive on CommandTopic(consumer).
func NewRouter(consumer string) *Router {
	return &Router{name: consumer, handlers: map[route]Handler{}, log: slog.Default()}
}

// Event registers h for events of type typ read from topic, the broker's
// name for where they are (a Kafka topic, a NATS subject, ...). An empty
// typ matches every type on the topic that has no handler of its own.
func (r *Router) Event(topic, typ string, h Handler) {
	if topic == "" {
		panic("consume: Router.Event: empty topic")
	}
	r.add(route{topic, typ}, h)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.topics {
		if t == topic {
			return
		}
	}
	r.topics = append(r.topics, topic)
}

// Command registers h for commands of type typ sent to this consumer.
func (r *Router) Command(typ string, h Handler) {
	if typ == "" {
		panic("consume: Router.Command: empty command type")
	}
	r.add(route{CommandTopic(r.name), typ}, h)
	r.mu.Lock()
	r.commands = true
	r.mu.Unlock()
}

func (r *Router) add(rt route, h Handler) {
	if h == nil {
		panic(fmt.Sprintf("consume: nil handler for topic %q, type %q", rt.topic, rt.typ))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[rt]; dup {
		panic(fmt.Sprintf("consume: topic %q, type %q already has a handler", rt.topic, rt.typ))
	}
	r.handlers[rt] = h
}

// Use adds middleware around every handler; the first added is the
// outermost.
func (r *Router) Use(mw ...Middleware) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.middleware = append(r.middleware, mw...)
}

// Unknown sets what happens to messages no handler is registered for.
func (r *Router) Unknown(p UnknownPolicy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unknown = p
}

// Topics returns the topics the router has handlers for: its event topics
// and, if it has commands, its command topic. A consumer reads these.
func (r *Router) Topics() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	topics := append([]string(nil), r.topics...)
	if r.commands {
		topics = append(topics, CommandTopic(r.name))
	}
	return topics
}

// Handle routes m to its handler through the middleware.
func (r *Router) Handle(ctx context.Context, m *Message) error {
	r.mu.RLock()
	h, ok := r.handlers[route{m.Source, m.Type}]
	if !ok {
		h, ok = r.handlers[route{m.Source, ""}]
	}
	mw := r.middleware
	unknown := r.unknown
	r.mu.RUnlock()
	if !ok {
		h = r.unknownHandler(unknown)
	}
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h.Handle(ctx, m)
}

func (r *Router) unknownHandler(p UnknownPolicy) Handler {
	return HandlerFunc(func(ctx context.Context, m *Message) error {
		err := &NoHandlerError{Topic: m.Source, Type: m.Type, ID: m.ID}
		switch p {
		case UnknownSkip:
			r.log.WarnContext(ctx, "consume: skipped a message no handler is registered for", "id", m.ID, "topic", m.Topic, "type", m.Type)
			return nil
		case UnknownRetry:
			return err
		}
		return Permanent(err)
	})
}
