package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/redis"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testMessage(i int) *transport.Message {
	return &transport.Message{
		ID:    fmt.Sprintf("m-%d", i),
		Topic: "orders",
		Key:   "k",
		Type:  "OrderPlaced",
		Headers: map[string]string{
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			// Named like the layout's own parts: they must stay headers.
			"payload": "a header, not the payload",
			"ce-id":   "a header, not the CloudEvents id",
			"h:x":     "prefixed twice",
		},
		Payload:    []byte{0, 1, 2, '\n', 0xff},
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
	}
}

func sameMessage(t *testing.T, got, want *transport.Message) {
	t.Helper()
	if got.ID != want.ID || got.Topic != want.Topic || got.Key != want.Key || got.Type != want.Type ||
		string(got.Payload) != string(want.Payload) || !got.OccurredAt.Equal(want.OccurredAt) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if len(got.Headers) != len(want.Headers) {
		t.Errorf("headers %v, want %v", got.Headers, want.Headers)
	}
	for k, v := range want.Headers {
		if got.Headers[k] != v {
			t.Errorf("header %q = %q, want %q", k, got.Headers[k], v)
		}
	}
}

func TestStreamLayout(t *testing.T) {
	key := newKey(t)
	c := rawClient(t)
	p := newPublisher(t, redis.PublisherOptions{})
	m := testMessage(1)
	if err := p.Publish(ctxT(t, 5*time.Second), key, m); err != nil {
		t.Fatal(err)
	}
	entries, err := c.XRange(ctxT(t, 5*time.Second), key, "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("XRANGE: %v %v", entries, err)
	}
	want := map[string]string{
		"payload":           string(m.Payload),
		"ferry-id":          "m-1",
		"ferry-topic":       "orders",
		"ferry-key":         "k",
		"ferry-type":        "OrderPlaced",
		"ferry-occurred-at": "2026-01-02T03:04:05.000000006Z",
		"h:traceparent":     m.Headers["traceparent"],
		"h:payload":         m.Headers["payload"],
		"h:ce-id":           m.Headers["ce-id"],
		"h:h:x":             m.Headers["h:x"],
	}
	got := entries[0].Values
	if len(got) != len(want) {
		t.Errorf("entry fields %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %q = %q, want %q", k, got[k], v)
		}
	}

	// What ferry wrote reads back as it was; what another producer wrote
	// with fields of its own reads as headers.
	if err := c.XAdd(ctxT(t, 5*time.Second), &goredis.XAddArgs{Stream: key, Values: []string{"payload", "plain", "color", "red"}}).Err(); err != nil {
		t.Fatal(err)
	}
	sn := subscribe(t, newSubscriber(t, redis.SubscriberOptions{}), key, "g")
	d := next(t, sn)
	sameMessage(t, &d.Message, m)
	if d.Partition != -1 {
		t.Errorf("Partition = %d, want -1", d.Partition)
	}
	if ms, _, _ := strings.Cut(entries[0].ID, "-"); fmt.Sprint(d.Offset) != ms {
		t.Errorf("Offset = %d, want the entry id's milliseconds %s", d.Offset, ms)
	}
	d2 := next(t, sn)
	if string(d2.Payload) != "plain" || d2.Headers["color"] != "red" || d2.ID != "" {
		t.Errorf("a foreign entry decoded as %+v", d2.Message)
	}
}

func TestStreamCloudEvents(t *testing.T) {
	key := newKey(t)
	p := newPublisher(t, redis.PublisherOptions{Format: transport.FormatCloudEvents, Source: "shop"})
	m := testMessage(1)
	delete(m.Headers, "ce-id") // reserved in this format
	if err := p.Publish(ctxT(t, 5*time.Second), key, m); err != nil {
		t.Fatal(err)
	}
	entries, err := rawClient(t).XRange(ctxT(t, 5*time.Second), key, "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("XRANGE: %v %v", entries, err)
	}
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "m-1", "ce-source": "shop", "ce-type": "OrderPlaced", "ce-subject": "orders", "ce-partitionkey": "k"} {
		if entries[0].Values[k] != v {
			t.Errorf("field %q = %v, want %q", k, entries[0].Values[k], v)
		}
	}
	d := next(t, subscribe(t, newSubscriber(t, redis.SubscriberOptions{}), key, "g"))
	sameMessage(t, &d.Message, m)
}

