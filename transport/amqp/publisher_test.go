package amqp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/amqp"
)

// rawQueue declares a queue bound to exchange with key that the test's
// cleanup deletes, and returns its deliveries, read with the plain client.
func rawQueue(t *testing.T, exchange, key string) <-chan amqp091.Delivery {
	t.Helper()
	ch := admin(t)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, key, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func receiveRaw(t *testing.T, deliveries <-chan amqp091.Delivery) amqp091.Delivery {
	t.Helper()
	select {
	case d := <-deliveries:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no message arrived")
	}
	panic("unreachable")
}

func sample(id string) *transport.Message {
	return &transport.Message{
		ID:         id,
		Topic:      "orders",
		Key:        "customer-7",
		Type:       "OrderPlaced",
		Headers:    map[string]string{"content-type": "application/json", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme"},
		Payload:    []byte(`{"order":42}`),
		OccurredAt: time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC),
	}
}

// The wire mapping of the package documentation, as a plain AMQP client
// sees it.
func TestPublishWireFerryFormat(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	raw := rawQueue(t, ex, "orders")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{})

	mustPublish(t, p, ex, sample("m-1"))
	d := receiveRaw(t, raw)
	if d.RoutingKey != "orders" {
		t.Errorf("routing key %q, want the topic", d.RoutingKey)
	}
	if d.MessageId != "m-1" || d.Type != "OrderPlaced" || d.ContentType != "application/json" {
		t.Errorf("properties message-id %q type %q content-type %q", d.MessageId, d.Type, d.ContentType)
	}
	if d.DeliveryMode != amqp091.Persistent {
		t.Errorf("delivery mode %d, want persistent", d.DeliveryMode)
	}
	if !d.Timestamp.Equal(time.Date(2026, 3, 1, 12, 30, 45, 0, time.UTC)) {
		t.Errorf("timestamp %v, want occurred_at to the second", d.Timestamp)
	}
	want := amqp091.Table{
		"ferry-id":          "m-1",
		"ferry-topic":       "orders",
		"ferry-key":         "customer-7",
		"ferry-type":        "OrderPlaced",
		"ferry-occurred-at": "2026-03-01T12:30:45.123456789Z",
		"traceparent":       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tenant":            "acme",
	}
	for k, v := range want {
		if d.Headers[k] != v {
			t.Errorf("header %q = %v, want %q", k, d.Headers[k], v)
		}
	}
	if len(d.Headers) != len(want) {
		t.Errorf("headers %v, want exactly %v (content-type travels as the property)", d.Headers, want)
	}
	if string(d.Body) != `{"order":42}` {
		t.Errorf("body %q", d.Body)
	}
}

func TestPublishWireCloudEvents(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	raw := rawQueue(t, ex, "#")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{Format: transport.FormatCloudEvents, Source: "/shop/orders"})

	m := sample("m-2")
	m.Headers["cloudEvents:type"] = "spoofed" // a field's header cannot be overridden
	mustPublish(t, p, ex, m)
	d := receiveRaw(t, raw)
	want := amqp091.Table{
		"cloudEvents:specversion":  "1.0",
		"cloudEvents:id":           "m-2",
		"cloudEvents:source":       "/shop/orders",
		"cloudEvents:type":         "OrderPlaced",
		"cloudEvents:time":         "2026-03-01T12:30:45.123456789Z",
		"cloudEvents:subject":      "orders",
		"cloudEvents:partitionkey": "customer-7",
		"traceparent":              "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tenant":                   "acme",
	}
	for k, v := range want {
		if d.Headers[k] != v {
			t.Errorf("header %q = %v, want %q", k, d.Headers[k], v)
		}
	}
	if len(d.Headers) != len(want) {
		t.Errorf("headers %v, want exactly %v", d.Headers, want)
	}
	if d.ContentType != "application/json" {
		t.Errorf("content-type property %q, want the datacontenttype", d.ContentType)
	}

	// A subscriber decodes either format into the same message.
	sub := newSubscriber(t, brokerAddr(), amqp.SubscriberOptions{})
	sn := subscribe(t, sub, ex, "g")
	mustPublish(t, p, ex, sample("m-3"))
	got := next(t, sn)
	if got.ID != "m-3" || got.Topic != "orders" || got.Key != "customer-7" || got.Type != "OrderPlaced" ||
		!got.OccurredAt.Equal(sample("").OccurredAt) || got.Headers["content-type"] != "application/json" || got.Headers["tenant"] != "acme" {
		t.Errorf("decoded %+v", got.Message)
	}
	for k := range got.Headers {
		if strings.HasPrefix(k, "cloudEvents:") {
			t.Errorf("header %q should have been decoded into a field", k)
		}
	}
}

