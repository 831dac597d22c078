package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/tcpproxy"
	"github.com/ferry-dev/ferry/transport"
)

// receiveTimeout bounds how long the suite waits for a message it expects.
const receiveTimeout = 30 * time.Second

// Run runs the conformance suite against b. The cases run one after
// another, each on its own destination.
func Run(t *testing.T, b Broker) {
	t.Helper()
	if b.NewPublisher == nil || b.NewSubscriber == nil || b.NewDest == nil {
		t.Fatal("transporttest: Broker needs NewPublisher, NewSubscriber and NewDest")
	}
	if b.Redelivery == 0 {
		b.Redelivery = 10 * time.Second
	}
	s := &suite{b: b}
	t.Run("RoundTrip", s.roundTrip)
	if b.Ordered {
		t.Run("KeyOrder", s.keyOrder)
	}
	t.Run("NackRedelivers", s.nackRedelivers)
	if b.Persistent {
		t.Run("CloseRedelivers", s.closeRedelivers)
	}
	if b.Groups {
		t.Run("GroupsShareAndFanOut", s.groups)
	}
	if b.Reject != nil {
		t.Run("Rejected", s.rejected)
	}
	if b.Addr == "" {
		t.Logf("transporttest: %s has no network address; the outage cases do not apply", b.Name)
	} else {
		if b.Persistent {
			t.Run("CrashRedelivers", s.crashRedelivers)
		}
		t.Run("DownAtStart", s.downAtStart)
		t.Run("OutageMidRun", s.outageMidRun)
	}
	t.Run("Relay", s.relay)
	if b.Addr != "" {
		t.Run("RelayThroughOutage", s.relayThroughOutage)
	}
}

type suite struct {
	b Broker
}

func (s *suite) publisher(t *testing.T, addr string) transport.Publisher {
	t.Helper()
	p := s.b.NewPublisher(t, addr)
	t.Cleanup(func() { p.Close() })
	return p
}

func (s *suite) subscriber(t *testing.T, addr string) transport.Subscriber {
	t.Helper()
	sub := s.b.NewSubscriber(t, addr)
	t.Cleanup(func() { sub.Close() })
	return sub
}

