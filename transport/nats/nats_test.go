package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/tcpproxy"
	"github.com/ferry-dev/ferry/transport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testMessage(id string) *transport.Message {
	return &transport.Message{
		ID:         id,
		Topic:      "orders",
		Key:        "customer-7",
		Type:       "OrderPlaced",
		Headers:    map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Tenant": "acme"},
		Payload:    []byte(`{"order":1}`),
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
	}
}

// rawMessages reads every message of a stream with a plain client.
func rawMessages(t *testing.T, s testStream) []jetstream.Msg {
	t.Helper()
	js := admin(t)
	ctx := ctxT(t, 10*time.Second)
	c, err := js.OrderedConsumer(ctx, s.name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.Stream(ctx, s.name)
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.CachedInfo().State.Msgs)
	var msgs []jetstream.Msg
	for len(msgs) < n {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read stream %s: %v", s.name, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func TestHeadersOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		format transport.Format
		want   map[string]string
	}{
		{transport.FormatFerry, map[string]string{
			"ferry-id": "m-1", "ferry-topic": "orders", "ferry-key": "customer-7", "ferry-type": "OrderPlaced",
			"ferry-occurred-at": "2026-01-02T03:04:05.000006Z", "Nats-Msg-Id": "m-1", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Tenant": "acme",
		}},
		{transport.FormatCloudEvents, map[string]string{
			"ce-specversion": "1.0", "ce-id": "m-1", "ce-source": "shop", "ce-type": "OrderPlaced", "ce-subject": "orders",
			"ce-partitionkey": "customer-7", "ce-time": "2026-01-02T03:04:05.000006Z", "Nats-Msg-Id": "m-1", "Tenant": "acme",
		}},
	} {
		t.Run(tc.format.String(), func(t *testing.T) {
			s := newStream(t)
			p := newTestPublisher(t, testAddr, PublisherOptions{Format: tc.format, Source: "shop"})
			m := testMessage("m-1")
			if err := p.Publish(ctxT(t, 10*time.Second), s.subject, m); err != nil {
				t.Fatal(err)
			}
			raw := rawMessages(t, s)
			if len(raw) != 1 {
				t.Fatalf("stream holds %d messages, want 1", len(raw))
			}
			h := raw[0].Headers()
			for k, v := range tc.want {
				if got := h.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if !bytes.Equal(raw[0].Data(), m.Payload) {
				t.Errorf("payload %q, want %q", raw[0].Data(), m.Payload)
			}

			// The subscriber reads either format back into the same message.
			sn, err := newTestSubscriber(t, testAddr, SubscriberOptions{}).Subscribe(ctxT(t, 10*time.Second), s.subject, "g")
			if err != nil {
				t.Fatal(err)
			}
			d, err := sn.Next(ctxT(t, 10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if d.ID != m.ID || d.Topic != m.Topic || d.Key != m.Key || d.Type != m.Type || !d.OccurredAt.Equal(m.OccurredAt) {
				t.Errorf("received %+v, want the fields of %+v", d.Message, m)
			}
			if _, ok := d.Headers[jetstream.MsgIDHeader]; ok {
				t.Errorf("the delivery's headers hold %s, which is ferry's, not the message's", jetstream.MsgIDHeader)
			}
			if d.Headers["Tenant"] != "acme" || d.Partition != -1 || d.Offset != 1 || d.Redelivered != 0 {
				t.Errorf("delivery: headers %v, partition %d, offset %d, redelivered %d", d.Headers, d.Partition, d.Offset, d.Redelivered)
			}
			if err := d.Ack(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDeduplication publishes a message twice, as the relay does when an
// acknowledgement is lost: the stream keeps one copy.
func TestDeduplication(t *testing.T) {
	s := newStream(t)
	p := newTestPublisher(t, testAddr, PublisherOptions{})
	for range 3 {
		if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("same-id")); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("other-id")); err != nil {
		t.Fatal(err)
	}
	if n := len(rawMessages(t, s)); n != 2 {
		t.Errorf("stream holds %d messages, want 2: a retried message must not be stored twice", n)
	}
}

func TestRejected(t *testing.T) {
	s := newStream(t)
	p := newTestPublisher(t, testAddr, PublisherOptions{})
	withHeader := func(name, value string) *transport.Message {
		m := testMessage("h")
		m.Headers = map[string]string{name: value}
		return m
	}
	big := testMessage("big")
	big.Payload = bytes.Repeat([]byte("x"), 100<<10)
	huge := testMessage("huge")
	huge.Payload = bytes.Repeat([]byte("x"), 2<<20) // over the server's default max_payload of 1 MiB
	for _, tc := range []struct {
		name, dest string
		m          *transport.Message
		reason     string
	}{
		{"no stream", "ferrytest.nostream." + unique(), testMessage("a"), "no stream matches subject"},
		{"wildcard", s.subject + ".*", testMessage("b"), "wildcard"},
		{"empty token", s.subject + "..x", testMessage("c"), "empty token"},
		{"space in header name", s.subject, withHeader("bad name", "v"), `header name "bad name"`},
		{"colon in header name", s.subject, withHeader("a:b", "v"), `header name "a:b"`},
		{"line break in header value", s.subject, withHeader("ok", "a\r\nInjected: yes"), "line break"},
		{"over the stream's max msg size", s.subject, big, "message size exceeds maximum allowed"},
		{"over the server's max_payload", s.subject, huge, "max_payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Publish(ctxT(t, 10*time.Second), tc.dest, tc.m)
			var rej *transport.RejectedError
			if !errors.As(err, &rej) {
				t.Fatalf("Publish: %v (%T), want *transport.RejectedError", err, err)
			}
			if !strings.Contains(err.Error(), tc.reason) || rej.Transport != "nats" || rej.MessageID != tc.m.ID || rej.Dest != tc.dest {
				t.Errorf("Publish: %v (%+v), want the reason %q, dest and message id", err, rej, tc.reason)
			}
			t.Log(err)
		})
	}
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("fine")); err != nil {
		t.Fatalf("Publish after refusals: %v", err)
	}
}

func TestCheck(t *testing.T) {
	s := newStream(t)
	p := newTestPublisher(t, testAddr, PublisherOptions{})
	ctx := ctxT(t, 10*time.Second)
	if err := transport.Check(ctx, p, transport.Target(s.subject)); err != nil {
		t.Errorf("Check(%q): %v", s.subject, err)
	}
	if err := p.Check(ctx, "ferrytest.nostream."+unique()); err == nil || !transport.IsRejected(err) || !strings.Contains(err.Error(), "no stream matches the subject") {
		t.Errorf("Check of a subject no stream holds: %v", err)
	}
	if err := p.Check(ctx, "orders.*"); err == nil || !strings.Contains(err.Error(), "wildcard") {
		t.Errorf("Check of a wildcard subject: %v", err)
	}
}

// TestStreamsDownAtStart configures a stream on a publisher made while
// the server is unreachable: the stream is created once it is back.
func TestStreamsDownAtStart(t *testing.T) {
	px, err := tcpproxy.New(testAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	px.Cut()
	id := unique()
	st := Stream{Name: "ferrytest_" + id, Subjects: []string{"ferrytest." + id + ".>"}, Storage: StorageMemory,
		Retention: RetentionWorkQueue, MaxAge: time.Hour, MaxMsgSize: 1000, Duplicates: time.Minute}
	t.Cleanup(func() { deleteStream(t, st.Name) })
	p := newTestPublisher(t, px.Addr(), PublisherOptions{Streams: []Stream{st}})
	dest := "ferrytest." + id + ".created"

	err = p.Publish(ctxT(t, 300*time.Millisecond), dest, testMessage("early"))
	if err == nil || transport.IsRejected(err) {
		t.Fatalf("Publish while the server is down: %v, want a transient error", err)
	}
	px.Restore()
	if err := p.Publish(ctxT(t, 10*time.Second), dest, testMessage("m")); err != nil {
		t.Fatalf("Publish once the server is back: %v", err)
	}
	info, err := admin(t).Stream(ctxT(t, 5*time.Second), st.Name)
	if err != nil {
		t.Fatal(err)
	}
	c := info.CachedInfo().Config
	if c.Storage != jetstream.MemoryStorage || c.Retention != jetstream.WorkQueuePolicy || c.MaxAge != time.Hour || c.MaxMsgSize != 1000 || c.Duplicates != time.Minute {
		t.Errorf("stream config %+v is not the one asked for", c)
	}

	// Another publisher updates what can be updated...
	st.MaxAge = 2 * time.Hour
	p2 := newTestPublisher(t, testAddr, PublisherOptions{Streams: []Stream{st}})
	if err := p2.Check(ctxT(t, 10*time.Second), dest); err != nil {
		t.Fatal(err)
	}
	info, _ = admin(t).Stream(ctxT(t, 5*time.Second), st.Name)
	if got := info.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Errorf("MaxAge after update %s, want 2h", got)
	}
	// ... and reports what the server will not change.
	st.Storage = StorageFile
	p3 := newTestPublisher(t, testAddr, PublisherOptions{Streams: []Stream{st}})
	err = p3.Check(ctxT(t, 10*time.Second), dest)
	if err == nil || !strings.Contains(err.Error(), st.Name) {
		t.Errorf("Check with a stream config the server refuses: %v", err)
	}
	t.Log(err)
}

func TestPublishHonoursContextWhileDown(t *testing.T) {
	s := newStream(t)
	px, err := tcpproxy.New(testAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	p := newTestPublisher(t, px.Addr(), PublisherOptions{})
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("before")); err != nil {
		t.Fatal(err)
	}
	px.Cut()
	start := time.Now()
	err = p.Publish(ctxT(t, 300*time.Millisecond), s.subject, testMessage("during"))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish while the server is away: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Publish returned %s after its context ended", d)
	}
	px.Restore()
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("after")); err != nil {
		t.Fatalf("Publish after the server came back: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctxT(t, time.Second), s.subject, testMessage("closed")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

// TestConcurrentPublish publishes from many goroutines, as the relay does.
func TestConcurrentPublish(t *testing.T) {
	s := newStream(t)
	p := newTestPublisher(t, testAddr, PublisherOptions{MaxPending: 64})
	const workers, each = 64, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := p.Publish(ctxT(t, 20*time.Second), s.subject, testMessage(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	info, err := admin(t).Stream(ctxT(t, 5*time.Second), s.name)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != workers*each {
		t.Errorf("stream holds %d messages, want %d", n, workers*each)
	}
}

func TestSubscribeErrors(t *testing.T) {
	s := newStream(t)
	sub := newTestSubscriber(t, testAddr, SubscriberOptions{})
	ctx := ctxT(t, 10*time.Second)
	for _, tc := range []struct{ source, group, want string }{
		{"ferrytest.nostream." + unique(), "g", "no stream matches"},
		{s.subject, "", "name is empty"},
		{s.subject, "a.b", "dots"},
		{"", "g", "subject is empty"},
	} {
		sn, err := sub.Subscribe(ctx, tc.source, tc.group)
		if err == nil {
			sn.Close()
			t.Errorf("Subscribe(%q, %q) succeeded", tc.source, tc.group)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Subscribe(%q, %q): %v, want it to say %q", tc.source, tc.group, err, tc.want)
		}
	}

	// A group is one durable consumer: it cannot follow two subjects.
	js := admin(t)
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: s.name, Subjects: []string{s.subject, s.subject + ".more"}, MaxMsgSize: 64 << 10, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	sn, err := sub.Subscribe(ctx, s.subject, "g")
	if err != nil {
		t.Fatal(err)
	}
	sn.Close()
	if _, err := sub.Subscribe(ctx, s.subject+".more", "g"); err == nil || !strings.Contains(err.Error(), "already a consumer") {
		t.Errorf("Subscribe with a group of another subject: %v", err)
	}
}

func TestNackWithDelay(t *testing.T) {
	s := newStream(t)
	p := newTestPublisher(t, testAddr, PublisherOptions{})
	sn, err := newTestSubscriber(t, testAddr, SubscriberOptions{AckWait: 5 * time.Second}).Subscribe(ctxT(t, 10*time.Second), s.subject, "g")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("m")); err != nil {
		t.Fatal(err)
	}
	d, err := sn.Next(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	const delay = 700 * time.Millisecond
	start := time.Now()
	if err := d.Nack(ctxT(t, 5*time.Second), delay); err != nil {
		t.Fatal(err)
	}
	again, err := sn.Next(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < delay-100*time.Millisecond {
		t.Errorf("redelivered after %s, before the nack's delay of %s", waited, delay)
	}
	if again.ID != d.ID || again.Offset != d.Offset || again.Redelivered != 1 {
		t.Errorf("redelivered %s offset %d redelivered %d; want %s offset %d redelivered 1", again.ID, again.Offset, again.Redelivered, d.ID, d.Offset)
	}
	if err := again.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := again.Ack(ctxT(t, 5*time.Second)); err == nil {
		t.Error("a second Ack of one delivery succeeded")
	}
}

func TestDoubleAck(t *testing.T) {
	s := newStream(t)
	p := newTestPublisher(t, testAddr, PublisherOptions{})
	sn, err := newTestSubscriber(t, testAddr, SubscriberOptions{DoubleAck: true}).Subscribe(ctxT(t, 10*time.Second), s.subject, "g")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("m")); err != nil {
		t.Fatal(err)
	}
	d, err := sn.Next(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("DoubleAck: %v", err)
	}
	c, err := admin(t).Consumer(ctxT(t, 5*time.Second), s.name, "g")
	if err != nil {
		t.Fatal(err)
	}
	if n := c.CachedInfo().NumAckPending; n != 0 {
		t.Errorf("%d messages wait for an ack after a confirmed Ack", n)
	}
}

// TestSubscribeWhileDown subscribes while the server cannot be reached:
// the subscription sets itself up behind Next once it is back.
func TestSubscribeWhileDown(t *testing.T) {
	s := newStream(t)
	px, err := tcpproxy.New(testAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	px.Cut()
	sn, err := newTestSubscriber(t, px.Addr(), SubscriberOptions{}).Subscribe(ctxT(t, 5*time.Second), s.subject, "g")
	if err != nil {
		t.Fatalf("Subscribe while the server is down: %v", err)
	}
	if _, err := sn.Next(ctxT(t, 300*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next while down: %v, want the context's deadline", err)
	}
	p := newTestPublisher(t, testAddr, PublisherOptions{})
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("m")); err != nil {
		t.Fatal(err)
	}
	px.Restore()
	d, err := sn.Next(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Next once the server is back: %v", err)
	}
	if d.ID != "m" {
		t.Errorf("received %s, want m", d.ID)
	}
	d.Ack(ctxT(t, 5*time.Second))
}

// TestConsumerDeleted deletes a subscription's consumer under it: the
// subscription creates it again and goes on.
func TestConsumerDeleted(t *testing.T) {
	s := newStream(t)
	p := newTestPublisher(t, testAddr, PublisherOptions{})
	sn, err := newTestSubscriber(t, testAddr, SubscriberOptions{}).Subscribe(ctxT(t, 10*time.Second), s.subject, "g")
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan *transport.Delivery, 10)
	go func() {
		for {
			d, err := sn.Next(context.Background())
			if err != nil {
				close(received)
				return
			}
			d.Ack(context.Background())
			received <- d
		}
	}()
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("first")); err != nil {
		t.Fatal(err)
	}
	<-received
	// NATS 2.9 sometimes fails to remove the consumer's directory while
	// it writes to it; it works on a second try.
	for try := 0; ; try++ {
		err := admin(t).DeleteConsumer(ctxT(t, 5*time.Second), s.name, "g")
		if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
			break
		}
		if try == 5 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if err := p.Publish(ctxT(t, 10*time.Second), s.subject, testMessage("second")); err != nil {
		t.Fatal(err)
	}
	// The new consumer starts at the stream's beginning: first comes again.
	deadline := time.After(20 * time.Second)
	for {
		select {
		case d := <-received:
			if d.ID == "second" {
				sn.Close()
				return
			}
		case <-deadline:
			t.Fatal("the subscription did not recover from its consumer's deletion")
		}
	}
}

func TestCloseSubscriber(t *testing.T) {
	s := newStream(t)
	sub := newTestSubscriber(t, testAddr, SubscriberOptions{})
	sn, err := sub.Subscribe(ctxT(t, 10*time.Second), s.subject, "g")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sn.Next(context.Background())
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	sub.Close()
	select {
	case err := <-done:
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Next when the subscriber closed: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return when the subscriber closed")
	}
	if _, err := sub.Subscribe(ctxT(t, time.Second), s.subject, "g"); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    PublisherOptions
		want string
	}{
		{"format", PublisherOptions{Format: 7}, "unknown Format"},
		{"max pending", PublisherOptions{MaxPending: -1}, "MaxPending"},
		{"stream name", PublisherOptions{Streams: []Stream{{Name: "a.b", Subjects: []string{"x"}}}}, "stream name"},
		{"stream subjects", PublisherOptions{Streams: []Stream{{Name: "a"}}}, "no subjects"},
		{"stream subject", PublisherOptions{Streams: []Stream{{Name: "a", Subjects: []string{"x..y"}}}}, "empty token"},
		{"storage", PublisherOptions{Streams: []Stream{{Name: "a", Subjects: []string{"x"}, Storage: "disk"}}}, "unknown storage"},
		{"retention", PublisherOptions{Streams: []Stream{{Name: "a", Subjects: []string{"x"}, Retention: "forever"}}}, "unknown retention"},
		{"duplicates", PublisherOptions{Streams: []Stream{{Name: "a", Subjects: []string{"x"}, MaxAge: time.Second, Duplicates: time.Minute}}}, "duplicate window"},
		{"twice", PublisherOptions{Streams: []Stream{{Name: "a", Subjects: []string{"x"}}, {Name: "a", Subjects: []string{"y"}}}}, "twice"},
	} {
		if _, err := NewPublisher(testURL(testAddr), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewPublisher: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		o    SubscriberOptions
		want string
	}{
		{"ack wait", SubscriberOptions{AckWait: time.Millisecond}, "AckWait"},
		{"batch", SubscriberOptions{Batch: -1}, "Batch"},
		{"max deliver", SubscriberOptions{MaxDeliver: -2}, "MaxDeliver"},
	} {
		if _, err := NewSubscriber(testURL(testAddr), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewSubscriber: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewPublisher("", PublisherOptions{}); err == nil {
		t.Error("NewPublisher with an empty URL succeeded")
	}
}

// Compile-time check that the client's error for the server's payload
// limit is the one publishError looks for.
var _ = nats.ErrMaxPayload
