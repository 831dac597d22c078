package transporttest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
)

// outbox is a migrated PostgreSQL outbox in a table of the test's own.
type outbox struct {
	*postgres.Store
	table string
}

func openOutbox(t *testing.T) outbox {
	t.Helper()
	ctx := context.Background()
	table := testdb.Table(t)
	st, err := postgres.Open(ctx, testdb.PostgresDSN(t), sqlstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testdb.DropOutbox(st.DB, table, st.Dialect())
		st.Close()
	})
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return outbox{Store: st, table: table}
}

func (o outbox) write(t *testing.T, msgs []ferry.Message) {
	t.Helper()
	ctx := context.Background()
	tx, err := o.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ferry.NewOutbox(o).Write(ctx, tx, msgs...); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// startRelay runs a relay from o to dest through p until the test ends.
func startRelay(t *testing.T, o outbox, p transport.Publisher, dest string) {
	t.Helper()
	r, err := relay.New(relay.Options{
		Store: o,
		Lanes: []relay.Lane{{
			Name:        ferry.DefaultLane,
			Concurrency: 32,
			Timeout:     5 * time.Second,
			MaxAttempts: 1000, // an outage must not spend the retry budget
			Backoff:     relay.Backoff{Initial: 50 * time.Millisecond, Max: time.Second},
		}},
		Routes:          []relay.Route{{Topic: "*", Destination: transport.Destination(p, transport.Target(dest))}},
		LeaseTTL:        3 * time.Second,
		RescanInterval:  200 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

// outboxMessages returns n keyed messages for the outbox, each with every
// field set.
func outboxMessages(dest string, first, n, keys int) []ferry.Message {
	msgs := make([]ferry.Message, n)
	for i := range msgs {
		m := message(dest, first+i, fmt.Sprintf("key-%d", (first+i)%keys))
		msgs[i] = ferry.Message{ID: m.ID, Topic: m.Topic, Key: m.Key, Type: m.Type, Headers: m.Headers, Payload: m.Payload}
	}
	return msgs
}

// receiveInOrder receives the messages with the given ids from sn,
// acknowledging each, and checks that each key's arrive in the order of
// their ids (which is their outbox order). Redeliveries of a message
// already received are allowed (at least once) but must not go back in a
// key's order past a message received after it for the first time.
func receiveInOrder(t *testing.T, sn transport.Subscription, want map[string]ferry.Message, timeout time.Duration) {
	t.Helper()
	last := map[string]int{}
	seen := map[string]bool{}
	deadline := time.Now().Add(timeout)
	for len(seen) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages from the outbox", len(seen), len(want))
		}
		d := next(t, sn, time.Until(deadline))
		w, ok := want[d.ID]
		if !ok {
			t.Fatalf("received %q, which was not written to the outbox", d.ID)
		}
		if seen[d.ID] {
			ack(t, d) // a redelivery: settled like any other, or a synchronous sender waits for it forever
			continue
		}
		seen[d.ID] = true
		seq := seqOf(d)
		if prev, ok := last[d.Key]; ok && seq < prev {
			t.Errorf("key %s: message %d arrived after %d", d.Key, seq, prev)
		}
		last[d.Key] = seq
		wm := &transport.Message{ID: w.ID, Topic: w.Topic, Key: w.Key, Type: w.Type, Headers: w.Headers, Payload: w.Payload, OccurredAt: d.OccurredAt}
		if diff := sameMessage(wm, &d.Message); diff != "" {
			t.Errorf("message %s is not as written to the outbox: %s", d.ID, diff)
		}
		if d.OccurredAt.IsZero() || time.Since(d.OccurredAt) > time.Hour {
			t.Errorf("message %s: OccurredAt %v is not when it was written", d.ID, d.OccurredAt)
		}
		ack(t, d)
	}
}

// relay writes messages to a PostgreSQL outbox and checks that the relay
// publishes them exactly as written and in key order, and that a message
// the broker refuses ends FAILED with the broker's reason.
func (s *suite) relay(t *testing.T) {
	dest := s.b.NewDest(t)
	o := openOutbox(t)
	sn := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "g")
	p := s.publisher(t, s.b.Addr)

	msgs := outboxMessages(dest, 0, 300, 10)
	want := map[string]ferry.Message{}
	for _, m := range msgs {
		want[m.ID] = m
	}
	for i := 0; i < len(msgs); i += 100 {
		o.write(t, msgs[i:i+100])
	}
	var rejectedID, reason string
	if s.b.Reject != nil {
		bad, why := s.b.Reject(t, dest)
		reason = why
		rejectedID = "rejected-" + bad.ID
		o.write(t, []ferry.Message{{ID: rejectedID, Topic: dest, Key: "poison", Type: bad.Type, Headers: bad.Headers, Payload: bad.Payload}})
	}
	startRelay(t, o, p, dest)
	receiveInOrder(t, sn, want, receiveTimeout+s.b.Redelivery)

	if rejectedID == "" {
		return
	}
	waitUntil(t, receiveTimeout, "the refused message to be FAILED", func() bool {
		recs, err := o.List(context.Background(), ferry.Filter{IDs: []string{rejectedID}})
		return err == nil && len(recs) == 1 && recs[0].Status == ferry.StatusFailed
	})
	recs, _ := o.List(context.Background(), ferry.Filter{IDs: []string{rejectedID}})
	if !strings.Contains(recs[0].LastError, reason) {
		t.Errorf("the refused message's last error %q does not hold the broker's reason %q", recs[0].LastError, reason)
	}
	if recs[0].Attempts != 1 {
		t.Errorf("the refused message was tried %d times; a refusal must not be retried", recs[0].Attempts)
	}
}

// relayThroughOutage starts the relay while the broker is unreachable and
// cuts it off again mid-run: every message arrives, in key order, and none
// is FAILED.
func (s *suite) relayThroughOutage(t *testing.T) {
	dest := s.b.NewDest(t)
	o := openOutbox(t)
	sn := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "g")
	px := s.proxy(t)
	px.Cut()
	p := s.publisher(t, px.Addr())

	msgs := outboxMessages(dest, 0, 400, 10)
	want := map[string]ferry.Message{}
	for _, m := range msgs {
		want[m.ID] = m
	}
	o.write(t, msgs[:200])
	startRelay(t, o, p, dest)
	time.Sleep(time.Second) // the relay tries, fails and backs off
	px.Restore()

	var wg sync.WaitGroup
	wg.Go(func() {
		// Cut the broker off again while the second half is on its way.
		o.write(t, msgs[200:])
		time.Sleep(100 * time.Millisecond)
		px.Cut()
		time.Sleep(1500 * time.Millisecond)
		px.Restore()
	})
	receiveInOrder(t, sn, want, 2*receiveTimeout+s.b.Redelivery)
	wg.Wait()

	failed, err := o.List(context.Background(), ferry.Filter{Status: ferry.StatusFailed})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) > 0 {
		t.Errorf("%d messages became FAILED during the outage, e.g. %s: %s", len(failed), failed[0].ID, failed[0].LastError)
	}
}
