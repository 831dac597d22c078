// Package local holds the destinations that need no broker: messages are
// delivered to Go code in the same process (Mux), written as JSON lines
// (NewWriter) or dropped (Discard); and Broker, an in-process broker with
// groups, acknowledgements and redelivery that passes the transports'
// conformance suite, for running the relay and consumers in one process.
//
// With a Mux as the destination, the outbox is a job queue: the relay
// claims each message once per attempt, calls the handler registered for
// the message's Type, retries it with backoff when the handler returns an
// error and marks it FAILED when the retry budget is spent or the handler
// returns an error wrapped with ferry.Permanent.
//
// Brokers (package transport/...) implement the same ferry.Destination
// interface, so moving a route from a local handler to a broker changes
// the relay's configuration, not the producers.
package local

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ferry-dev/ferry"
)

// Handler processes one message. It has the method set of
// ferry.Destination, so any destination can serve as a handler and any
// handler can be used as a destination.
//
// A nil error means the message is done. An error makes the relay retry
// the message with backoff; an error wrapped with ferry.Permanent makes it
// FAILED at once. Deliver must honour ctx: the relay cancels it at the
// lane's timeout and at shutdown.
type Handler interface {
	Deliver(ctx context.Context, r *ferry.Record) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, r *ferry.Record) error

// Deliver calls f(ctx, r).
func (f HandlerFunc) Deliver(ctx context.Context, r *ferry.Record) error { return f(ctx, r) }

// Mux is a destination that routes each message to the handler registered
// for its Type, in the manner of net/http's ServeMux. Types match exactly.
// A message whose type has no handler goes to the fallback (see
// HandleUnknown), which by default fails it permanently with an error
// naming the type, so the message waits in FAILED until a handler exists
// and a person retries it.
//
// A handler that panics does not bring down the relay: Mux recovers the
// panic and returns it as an error, so the message is retried like any
// other failure.
//
// The zero Mux is ready to use. A Mux is safe for concurrent use; handlers
// can be registered while it delivers.
type Mux struct {
	mu       sync.RWMutex
	handlers map[string]Handler
	fallback Handler
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{} }

var _ ferry.Destination = (*Mux)(nil)

// Handle registers h for messages of type typ. It panics if typ is empty
// (untyped messages go to the fallback: see HandleUnknown), if h is nil, or
// if typ already has a handler: these are programming errors that should
// stop the program at start-up, not fail messages later.
func (m *Mux) Handle(typ string, h Handler) {
	if typ == "" {
		panic("local: Mux.Handle: empty message type; messages without a type go to the handler given to HandleUnknown")
	}
	if h == nil {
		panic(fmt.Sprintf("local: Mux.Handle(%q): nil handler", typ))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.handlers[typ]; dup {
		panic(fmt.Sprintf("local: Mux.Handle: message type %q already has a handler", typ))
	}
	if m.handlers == nil {
		m.handlers = make(map[string]Handler)
	}
	m.handlers[typ] = h
}

// HandleFunc registers f for messages of type typ, like Handle.
func (m *Mux) HandleFunc(typ string, f func(ctx context.Context, r *ferry.Record) error) {
	if f == nil {
		panic(fmt.Sprintf("local: Mux.HandleFunc(%q): nil function", typ))
	}
	m.Handle(typ, HandlerFunc(f))
}

// HandleUnknown sets the handler for messages whose type has no handler,
// including messages without a type. Passing nil restores the default,
// which fails such messages permanently (see UnknownTypeError).
func (m *Mux) HandleUnknown(h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fallback = h
}

// Types returns the message types that have a handler, sorted.
func (m *Mux) Types() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	types := make([]string, 0, len(m.handlers))
	for t := range m.handlers {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// Handler returns the handler that Deliver would call for messages of type
// typ, and whether it is one registered for that type (false: the
// fallback).
func (m *Mux) Handler(typ string) (h Handler, registered bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if h, ok := m.handlers[typ]; ok {
		return h, true
	}
	if m.fallback != nil {
		return m.fallback, false
	}
	return HandlerFunc(unknownType), false
}

// Deliver calls the handler for r.Type.
func (m *Mux) Deliver(ctx context.Context, r *ferry.Record) (err error) {
	h, _ := m.Handler(r.Type)
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Type: r.Type, Value: p}
		}
	}()
	return h.Deliver(ctx, r)
}

// UnknownTypeError is the error of the default fallback: no handler is
// registered for the message's type. It is wrapped with ferry.Permanent.
type UnknownTypeError struct {
	ID   string // the message id
	Type string // the message type; empty if the message has none
}

func (e *UnknownTypeError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("local: message %s has no type and the mux has no handler for untyped messages; set one with Mux.HandleUnknown", e.ID)
	}
	return fmt.Sprintf("local: no handler for message type %q (message %s); register one with Mux.Handle, then retry the message", e.Type, e.ID)
}

func unknownType(_ context.Context, r *ferry.Record) error {
	return ferry.Permanent(&UnknownTypeError{ID: r.ID, Type: r.Type})
}

// PanicError reports a handler that panicked. It is not permanent: the
// relay retries the message as for any other error.
type PanicError struct {
	Type  string // the message type whose handler panicked
	Value any    // what the handler panicked with
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("local: handler for message type %q panicked: %v", e.Type, e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Discard is a destination that accepts every message and drops it. It
// is useful for draining an outbox and for measuring the relay alone.
const Discard discard = 0

type discard int

// Deliver returns nil.
func (discard) Deliver(context.Context, *ferry.Record) error { return nil }