func (s *suite) subscribe(t *testing.T, sub transport.Subscriber, dest, group string) transport.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), receiveTimeout)
	defer cancel()
	sn, err := sub.Subscribe(ctx, dest, group)
	if err != nil {
		t.Fatalf("Subscribe(%q, %q): %v", dest, group, err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn
}

// proxy returns a TCP proxy in front of the broker.
func (s *suite) proxy(t *testing.T) *tcpproxy.Proxy {
	t.Helper()
	p, err := tcpproxy.New(s.b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// message returns the i-th test message for dest: every field set, a
// payload that is not text, and a trace context header.
func message(dest string, i int, key string) *transport.Message {
	payload := make([]byte, 0, 300)
	payload = append(payload, fmt.Sprintf(`{"i":%d}`, i)...)
	for b := range 256 {
		payload = append(payload, byte(b))
	}
	return &transport.Message{
		ID:    fmt.Sprintf("%s-%06d", dest, i),
		Topic: dest,
		Key:   key,
		Type:  "OrderPlaced",
		Headers: map[string]string{
			"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"content-type": "application/octet-stream",
			"tenant":       "acme ünïcode",
		},
		Payload:    payload,
		OccurredAt: time.Date(2026, 11, 22, 10, 0, 0, i*1000, time.UTC),
	}
}

// seqOf returns i of a message made by message.
func seqOf(d *transport.Delivery) int {
	idx := strings.LastIndexByte(d.ID, '-')
	n, err := strconv.Atoi(d.ID[idx+1:])
	if err != nil {
		return -1
	}
	return n
}

// sameMessage reports how got differs from want, or "".
func sameMessage(want *transport.Message, got *transport.Message) string {
	var diffs []string
	if got.ID != want.ID {
		diffs = append(diffs, fmt.Sprintf("ID %q, want %q", got.ID, want.ID))
	}
	if got.Topic != want.Topic {
		diffs = append(diffs, fmt.Sprintf("Topic %q, want %q", got.Topic, want.Topic))
	}
	if got.Key != want.Key {
		diffs = append(diffs, fmt.Sprintf("Key %q, want %q", got.Key, want.Key))
	}
	if got.Type != want.Type {
		diffs = append(diffs, fmt.Sprintf("Type %q, want %q", got.Type, want.Type))
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		diffs = append(diffs, fmt.Sprintf("Payload %d bytes %q..., want %d bytes %q...", len(got.Payload), head(got.Payload), len(want.Payload), head(want.Payload)))
	}
	if !got.OccurredAt.Equal(want.OccurredAt) {
		diffs = append(diffs, fmt.Sprintf("OccurredAt %v, want %v", got.OccurredAt, want.OccurredAt))
	}
	for k, v := range want.Headers {
		if g, ok := headerValue(got.Headers, k); !ok || g != v {
			diffs = append(diffs, fmt.Sprintf("header %q = %q (present %v), want %q", k, g, ok, v))
		}
	}
	for k := range got.Headers {
		if strings.HasPrefix(strings.ToLower(k), "ferry-") {
			diffs = append(diffs, fmt.Sprintf("header %q is one of ferry's fields and should have been decoded", k))
		}
	}
	return strings.Join(diffs, "; ")
}

// headerValue looks a header up by name, ignoring case: HTTP and some
// clients change it.
func headerValue(h map[string]string, name string) (string, bool) {
	if v, ok := h[name]; ok {
		return v, true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func head(b []byte) []byte { return b[:min(len(b), 12)] }

// next waits for the next delivery, failing the test after timeout.
func next(t *testing.T, sn transport.Subscription, timeout time.Duration) *transport.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d, err := sn.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return d
}

// nothingMore checks that sn delivers nothing within wait.
func nothingMore(t *testing.T, sn transport.Subscription, wait time.Duration, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	d, err := sn.Next(ctx)
	if err == nil {
		t.Errorf("received %s (redelivered %d) but expected nothing more: %s", d.ID, d.Redelivered, why)
		return
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next while waiting for nothing: %v, want the context's deadline", err)
	}
}

func ack(t *testing.T, d *transport.Delivery) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Ack(ctx); err != nil {
		t.Fatalf("Ack(%s): %v", d.ID, err)
	}
}

// publishAll publishes msgs in order, each after the one before returned.
// With a synchronous broker it runs in the background and reports on the
// returned channel; otherwise it returns when done.
func (s *suite) publishAll(t *testing.T, p transport.Publisher, dest string, msgs []*transport.Message) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	run := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*receiveTimeout)
		defer cancel()
		for _, m := range msgs {
			if err := p.Publish(ctx, dest, m); err != nil {
				done <- fmt.Errorf("Publish(%s): %w", m.ID, err)
				return
			}
		}
		done <- nil
	}
	if s.b.Synchronous {
		go run()
		return done
	}
	run()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	return done
}

func waitPublished(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * receiveTimeout):
		t.Fatal("publishing did not finish")
	}
}

// roundTrip publishes messages and reads every one back with all its
// fields, headers and payload intact.
func (s *suite) roundTrip(t *testing.T) {
	dest := s.b.NewDest(t)
	sub := s.subscriber(t, s.b.Addr)
	sn := s.subscribe(t, sub, dest, "g")
	p := s.publisher(t, s.b.Addr)

	const n = 50
	want := make(map[string]*transport.Message, n)
	var msgs []*transport.Message
	for i := range n {
		m := message(dest, i, fmt.Sprintf("key-%d", i%5))
		switch i {
		case 0:
			m.Payload = nil // an empty payload stays empty
		case 1:
			m.Key = "" // unkeyed
			m.Type = ""
		case 2:
			m.Headers = nil
		}
		want[m.ID] = m
		msgs = append(msgs, m)
	}
	done := s.publishAll(t, p, dest, msgs)

	for range n {
		d := next(t, sn, receiveTimeout)
		w, ok := want[d.ID]
		if !ok {
			t.Fatalf("received message %q that was not published, or twice", d.ID)
		}
		delete(want, d.ID)
		if diff := sameMessage(w, &d.Message); diff != "" {
			t.Errorf("message %s: %s", d.ID, diff)
		}
		ack(t, d)
	}
	waitPublished(t, done)
	nothingMore(t, sn, 300*time.Millisecond, "every message was received and acknowledged")
}