func TestRoutingKeyTemplate(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	raw := rawQueue(t, ex, "shop.*.OrderPlaced")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{RoutingKey: "shop.{key}.{type}"})

	mustPublish(t, p, ex, sample("m-1"))
	if d := receiveRaw(t, raw); d.RoutingKey != "shop.customer-7.OrderPlaced" {
		t.Errorf("routing key %q", d.RoutingKey)
	}
	m := sample("m-2")
	m.Type = "Refund"
	err := publish(t, p, ex, m)
	if !transport.IsRejected(err) {
		t.Fatalf("Publish of an unroutable message: %v, want a RejectedError", err)
	}
	contains(t, err, "unroutable: NO_ROUTE", `bind a queue to exchange "`+ex+`" with a key matching "shop.customer-7.Refund"`, "m-2")
}

// A route's own routing key: two routes share one publisher's connection
// and route the same message differently.
func TestRouteRoutingKey(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	byKey := rawQueue(t, ex, "customer-7")
	byType := rawQueue(t, ex, "OrderPlaced")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{RoutingKey: "{type}"})
	r, err := p.Route(amqp.RouteOptions{RoutingKey: "{key}"})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, r, ex, sample("by-key"))
	mustPublish(t, p, ex, sample("by-type"))
	if d := receiveRaw(t, byKey); d.MessageId != "by-key" || d.RoutingKey != "customer-7" {
		t.Errorf("queue bound to the key got %s with routing key %q, want by-key with customer-7", d.MessageId, d.RoutingKey)
	}
	if d := receiveRaw(t, byType); d.MessageId != "by-type" {
		t.Errorf("queue bound to the type got %s, want by-type", d.MessageId)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, p, ex, sample("after-route-close")) // the route's Close leaves the connection open
	if d := receiveRaw(t, byType); d.MessageId != "after-route-close" {
		t.Errorf("got %s, want after-route-close", d.MessageId)
	}

	_, err = p.Route(amqp.RouteOptions{RoutingKey: "{tpye}"})
	contains(t, err, "route options", `"{tpye}"`, "unknown placeholder")
}

func TestUnroutableAmongConcurrentPublishes(t *testing.T) {
	ex := newExchange(t, amqp.KindDirect)
	rawQueue(t, ex, "routed")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{RoutingKey: "{type}", Channels: 1})

	// Returns and confirms of many messages interleave on one channel:
	// each call must get its own verdict.
	var wg sync.WaitGroup
	errs := make([]error, 400)
	for i := range errs {
		wg.Go(func() {
			m := sample(fmt.Sprintf("m-%d", i))
			if i%3 == 0 {
				m.Type = "unrouted"
			} else {
				m.Type = "routed"
			}
			errs[i] = publish(t, p, ex, m)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%3 == 0 && !transport.IsRejected(err) {
			t.Errorf("message %d (unroutable): %v, want a RejectedError", i, err)
		}
		if i%3 != 0 && err != nil {
			t.Errorf("message %d (routed): %v", i, err)
		}
	}
}

func TestMissingExchange(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	rawQueue(t, ex, "#")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{})
	ctx := context.Background()

	missing := uniqueName("ferrytest-missing")
	err := publish(t, p, missing, sample("m-1"))
	if !transport.IsRejected(err) {
		t.Fatalf("Publish to a missing exchange: %v, want a RejectedError", err)
	}
	contains(t, err, "NOT_FOUND", missing, "declare exchange", "m-1")
	if err := p.Check(ctx, missing); !transport.IsRejected(err) {
		t.Errorf("Check of a missing exchange: %v, want a RejectedError", err)
	}
	if err := p.Check(ctx, ex); err != nil {
		t.Errorf("Check of an existing exchange: %v", err)
	}

	// An exchange deleted after the publisher has used it closes the
	// confirm channel with 404: that message is refused, and the channel
	// is reopened for the next.
	gone := newExchange(t, amqp.KindTopic)
	rawQueue(t, gone, "#")
	mustPublish(t, p, gone, sample("m-2"))
	if err := admin(t).ExchangeDelete(gone, false, false); err != nil {
		t.Fatal(err)
	}
	err = publish(t, p, gone, sample("m-3"))
	if !transport.IsRejected(err) {
		t.Fatalf("Publish to a deleted exchange: %v, want a RejectedError", err)
	}
	contains(t, err, "NOT_FOUND")
	for i := range 4 { // both channels work
		mustPublish(t, p, ex, sample(fmt.Sprintf("m-%d", 4+i)))
	}
}

