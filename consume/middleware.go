package consume

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// Timeout bounds each attempt at a message: the handler's context ends
// after d, and an attempt that overruns fails with an error saying so
// (retried like any other failure). A handler that ignores its context
// still holds its key until it returns; the error then names the overrun.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			began := time.Now()
			err := next.Handle(ctx, m)
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("consume: handler of message %s (type %q) ran %v, over its timeout of %v: %w",
					m.ID, m.Type, time.Since(began).Round(time.Millisecond), d, context.DeadlineExceeded)
			}
			return err
		})
	}
}

// Logging logs each attempt's outcome: failures at warn, successes at
// debug, with the message's id, source, type, key, attempt and duration.
func Logging(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			began := time.Now()
			err := next.Handle(ctx, m)
			attrs := []any{"id", m.ID, "source", m.Source, "type", m.Type, "key", m.Key, "attempt", m.Attempt, "took", time.Since(began)}
			if err != nil {
				log.WarnContext(ctx, "consume: handler failed", append(attrs, "err", err)...)
			} else {
				log.DebugContext(ctx, "consume: handled", attrs...)
			}
			return err
		})
	}
}

type traceParentKey struct{}

// TraceContext carries the message's W3C trace context (its traceparent
// header, set by the producer) into the handler's context, where
// TraceParent finds it, so that the handler's own calls and the messages
// it writes continue the producer's trace.
func TraceContext() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			if tp := m.Headers[transport.TraceParent]; tp != "" {
				ctx = context.WithValue(ctx, traceParentKey{}, tp)
			}
			return next.Handle(ctx, m)
		})
	}
}

// TraceParent returns the traceparent that TraceContext put in ctx, or "".
// Give it to the messages the handler writes (Headers["traceparent"]) to
// keep the trace going.
func TraceParent(ctx context.Context) string {
	tp, _ := ctx.Value(traceParentKey{}).(string)
	return tp
}

// Observer is told about every attempt at a message, for metrics: a
// Prometheus histogram by source, type and outcome, say. Its method must
// be fast and safe for concurrent use.
type Observer interface {
	Handled(m *Message, took time.Duration, err error)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(m *Message, took time.Duration, err error)

// Handled calls f.
func (f ObserverFunc) Handled(m *Message, took time.Duration, err error) { f(m, took, err) }

// Metrics reports each attempt's duration and outcome to o.
func Metrics(o Observer) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			began := time.Now()
			err := next.Handle(ctx, m)
			o.Handled(m, time.Since(began), err)
			return err
		})
	}
}