// keyOrder publishes the messages of several keys concurrently, each key's
// one after another, and checks that one subscription receives each key's
// messages in order.
func (s *suite) keyOrder(t *testing.T) {
	dest := s.b.NewDest(t)
	sub := s.subscriber(t, s.b.Addr)
	sn := s.subscribe(t, sub, dest, "g")
	p := s.publisher(t, s.b.Addr)

	const keys, perKey = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, keys)
	for k := range keys {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*receiveTimeout)
			defer cancel()
			for i := range perKey {
				m := message(dest, k*perKey+i, fmt.Sprintf("key-%d", k))
				if err := p.Publish(ctx, dest, m); err != nil {
					errs <- fmt.Errorf("Publish(%s): %w", m.ID, err)
					return
				}
			}
		})
	}
	last := make(map[string]int)
	for range keys * perKey {
		d := next(t, sn, receiveTimeout)
		seq := seqOf(d)
		if prev, seen := last[d.Key]; seen && seq <= prev {
			t.Errorf("key %s: received message %d after %d", d.Key, seq, prev)
		}
		last[d.Key] = seq
		ack(t, d)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// nackRedelivers checks that a nacked message comes again, marked as
// redelivered; with a synchronous broker, that the publisher learns of the
// nack as an error it retries.
func (s *suite) nackRedelivers(t *testing.T) {
	dest := s.b.NewDest(t)
	sub := s.subscriber(t, s.b.Addr)
	sn := s.subscribe(t, sub, dest, "g")
	p := s.publisher(t, s.b.Addr)
	m := message(dest, 1, "k")

	if s.b.Synchronous {
		done := make(chan error, 1)
		go func() { done <- p.Publish(context.Background(), dest, m) }()
		d := next(t, sn, receiveTimeout)
		if err := d.Nack(context.Background(), time.Second); err != nil {
			t.Fatalf("Nack: %v", err)
		}
		err := <-done
		if err == nil {
			t.Fatal("Publish returned nil after the subscriber nacked the message")
		}
		if transport.IsRejected(err) {
			t.Fatalf("Publish after a nack: %v; a nack is transient (the relay must retry), not a rejection", err)
		}
		return
	}

	s.publishAll(t, p, dest, []*transport.Message{m})
	d := next(t, sn, receiveTimeout)
	if d.ID != m.ID {
		t.Fatalf("received %s, want %s", d.ID, m.ID)
	}
	if err := d.Nack(context.Background(), 0); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	again := next(t, sn, s.b.Redelivery+5*time.Second)
	if again.ID != m.ID {
		t.Fatalf("after a nack received %s, want %s again", again.ID, m.ID)
	}
	if diff := sameMessage(m, &again.Message); diff != "" {
		t.Errorf("redelivered message: %s", diff)
	}
	if again.Redelivered < 1 {
		t.Errorf("redelivered message has Redelivered = %d, want at least 1", again.Redelivered)
	}
	ack(t, again)
	nothingMore(t, sn, 500*time.Millisecond, "the redelivered message was acknowledged")
}

// receiveSome receives n messages from sn.
func receiveSome(t *testing.T, sn transport.Subscription, n int) []*transport.Delivery {
	t.Helper()
	var got []*transport.Delivery
	for range n {
		got = append(got, next(t, sn, receiveTimeout))
	}
	return got
}

// closeRedelivers checks that a subscription closed with messages not yet
// acknowledged gives them back: the next subscription of the group gets
// exactly those.
func (s *suite) closeRedelivers(t *testing.T) {
	dest := s.b.NewDest(t)
	sub := s.subscriber(t, s.b.Addr)
	first := s.subscribe(t, sub, dest, "g")
	p := s.publisher(t, s.b.Addr)

	const n, acked = 10, 5
	var msgs []*transport.Message
	for i := range n {
		msgs = append(msgs, message(dest, i, fmt.Sprintf("key-%d", i%3)))
	}
	s.publishAll(t, p, dest, msgs)
	got := receiveSome(t, first, n)
	unacked := map[string]bool{}
	for i, d := range got {
		if i < acked {
			ack(t, d)
		} else {
			unacked[d.ID] = true
		}
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	second := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "g")
	for range n - acked {
		d := next(t, second, s.b.Redelivery+receiveTimeout)
		if !unacked[d.ID] {
			t.Errorf("after Close, received %s, which was acknowledged or already redelivered", d.ID)
		}
		delete(unacked, d.ID)
		ack(t, d)
	}
	nothingMore(t, second, time.Second, "the messages acknowledged before Close must not come again")
}

// crashRedelivers cuts a subscriber's connection while it holds messages
// it has not acknowledged: the broker must deliver them to another
// subscriber of the group.
func (s *suite) crashRedelivers(t *testing.T) {
	dest := s.b.NewDest(t)
	px := s.proxy(t)
	dying := s.subscribe(t, s.subscriber(t, px.Addr()), dest, "g")
	p := s.publisher(t, s.b.Addr)

	const n, acked = 10, 5
	var msgs []*transport.Message
	for i := range n {
		msgs = append(msgs, message(dest, i, fmt.Sprintf("key-%d", i%3)))
	}
	s.publishAll(t, p, dest, msgs)
	got := receiveSome(t, dying, n)
	unacked := map[string]bool{}
	for i, d := range got {
		if i < acked {
			ack(t, d)
		} else {
			unacked[d.ID] = true
		}
	}
	time.Sleep(200 * time.Millisecond) // let acknowledgements that are sent in the background go out
	px.Cut()                           // the subscriber's process "dies": its connection is gone, it never closes

	survivor := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "g")
	ackedAgain := 0
	deadline := time.Now().Add(s.b.Redelivery + receiveTimeout)
	for len(unacked) > 0 && time.Now().Before(deadline) {
		d := next(t, survivor, time.Until(deadline))
		if unacked[d.ID] {
			delete(unacked, d.ID)
		} else {
			ackedAgain++
		}
		ack(t, d)
	}
	if len(unacked) > 0 {
		t.Fatalf("%d unacknowledged messages of the dead subscriber were never redelivered: %v", len(unacked), slicesOf(unacked))
	}
	if ackedAgain > 0 {
		t.Logf("%d acknowledged messages came again (allowed: at least once)", ackedAgain)
	}
}