func TestDeclaresExchanges(t *testing.T) {
	name := uniqueName("ferrytest")
	t.Cleanup(func() { deleteAll(name) })
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{
		Exchanges: []amqp.Exchange{{Name: name, Kind: amqp.KindFanout}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for p.Check(ctx, name) != nil && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Check(ctx, name); err != nil {
		t.Fatalf("Check of a declared exchange: %v", err)
	}
	raw := rawQueue(t, name, "ignored by fanout")
	mustPublish(t, p, name, sample("m-1"))
	receiveRaw(t, raw)
}

func TestInvalidInput(t *testing.T) {
	for name, o := range map[string]amqp.PublisherOptions{
		"kind":        {Exchanges: []amqp.Exchange{{Name: "x", Kind: "round-robin"}}},
		"amq.":        {Exchanges: []amqp.Exchange{{Name: "amq.mine"}}},
		"twice":       {Exchanges: []amqp.Exchange{{Name: "x"}, {Name: "x"}}},
		"placeholder": {RoutingKey: "{tpoic}"},
		"channels":    {Channels: -1},
		"delays":      {ConnOptions: amqp.ConnOptions{MinReconnectDelay: time.Second, MaxReconnectDelay: time.Millisecond}},
		"tls":         {ConnOptions: amqp.ConnOptions{TLS: &tls.Config{}}}, // with an amqp:// URL
	} {
		if _, err := amqp.NewPublisher(brokerURL, o); err == nil {
			t.Errorf("%s: NewPublisher accepted %+v", name, o)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	for name, o := range map[string]amqp.SubscriberOptions{
		"queue type":  {QueueType: "lazy"},
		"placeholder": {Queue: "{exchange}.{group}"},
		"dlx key":     {DeadLetterRoutingKey: "dead"},
		"prefetch":    {Prefetch: -1},
	} {
		if _, err := amqp.NewSubscriber(brokerURL, o); err == nil {
			t.Errorf("%s: NewSubscriber accepted %+v", name, o)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	for _, u := range []string{"", "http://127.0.0.1:5672/", "amqp://guest:guest@127.0.0.1:notaport/"} {
		if _, err := amqp.NewPublisher(u, amqp.PublisherOptions{}); err == nil {
			t.Errorf("NewPublisher accepted URL %q", u)
		}
	}

	ex := newExchange(t, amqp.KindTopic)
	rawQueue(t, ex, "#")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{})
	for name, c := range map[string]struct {
		dest string
		m    func(*transport.Message)
		want string
	}{
		"empty dest":   {"", nil, "exchange name is empty"},
		"long dest":    {strings.Repeat("x", 256), nil, "over AMQP's limit"},
		"CC header":    {ex, func(m *transport.Message) { m.Headers["CC"] = "other-key" }, "extra routing keys"},
		"long header":  {ex, func(m *transport.Message) { m.Headers[strings.Repeat("h", 300)] = "v" }, "rename the header"},
		"long key":     {ex, func(m *transport.Message) { m.Topic = strings.Repeat("t", 300) }, "routing key"},
		"long type":    {ex, func(m *transport.Message) { m.Type = strings.Repeat("t", 300) }, "type"},
		"content-type": {ex, func(m *transport.Message) { m.Headers["content-type"] = strings.Repeat("c", 300) }, "content-type"},
	} {
		m := sample("bad-" + strings.ReplaceAll(name, " ", "-"))
		if c.m != nil {
			c.m(m)
		}
		err := publish(t, p, c.dest, m)
		if !transport.IsRejected(err) {
			t.Errorf("%s: Publish: %v, want a RejectedError", name, err)
			continue
		}
		contains(t, err, c.want)
	}
	mustPublish(t, p, ex, sample("good")) // the publisher still works
}

// deadAddr returns an address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestPublishWhileDown(t *testing.T) {
	p := newPublisher(t, deadAddr(t), amqp.PublisherOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Publish(ctx, "orders", sample("m-1"))
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Publish took %v after its context ended", elapsed)
	}
	if err == nil || transport.IsRejected(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish while the broker is down: %v, want a transient error wrapping the deadline", err)
	}
	contains(t, err, "not connected", "connection refused")
	if err := p.Check(ctx, "orders"); err == nil || transport.IsRejected(err) {
		t.Errorf("Check while down: %v, want a transient error", err)
	}

	// Close does not wait for the broker, and Publish fails after it.
	done := make(chan struct{})
	go func() {
		p.Publish(context.Background(), "orders", sample("m-2"))
		close(done)
	}()
	time.Sleep(100 * time.Millisecond)
	start = time.Now()
	p.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a Publish waiting for the broker did not return at Close")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Close took %v", elapsed)
	}
	if err := p.Publish(context.Background(), "orders", sample("m-3")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

func TestConcurrentPublish(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	sub := newSubscriber(t, brokerAddr(), amqp.SubscriberOptions{Prefetch: 500})
	sn := subscribe(t, sub, ex, "g")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{})

	const workers, each = 64, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := publish(t, p, ex, sample(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := map[string]bool{}
	for len(seen) < workers*each {
		d := next(t, sn)
		seen[d.ID] = true
		if err := d.Ack(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func BenchmarkPublish(b *testing.B) {
	ch, err := amqp091.Dial(brokerURL)
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	c, _ := ch.Channel()
	ex := uniqueName("ferrybench")
	c.ExchangeDeclare(ex, amqp.KindTopic, true, false, false, false, nil)
	q, _ := c.QueueDeclare(ex, true, false, false, false, nil)
	c.QueueBind(q.Name, "#", ex, false, nil)
	defer func() {
		c.QueueDelete(q.Name, false, false, false)
		c.ExchangeDelete(ex, false, false)
	}()
	for _, channels := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("channels=%d", channels), func(b *testing.B) {
			p, err := amqp.NewPublisher(brokerURL, amqp.PublisherOptions{Channels: channels})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			m := sample("bench")
			m.Payload = make([]byte, 256)
			b.SetParallelism(benchParallelism) // 64 × GOMAXPROCS goroutines, as a relay's lanes
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.Publish(context.Background(), ex, m); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			c.QueuePurge(q.Name, false)
		})
	}
}

// BenchmarkPublishRaw is the plain client's best with the same
// guarantees, for comparison: one channel, every message sent before
// waiting for the confirms.
func BenchmarkPublishRaw(b *testing.B) {
	conn, err := amqp091.Dial(brokerURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c, _ := conn.Channel()
	ex := uniqueName("ferrybench")
	c.ExchangeDeclare(ex, amqp.KindTopic, true, false, false, false, nil)
	q, _ := c.QueueDeclare(ex, true, false, false, false, nil)
	c.QueueBind(q.Name, "#", ex, false, nil)
	defer func() {
		c.QueueDelete(q.Name, false, false, false)
		c.ExchangeDelete(ex, false, false)
	}()
	ch, _ := conn.Channel()
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, b.N))
	m := sample("bench")
	body := make([]byte, 256)
	b.ResetTimer()
	for range b.N {
		h := amqp091.Table{"ferry-id": m.ID, "ferry-topic": m.Topic, "ferry-key": m.Key, "ferry-type": m.Type, "ferry-occurred-at": "2026-03-01T12:30:45.123456789Z", "traceparent": m.Headers["traceparent"], "tenant": "acme"}
		if err := ch.Publish(ex, m.Topic, true, false, amqp091.Publishing{MessageId: m.ID, Type: m.Type, DeliveryMode: amqp091.Persistent, Headers: h, Body: body}); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		if c := <-confirms; !c.Ack {
			b.Fatal("nack")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// benchParallelism × GOMAXPROCS goroutines publish at once in
// BenchmarkPublish, as a relay's lanes do.
var benchParallelism = 64

// An exchange that exists with other settings is used as it is: the
// failed declaration is logged, publishing goes on.
func TestDeclareConflict(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	raw := rawQueue(t, ex, "orders")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{
		Exchanges: []amqp.Exchange{{Name: ex, Kind: amqp.KindFanout}, {Name: uniqueName("ferrytest-never"), Kind: "x-no-such-plugin"}},
	})
	mustPublish(t, p, ex, sample("m-1"))
	receiveRaw(t, raw)
}
