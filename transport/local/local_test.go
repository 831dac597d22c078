package local_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport/local"
)

func record(typ string) *ferry.Record {
	return &ferry.Record{Message: ferry.Message{ID: "m-1", Lane: "default", Topic: "orders", Type: typ}, Seq: 1}
}

func TestMuxRoutesByType(t *testing.T) {
	var m local.Mux // the zero value is ready to use
	var got []string
	m.HandleFunc("OrderPlaced", func(_ context.Context, r *ferry.Record) error {
		got = append(got, "placed:"+r.ID)
		return nil
	})
	m.Handle("OrderShipped", local.HandlerFunc(func(_ context.Context, r *ferry.Record) error {
		got = append(got, "shipped:"+r.ID)
		return errors.New("warehouse down")
	}))
	ctx := context.Background()
	if err := m.Deliver(ctx, record("OrderPlaced")); err != nil {
		t.Fatalf("OrderPlaced: %v", err)
	}
	err := m.Deliver(ctx, record("OrderShipped"))
	if err == nil || err.Error() != "warehouse down" || ferry.IsPermanent(err) {
		t.Fatalf("OrderShipped: got %v, want the handler's own, retryable error", err)
	}
	if want := []string{"placed:m-1", "shipped:m-1"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("handlers called: %v, want %v", got, want)
	}
	if types := m.Types(); strings.Join(types, ",") != "OrderPlaced,OrderShipped" {
		t.Fatalf("Types() = %v", types)
	}
	if _, ok := m.Handler("OrderPlaced"); !ok {
		t.Fatal(`Handler("OrderPlaced") reports no registered handler`)
	}
	if _, ok := m.Handler("Nope"); ok {
		t.Fatal(`Handler("Nope") reports a registered handler`)
	}
}

func TestMuxUnknownType(t *testing.T) {
	m := local.NewMux()
	m.HandleFunc("A", func(context.Context, *ferry.Record) error { return nil })
	for _, tc := range []struct{ typ, want string }{
		{"B", `no handler for message type "B" (message m-1); register one with Mux.Handle`},
		{"", "message m-1 has no type"},
	} {
		err := m.Deliver(context.Background(), record(tc.typ))
		if !ferry.IsPermanent(err) {
			t.Fatalf("type %q: got %v, want a permanent error", tc.typ, err)
		}
		var unknown *local.UnknownTypeError
		if !errors.As(err, &unknown) || unknown.Type != tc.typ || unknown.ID != "m-1" {
			t.Fatalf("type %q: got %#v, want an *UnknownTypeError naming the type and message", tc.typ, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("type %q: error %q does not contain %q", tc.typ, err, tc.want)
		}
	}

	// A custom fallback replaces the default, and nil restores it.
	m.HandleUnknown(local.HandlerFunc(func(context.Context, *ferry.Record) error { return nil }))
	if err := m.Deliver(context.Background(), record("B")); err != nil {
		t.Fatalf("with a fallback: %v", err)
	}
	m.HandleUnknown(nil)
	if err := m.Deliver(context.Background(), record("B")); !ferry.IsPermanent(err) {
		t.Fatalf("after HandleUnknown(nil): got %v, want the default permanent error", err)
	}
}

func TestMuxRecoversPanics(t *testing.T) {
	m := local.NewMux()
	cause := errors.New("nil map")
	m.HandleFunc("Boom", func(context.Context, *ferry.Record) error { panic(cause) })
	err := m.Deliver(context.Background(), record("Boom"))
	var p *local.PanicError
	if !errors.As(err, &p) || p.Type != "Boom" {
		t.Fatalf("got %v, want a *PanicError for type Boom", err)
	}
	if !errors.Is(err, cause) {
		t.Fatalf("errors.Is(err, cause) is false for %v", err)
	}
	if ferry.IsPermanent(err) {
		t.Fatalf("a panic must be retried, but %v is permanent", err)
	}
	if !strings.Contains(err.Error(), `handler for message type "Boom" panicked: nil map`) {
		t.Fatalf("error %q does not say which handler panicked with what", err)
	}
}

func TestMuxRegistrationPanics(t *testing.T) {
	noop := local.HandlerFunc(func(context.Context, *ferry.Record) error { return nil })
	for _, tc := range []struct {
		name string
		f    func(m *local.Mux)
		want string
	}{
		{"empty type", func(m *local.Mux) { m.Handle("", noop) }, "empty message type"},
		{"nil handler", func(m *local.Mux) { m.Handle("A", nil) }, `Mux.Handle("A"): nil handler`},
		{"nil func", func(m *local.Mux) { m.HandleFunc("A", nil) }, `Mux.HandleFunc("A"): nil function`},
		{"duplicate", func(m *local.Mux) { m.Handle("A", noop); m.Handle("A", noop) }, `"A" already has a handler`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				p := recover()
				if p == nil || !strings.Contains(fmt.Sprint(p), tc.want) {
					t.Fatalf("panic %v, want one containing %q", p, tc.want)
				}
			}()
			tc.f(local.NewMux())
		})
	}
}

// TestMuxConcurrent registers handlers while others deliver; run with
// -race.
func TestMuxConcurrent(t *testing.T) {
	m := local.NewMux()
	var wg sync.WaitGroup
	for i := range 8 {
		typ := fmt.Sprintf("T%d", i)
		wg.Go(func() {
			m.HandleFunc(typ, func(context.Context, *ferry.Record) error { return nil })
		})
		wg.Go(func() {
			for range 100 {
				// Either the handler or the fallback; both are fine.
				_ = m.Deliver(context.Background(), record(typ))
			}
		})
	}
	wg.Wait()
	if n := len(m.Types()); n != 8 {
		t.Fatalf("%d types registered, want 8", n)
	}
	for i := range 8 {
		if err := m.Deliver(context.Background(), record(fmt.Sprintf("T%d", i))); err != nil {
			t.Fatalf("T%d: %v", i, err)
		}
	}
}

func TestMuxIsADestinationAndAHandler(t *testing.T) {
	var _ ferry.Destination = local.NewMux()
	var _ local.Handler = ferry.DestinationFunc(nil)
	var _ local.Handler = local.Discard
	inner := local.NewMux()
	inner.HandleFunc("A", func(context.Context, *ferry.Record) error { return errors.New("from inner") })
	outer := local.NewMux()
	outer.Handle("A", inner) // a destination can serve as a handler
	if err := outer.Deliver(context.Background(), record("A")); err == nil || err.Error() != "from inner" {
		t.Fatalf("got %v, want the inner mux's error", err)
	}
}

func TestDiscard(t *testing.T) {
	var d ferry.Destination = local.Discard
	if err := d.Deliver(context.Background(), record("A")); err != nil {
		t.Fatal(err)
	}
}