func slicesOf(m map[string]bool) []string {
	var ids []string
	for id := range maps.Keys(m) {
		ids = append(ids, id)
	}
	return ids
}

// groups checks competing consumers in one group (each message to one of
// them) and fan-out to another group (every message to it too).
func (s *suite) groups(t *testing.T) {
	dest := s.b.NewDest(t)
	a1 := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "a")
	a2 := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "a")
	b1 := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "b")
	p := s.publisher(t, s.b.Addr)

	type counts struct {
		mu   sync.Mutex
		byID map[string]int
		n    int
	}
	recv := func(ctx context.Context, sn transport.Subscription, c *counts, group *counts) {
		for {
			d, err := sn.Next(ctx)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.n++
			c.mu.Unlock()
			if group != nil {
				group.mu.Lock()
				group.byID[d.ID]++
				group.mu.Unlock()
			}
			d.Ack(ctx)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ca1, ca2 counts
	groupA := &counts{byID: map[string]int{}}
	groupB := &counts{byID: map[string]int{}}
	var wg sync.WaitGroup
	wg.Go(func() { recv(ctx, a1, &ca1, groupA) })
	wg.Go(func() { recv(ctx, a2, &ca2, groupA) })
	wg.Go(func() { recv(ctx, b1, &counts{}, groupB) })

	// Publish in rounds until both members of group a have had messages:
	// a broker may need a moment to let the second member in (a Kafka
	// rebalance).
	published := 0
	deadline := time.Now().Add(receiveTimeout)
	for round := 0; ; round++ {
		var msgs []*transport.Message
		for i := range 50 {
			msgs = append(msgs, message(dest, published+i, fmt.Sprintf("key-%d", (published+i)%16)))
		}
		waitPublished(t, s.publishAll(t, p, dest, msgs))
		published += len(msgs)
		time.Sleep(100 * time.Millisecond)
		ca1.mu.Lock()
		n1 := ca1.n
		ca1.mu.Unlock()
		ca2.mu.Lock()
		n2 := ca2.n
		ca2.mu.Unlock()
		if (n1 > 0 && n2 > 0 && round >= 3) || time.Now().After(deadline) {
			break
		}
	}
	waitFor := func(c *counts) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.byID) >= published
	}
	for time.Now().Before(deadline.Add(receiveTimeout)) && !(waitFor(groupA) && waitFor(groupB)) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	if len(groupA.byID) != published || len(groupB.byID) != published {
		t.Fatalf("of %d messages, group a received %d distinct and group b %d; each group must receive every message", published, len(groupA.byID), len(groupB.byID))
	}
	if ca1.n == 0 || ca2.n == 0 {
		t.Errorf("the two subscriptions of group a received %d and %d messages: members of a group must share the work", ca1.n, ca2.n)
	}
	dups := 0
	for _, c := range groupA.byID {
		dups += c - 1
	}
	// A broker may redeliver a few messages when a group's membership
	// changes (at least once); a group that fans out to its own members
	// would duplicate them all.
	if dups*10 > published {
		t.Errorf("group a received %d duplicates of %d messages: members of one group must not each get every message", dups, published)
	} else if dups > 0 {
		t.Logf("group a received %d duplicates while its membership changed", dups)
	}
}

