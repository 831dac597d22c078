package consume_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/transport"
)

func TestTimeout(t *testing.T) {
	h := consume.Timeout(20 * time.Millisecond)(consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		<-ctx.Done()
		return nil // a handler that swallows its context's error
	}))
	err := h.Handle(context.Background(), &consume.Message{Message: transport.Message{ID: "m1", Type: "Slow"}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "over its timeout of 20ms") {
		t.Errorf("err = %v", err)
	}
	fast := consume.Timeout(time.Second)(consume.HandlerFunc(func(context.Context, *consume.Message) error { return nil }))
	if err := fast.Handle(context.Background(), &consume.Message{}); err != nil {
		t.Errorf("fast handler: %v", err)
	}
}

func TestLoggingAndTraceContext(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var got string
	r := consume.NewRouter("billing")
	r.Use(consume.Logging(log), consume.TraceContext())
	r.Event("orders", "", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		got = consume.TraceParent(ctx)
		if m.ID == "bad" {
			return errors.New("no such customer")
		}
		return nil
	}))
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r.Handle(context.Background(), &consume.Message{Source: "orders", Message: transport.Message{ID: "ok", Headers: map[string]string{"traceparent": tp}}})
	if got != tp {
		t.Errorf("TraceParent = %q, want %q", got, tp)
	}
	r.Handle(context.Background(), &consume.Message{Source: "orders", Message: transport.Message{ID: "bad"}})
	if !strings.Contains(logs.String(), `level=DEBUG msg="consume: handled" id=ok`) ||
		!strings.Contains(logs.String(), `level=WARN msg="consume: handler failed" id=bad`) || !strings.Contains(logs.String(), `err="no such customer"`) {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestMetrics(t *testing.T) {
	type obs struct {
		id  string
		err error
	}
	var got []obs
	h := consume.Metrics(consume.ObserverFunc(func(m *consume.Message, took time.Duration, err error) {
		if took < 0 {
			t.Errorf("took %v", took)
		}
		got = append(got, obs{m.ID, err})
	}))(consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		if m.ID == "bad" {
			return errors.New("boom")
		}
		return nil
	}))
	h.Handle(context.Background(), &consume.Message{Message: transport.Message{ID: "ok"}})
	h.Handle(context.Background(), &consume.Message{Message: transport.Message{ID: "bad"}})
	if len(got) != 2 || got[0].id != "ok" || got[0].err != nil || got[1].id != "bad" || got[1].err == nil {
		t.Errorf("observed %+v", got)
	}
}