func subscribe(t *testing.T, s transport.Subscriber, source, group string) transport.Subscription {
	t.Helper()
	sn, err := s.Subscribe(ctxT(t, 5*time.Second), source, group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn
}

func next(t *testing.T, sn transport.Subscription) *transport.Delivery {
	t.Helper()
	d, err := sn.Next(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return d
}

func nothing(t *testing.T, sn transport.Subscription, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if d, err := sn.Next(ctx); err == nil {
		t.Errorf("received %s (redelivered %d), want nothing", d.ID, d.Redelivered)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next: %v, want the deadline", err)
	}
}

func TestWrongType(t *testing.T) {
	key := newKey(t)
	c := rawClient(t)
	if err := c.Set(ctxT(t, 5*time.Second), key, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, redis.PublisherOptions{})
	err := p.Publish(ctxT(t, 5*time.Second), key, testMessage(1))
	var rej *transport.RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("Publish to a string key: %v, want a RejectedError", err)
	}
	if !strings.Contains(rej.Reason, "WRONGTYPE") || !strings.Contains(rej.Hint, "not a stream") || rej.MessageID != "m-1" {
		t.Errorf("rejection %+v", rej)
	}
	if err := p.Check(ctxT(t, 5*time.Second), key); !transport.IsRejected(err) || !strings.Contains(err.Error(), "holds a string") {
		t.Errorf("Check of a string key: %v", err)
	}
	if err := p.Check(ctxT(t, 5*time.Second), key+"-missing"); err != nil {
		t.Errorf("Check of a missing key: %v, want nil (XADD creates it)", err)
	}
	_, err = newSubscriber(t, redis.SubscriberOptions{}).Subscribe(ctxT(t, 5*time.Second), key, "g")
	if err == nil || !strings.Contains(err.Error(), "not a stream") {
		t.Errorf("Subscribe to a string key: %v", err)
	}
}

func TestInvalidInput(t *testing.T) {
	for _, o := range []redis.PublisherOptions{
		{Mode: 7},
		{Mode: redis.PubSub, MaxLen: 10},
		{RequireReceivers: true},
		{MaxLen: -1},
		{Format: 9},
		{Addr: "redis://host:port:bad/x"},
	} {
		if _, err := redis.NewPublisher(o); err == nil {
			t.Errorf("NewPublisher(%+v) = nil error", o)
		}
	}
	for _, o := range []redis.SubscriberOptions{
		{Mode: 7},
		{StartID: "latest"},
		{ClaimIdle: time.Microsecond},
		{Count: -1},
	} {
		if _, err := redis.NewSubscriber(o); err == nil {
			t.Errorf("NewSubscriber(%+v) = nil error", o)
		}
	}

	p := newPublisher(t, redis.PublisherOptions{})
	for _, dest := range []string{"", "orders\n"} {
		if err := p.Publish(ctxT(t, time.Second), dest, testMessage(1)); !transport.IsRejected(err) {
			t.Errorf("Publish to %q: %v, want a rejection", dest, err)
		}
	}
	m := testMessage(1)
	m.Headers = map[string]string{"": "x"}
	if err := p.Publish(ctxT(t, time.Second), newKey(t), m); !transport.IsRejected(err) || !strings.Contains(err.Error(), "empty name") {
		t.Errorf("Publish with an empty header name: %v", err)
	}
	s := newSubscriber(t, redis.SubscriberOptions{})
	if _, err := s.Subscribe(ctxT(t, time.Second), "", "g"); err == nil {
		t.Error("Subscribe to an empty source: nil error")
	}
	if _, err := s.Subscribe(ctxT(t, time.Second), "x", ""); err == nil {
		t.Error("Subscribe with an empty group: nil error")
	}
}

func TestPublishHonoursContextAndClose(t *testing.T) {
	// Nothing listens on port 1: the publisher is made, and Publish
	// fails with a transient error within its context.
	p := newPublisher(t, redis.PublisherOptions{Addr: "127.0.0.1:1"})
	start := time.Now()
	err := p.Publish(ctxT(t, 300*time.Millisecond), "x", testMessage(1))
	if err == nil || transport.IsRejected(err) {
		t.Errorf("Publish to nothing: %v, want a transient error", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("Publish took %v past its context", time.Since(start))
	}
	p.Close()
	if err := p.Publish(context.Background(), "x", testMessage(1)); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

func TestMaxLen(t *testing.T) {
	key := newKey(t)
	p := newPublisher(t, redis.PublisherOptions{MaxLen: 100})
	publishN(t, p, key, 1000)
	n, err := rawClient(t).XLen(ctxT(t, time.Second), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Approximate trimming removes whole nodes (100 entries by default).
	if n < 100 || n > 300 {
		t.Errorf("XLEN = %d after 1000 entries with MaxLen 100", n)
	}
}

// A route's own MaxLen trims its streams; its publisher's other streams
// keep the publisher's.
func TestRouteMaxLen(t *testing.T) {
	short, long := newKey(t), newKey(t)
	p := newPublisher(t, redis.PublisherOptions{MaxLen: 5000})
	r, err := p.Route(redis.RouteOptions{MaxLen: 100})
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, r, short, 1000)
	publishN(t, p, long, 1000)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	c := rawClient(t)
	if n := c.XLen(ctxT(t, time.Second), short).Val(); n < 100 || n > 300 {
		t.Errorf("the route's stream: XLEN = %d after 1000 entries with the route's MaxLen 100", n)
	}
	if n := c.XLen(ctxT(t, time.Second), long).Val(); n != 1000 {
		t.Errorf("the publisher's stream: XLEN = %d after 1000 entries with MaxLen 5000", n)
	}

	if _, err := p.Route(redis.RouteOptions{MaxLen: -1}); err == nil || !strings.Contains(err.Error(), "MaxLen is -1") {
		t.Errorf("Route with MaxLen -1: %v", err)
	}
	ps := newPublisher(t, redis.PublisherOptions{Mode: redis.PubSub})
	if _, err := ps.Route(redis.RouteOptions{MaxLen: 10}); err == nil || !strings.Contains(err.Error(), "Pub/Sub") {
		t.Errorf("Route with MaxLen on a Pub/Sub publisher: %v", err)
	}
}

// publishN publishes n messages from many goroutines at once, as the relay
// does.
func publishN(t *testing.T, p transport.Publisher, dest string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := p.Publish(ctxT(t, 10*time.Second), dest, testMessage(i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestConcurrentPublish(t *testing.T) {
	key := newKey(t)
	p := newPublisher(t, redis.PublisherOptions{})
	publishN(t, p, key, 2000)
	if n, _ := rawClient(t).XLen(ctxT(t, time.Second), key).Result(); n != 2000 {
		t.Errorf("XLEN = %d, want 2000", n)
	}
}

func TestNackDelay(t *testing.T) {
	key := newKey(t)
	p := newPublisher(t, redis.PublisherOptions{})
	sn := subscribe(t, newSubscriber(t, redis.SubscriberOptions{}), key, "g")
	if err := p.Publish(ctxT(t, time.Second), key, testMessage(1)); err != nil {
		t.Fatal(err)
	}
	d := next(t, sn)
	if d.Redelivered != 0 {
		t.Errorf("first delivery has Redelivered %d", d.Redelivered)
	}
	// Longer than ClaimIdle: the subscription keeps the entry its own.
	const delay = 2500 * time.Millisecond
	start := time.Now()
	if err := d.Nack(ctxT(t, time.Second), delay); err != nil {
		t.Fatal(err)
	}
	other := subscribe(t, newSubscriber(t, redis.SubscriberOptions{}), key, "g")
	nothing(t, other, delay)
	again := next(t, sn)
	if waited := time.Since(start); waited < delay {
		t.Errorf("redelivered after %v, before the delay of %v", waited, delay)
	}
	if again.ID != "m-1" || again.Redelivered != 1 {
		t.Errorf("redelivered %s with Redelivered %d", again.ID, again.Redelivered)
	}
	if err := again.Nack(ctxT(t, time.Second), 0); err != nil {
		t.Fatal(err)
	}
	third := next(t, sn)
	if third.Redelivered != 2 {
		t.Errorf("third delivery has Redelivered %d, want 2", third.Redelivered)
	}
	if err := third.Ack(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	nothing(t, sn, 3*testClaimIdle)
}

// A handler slower than ClaimIdle keeps its entry: the subscription
// refreshes it, so another consumer does not claim it.
func TestSlowHandlerKeepsEntry(t *testing.T) {
	key := newKey(t)
	p := newPublisher(t, redis.PublisherOptions{})
	slow := subscribe(t, newSubscriber(t, redis.SubscriberOptions{}), key, "g")
	if err := p.Publish(ctxT(t, time.Second), key, testMessage(1)); err != nil {
		t.Fatal(err)
	}
	d := next(t, slow)
	other := subscribe(t, newSubscriber(t, redis.SubscriberOptions{}), key, "g")
	nothing(t, other, 3*testClaimIdle)
	if err := d.Ack(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	pending, err := rawClient(t).XPending(ctxT(t, time.Second), key, "g").Result()
	if err != nil || pending.Count != 0 {
		t.Errorf("pending after Ack: %+v %v", pending, err)
	}
}

func consumers(t *testing.T, key, group string) map[string]int64 {
	t.Helper()
	infos, err := rawClient(t).XInfoConsumers(ctxT(t, time.Second), key, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, c := range infos {
		m[c.Name] = c.Pending
	}
	return m
}

func TestConsumers(t *testing.T) {
	key := newKey(t)
	c := rawClient(t)
	p := newPublisher(t, redis.PublisherOptions{})
	s := newSubscriber(t, redis.SubscriberOptions{RemoveIdleConsumers: 500 * time.Millisecond})

	// A subscription that acknowledged everything leaves no consumer.
	sn := subscribe(t, s, key, "g")
	publishN(t, p, key, 3)
	for range 3 {
		if err := next(t, sn).Ack(ctxT(t, time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(consumers(t, key, "g")); n != 1 {
		t.Fatalf("%d consumers while subscribed, want 1", n)
	}
	sn.Close()
	if cs := consumers(t, key, "g"); len(cs) != 0 {
		t.Errorf("consumers after Close: %v, want none", cs)
	}

	// Consumers of dead processes: one holds an entry and stays, one
	// holds nothing and is removed.
	ctx := ctxT(t, 10*time.Second)
	c.XGroupCreateConsumer(ctx, key, "g", "dead-empty")
	publishN(t, p, key, 1)
	if err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "g", Consumer: "dead-holding", Streams: []string{key, ">"}, Count: 1}).Err(); err != nil {
		t.Fatal(err)
	}
	live := subscribe(t, s, key, "g")
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs := consumers(t, key, "g")
		if _, ok := cs["dead-empty"]; !ok {
			if _, ok := cs["dead-holding"]; !ok {
				// Its entry was claimed, which may have let it go.
				d := next(t, live)
				t.Logf("dead-holding removed after its entry %s was claimed", d.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle consumer not removed: %v", cs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestGroupRecreated(t *testing.T) {
	key := newKey(t)
	c := rawClient(t)
	p := newPublisher(t, redis.PublisherOptions{})
	sn := subscribe(t, newSubscriber(t, redis.SubscriberOptions{}), key, "g")
	publishN(t, p, key, 1)
	next(t, sn).Ack(ctxT(t, time.Second))
	// As after a restart of a Redis that keeps nothing on disk.
	if err := c.Del(ctxT(t, time.Second), key).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * testBlock) // let the blocked read end on the deleted key
	if err := p.Publish(ctxT(t, time.Second), key, testMessage(7)); err != nil {
		t.Fatal(err)
	}
	if d := next(t, sn); d.ID != "m-7" {
		t.Errorf("after the stream was deleted received %s, want m-7", d.ID)
	}
}

func TestStartIDNewOnly(t *testing.T) {
	key := newKey(t)
	p := newPublisher(t, redis.PublisherOptions{})
	publishN(t, p, key, 5)
	sn := subscribe(t, newSubscriber(t, redis.SubscriberOptions{StartID: "$"}), key, "g")
	if err := p.Publish(ctxT(t, time.Second), key, testMessage(99)); err != nil {
		t.Fatal(err)
	}
	if d := next(t, sn); d.ID != "m-99" {
		t.Errorf("with StartID $ received %s first, want m-99", d.ID)
	}
}

func TestPubSubEnvelope(t *testing.T) {
	channel := newKey(t)
	c := rawClient(t)
	ps := c.Subscribe(ctxT(t, time.Second), channel)
	defer ps.Close()
	if _, err := ps.Receive(ctxT(t, time.Second)); err != nil {
		t.Fatal(err)
	}
	sn := subscribe(t, newSubscriber(t, redis.SubscriberOptions{Mode: redis.PubSub}), channel, "ignored")
	p := newPublisher(t, redis.PublisherOptions{Mode: redis.PubSub})
	m := testMessage(1)
	if err := p.Publish(ctxT(t, time.Second), channel, m); err != nil {
		t.Fatal(err)
	}
	raw, err := ps.ReceiveMessage(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	head, payload, ok := strings.Cut(raw.Payload, "\n")
	if !ok || payload != string(m.Payload) || !strings.HasPrefix(head, `{"ferry-id":"m-1",`) || !strings.Contains(head, `"h:payload":"a header, not the payload"`) {
		t.Errorf("envelope %q", raw.Payload)
	}
	sameMessage(t, &next(t, sn).Message, m)

	// A message that is not an envelope is all payload.
	if err := c.Publish(ctxT(t, time.Second), channel, "hello\nworld").Err(); err != nil {
		t.Fatal(err)
	}
	if d := next(t, sn); string(d.Payload) != "hello\nworld" || d.ID != "" || d.Offset != -1 {
		t.Errorf("a plain message decoded as %+v", d)
	}
}

func TestPubSubRequireReceivers(t *testing.T) {
	channel := newKey(t)
	p := newPublisher(t, redis.PublisherOptions{Mode: redis.PubSub, RequireReceivers: true})
	err := p.Publish(ctxT(t, time.Second), channel, testMessage(1))
	if !errors.Is(err, redis.ErrNoReceivers) || transport.IsRejected(err) {
		t.Errorf("Publish with nobody listening: %v, want a transient ErrNoReceivers", err)
	}
	sn := subscribe(t, newSubscriber(t, redis.SubscriberOptions{Mode: redis.PubSub}), channel, "g")
	if err := p.Publish(ctxT(t, time.Second), channel, testMessage(2)); err != nil {
		t.Fatal(err)
	}
	if d := next(t, sn); d.ID != "m-2" {
		t.Errorf("received %s", d.ID)
	}
	// Without the option, nobody listening is no error.
	lossy := newPublisher(t, redis.PublisherOptions{Mode: redis.PubSub})
	if err := lossy.Publish(ctxT(t, time.Second), channel+"-nobody", testMessage(3)); err != nil {
		t.Errorf("Publish to an empty channel: %v", err)
	}
}

func TestPubSubEverySubscriptionGetsEverything(t *testing.T) {
	channel := newKey(t)
	s := newSubscriber(t, redis.SubscriberOptions{Mode: redis.PubSub})
	a, b := subscribe(t, s, channel, "g"), subscribe(t, s, channel, "g")
	p := newPublisher(t, redis.PublisherOptions{Mode: redis.PubSub})
	if err := p.Publish(ctxT(t, time.Second), channel, testMessage(1)); err != nil {
		t.Fatal(err)
	}
	var got []*transport.Delivery
	for _, sn := range []transport.Subscription{a, b} {
		d := next(t, sn)
		if d.ID != "m-1" {
			t.Errorf("received %s", d.ID)
		}
		got = append(got, d)
	}
	// A nacked message comes again, from the subscription's memory.
	start := time.Now()
	if err := got[0].Nack(ctxT(t, time.Second), 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d := next(t, a)
	if d.ID != "m-1" || d.Redelivered != 1 || time.Since(start) < 200*time.Millisecond {
		t.Errorf("after a nack received %s (Redelivered %d) after %v", d.ID, d.Redelivered, time.Since(start))
	}
	nothing(t, b, 300*time.Millisecond)
}