// rejected checks that a message the broker refuses is a RejectedError
// carrying the broker's reason, and that the publisher goes on working.
func (s *suite) rejected(t *testing.T) {
	dest := s.b.NewDest(t)
	sn := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "g")
	p := s.publisher(t, s.b.Addr)
	bad, reason := s.b.Reject(t, dest)
	ctx, cancel := context.WithTimeout(context.Background(), receiveTimeout)
	defer cancel()
	err := p.Publish(ctx, dest, bad)
	if err == nil {
		t.Fatalf("Publish of a message the broker should refuse (%s) returned nil", reason)
	}
	if !transport.IsRejected(err) {
		t.Errorf("Publish: %v (%T); want a *transport.RejectedError so the relay marks it FAILED", err, err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("Publish: %q does not contain the broker's reason %q", err, reason)
	}
	good := message(dest, 2, "k")
	done := s.publishAll(t, p, dest, []*transport.Message{good})
	d := next(t, sn, receiveTimeout)
	if d.ID != good.ID {
		t.Errorf("after the refusal received %s, want %s", d.ID, good.ID)
	}
	ack(t, d)
	waitPublished(t, done)
}

// downAtStart makes a publisher while the broker cannot be reached:
// publishing fails (never claims success) until the broker is back, then
// works without making a new publisher.
func (s *suite) downAtStart(t *testing.T) {
	dest := s.b.NewDest(t)
	sn := s.subscribe(t, s.subscriber(t, s.b.Addr), dest, "g")
	px := s.proxy(t)
	px.Cut()
	p := s.publisher(t, px.Addr())

	m := message(dest, 1, "k")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := p.Publish(ctx, dest, m)
	cancel()
	if err == nil {
		t.Fatal("Publish returned nil while the broker was unreachable")
	}
	if transport.IsRejected(err) {
		t.Fatalf("Publish while the broker is unreachable: %v; that is transient (the relay must retry), not a rejection", err)
	}
	t.Logf("while down: %v", err)

	px.Restore()
	received := make(chan *transport.Delivery, 4)
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*receiveTimeout)
			d, err := sn.Next(ctx)
			cancel()
			if err != nil {
				close(received)
				return
			}
			d.Ack(context.Background())
			received <- d
		}
	}()
	deadline := time.Now().Add(receiveTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = p.Publish(ctx, dest, m)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish still fails %v after the broker came back: %v", receiveTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case d := <-received:
		if d == nil || d.ID != m.ID {
			t.Fatalf("received %v, want %s", d, m.ID)
		}
	case <-time.After(receiveTimeout):
		t.Fatal("the message published after the broker came back never arrived")
	}
}

// outageMidRun cuts the connections of a busy publisher (and subscriber,
// where the broker keeps messages) and restores them: every message whose
// Publish returned nil must arrive.
func (s *suite) outageMidRun(t *testing.T) {
	dest := s.b.NewDest(t)
	subAddr := s.b.Addr
	px := s.proxy(t)
	if s.b.Persistent && !s.b.Synchronous {
		subAddr = px.Addr() // the subscriber loses its connection too
	}
	sn := s.subscribe(t, s.subscriber(t, subAddr), dest, "g")
	p := s.publisher(t, px.Addr())

	var (
		mu        sync.Mutex
		confirmed = map[string]bool{}
		received  = map[string]bool{}
		failures  atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var recvWG sync.WaitGroup
	recvWG.Go(func() {
		for {
			d, err := sn.Next(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			received[d.ID] = true
			mu.Unlock()
			d.Ack(ctx)
		}
	})

	// Publishers retry each message until the broker takes it, as the
	// relay does, and stop once the outage is over and 300 went through.
	var (
		seq      atomic.Int64
		restored atomic.Bool
		pubWG    sync.WaitGroup
	)
	for w := range 8 {
		pubWG.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				enough := restored.Load() && len(confirmed) >= 300
				mu.Unlock()
				if enough {
					return
				}
				i := int(seq.Add(1))
				m := message(dest, i, fmt.Sprintf("key-%d", w))
				for ctx.Err() == nil {
					pctx, pcancel := context.WithTimeout(ctx, time.Second)
					err := p.Publish(pctx, dest, m)
					pcancel()
					if err == nil {
						mu.Lock()
						confirmed[m.ID] = true
						mu.Unlock()
						break
					}
					if transport.IsRejected(err) {
						t.Errorf("Publish during an outage: %v; an unreachable broker is transient, not a rejection", err)
						return
					}
					failures.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	waitUntil(t, receiveTimeout, "100 messages confirmed before the outage", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(confirmed) >= 100
	})
	px.Cut()
	time.Sleep(2 * time.Second)
	px.Restore()
	restored.Store(true)
	pubWG.Wait()
	if failures.Load() == 0 {
		t.Error("no Publish failed while the broker was cut off; a publisher must not report success for what the broker has not taken")
	}
	waitUntil(t, s.b.Redelivery+2*receiveTimeout, "every confirmed message received", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id := range confirmed {
			if !received[id] {
				return false
			}
		}
		return true
	})
	cancel()
	recvWG.Wait()
	mu.Lock()
	defer mu.Unlock()
	var lost []string
	for id := range confirmed {
		if !received[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d confirmed messages never arrived after the outage, e.g. %v", len(lost), len(confirmed), lost[:min(5, len(lost))])
	}
	t.Logf("%d messages confirmed, %d publish attempts failed during the outage", len(confirmed), failures.Load())
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
