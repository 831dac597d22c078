package amqp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/amqp"
)

func TestSubscribeDeclaresAndBinds(t *testing.T) {
	ex := newExchange(t, amqp.KindDirect)
	sub := newSubscriber(t, brokerAddr(), amqp.SubscriberOptions{BindingKeys: []string{"orders"}})
	sn := subscribe(t, sub, ex, "g")

	q, err := admin(t).QueueDeclarePassive(ex+".g", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("the group's queue %s.g: %v", ex, err)
	}
	if q.Consumers != 1 {
		t.Errorf("queue has %d consumers, want 1", q.Consumers)
	}
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{})
	mustPublish(t, p, ex, sample("m-1"))
	d := next(t, sn)
	if d.Partition != -1 || d.Offset != -1 || d.Redelivered != 0 {
		t.Errorf("partition %d offset %d redelivered %d, want -1 -1 0", d.Partition, d.Offset, d.Redelivered)
	}
	if err := d.Ack(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(context.Background()); err == nil {
		t.Error("a second Ack of one delivery succeeded; it must fail without closing the channel")
	}
	m := sample("m-2")
	m.Topic = "refunds" // the direct exchange routes only "orders" to the queue
	if err := publish(t, p, ex, m); !transport.IsRejected(err) {
		t.Errorf("Publish with a key the queue is not bound with: %v, want a RejectedError", err)
	}
}

func TestSubscribeRefusals(t *testing.T) {
	sub := newSubscriber(t, brokerAddr(), amqp.SubscriberOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	missing := uniqueName("ferrytest-missing")
	t.Cleanup(func() { deleteAll(missing) })
	_, err := sub.Subscribe(ctx, missing, "g")
	contains(t, err, "NOT_FOUND", missing, "declare the exchange")

	ex := newExchange(t, amqp.KindTopic)
	subscribe(t, sub, ex, "q").Close() // a classic queue
	quorum := newSubscriber(t, brokerAddr(), amqp.SubscriberOptions{QueueType: amqp.QueueQuorum})
	_, err = quorum.Subscribe(ctx, ex, "q")
	contains(t, err, "PRECONDITION_FAILED", "exists with other arguments")

	if _, err := sub.Subscribe(ctx, ex, ""); err == nil {
		t.Error("Subscribe with an empty group succeeded")
	}
}

func TestNackDelay(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	sub := newSubscriber(t, brokerAddr(), amqp.SubscriberOptions{})
	sn := subscribe(t, sub, ex, "g")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{})
	mustPublish(t, p, ex, sample("m-1"))

	d := next(t, sn)
	start := time.Now()
	if err := d.Nack(context.Background(), 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	again := next(t, sn)
	if elapsed := time.Since(start); elapsed < 400*time.Millisecond {
		t.Errorf("redelivered after %v, before the nack's delay", elapsed)
	}
	if again.ID != "m-1" || again.Redelivered != 1 {
		t.Errorf("redelivered %s with Redelivered %d, want m-1 and 1", again.ID, again.Redelivered)
	}
	if err := again.Ack(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Quorum queues count deliveries; the dead-letter settings move a
// message that exhausted its delivery limit to another exchange.
func TestQuorumQueueDeadLetter(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	dlx := newExchange(t, amqp.KindFanout)
	dead := rawQueue(t, dlx, "")
	sub := newSubscriber(t, brokerAddr(), amqp.SubscriberOptions{
		QueueType:            amqp.QueueQuorum,
		DeadLetterExchange:   dlx,
		DeadLetterRoutingKey: "dead",
		QueueArguments:       amqp091.Table{"x-delivery-limit": int32(1)},
	})
	sn := subscribe(t, sub, ex, "q")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{})
	mustPublish(t, p, ex, sample("m-1"))

	for want := range 2 {
		d := next(t, sn)
		if d.Redelivered != want {
			t.Errorf("delivery %d: Redelivered %d", want+1, d.Redelivered)
		}
		if err := d.Nack(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	d := receiveRaw(t, dead)
	if d.MessageId != "m-1" || d.RoutingKey != "dead" {
		t.Errorf("dead-lettered %s with routing key %q", d.MessageId, d.RoutingKey)
	}
}

func TestSubscriptionClose(t *testing.T) {
	ex := newExchange(t, amqp.KindTopic)
	sub := newSubscriber(t, brokerAddr(), amqp.SubscriberOptions{})
	sn := subscribe(t, sub, ex, "g")
	p := newPublisher(t, brokerAddr(), amqp.PublisherOptions{})
	mustPublish(t, p, ex, sample("m-1"))
	d := next(t, sn)

	done := make(chan error, 1)
	go func() {
		_, err := sn.Next(context.Background())
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	sn.Close()
	select {
	case err := <-done:
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Next at Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return at Close")
	}
	if err := d.Ack(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Ack after Close: %v, want ErrClosed", err)
	}
	// The message went back to the queue.
	again := next(t, subscribe(t, sub, ex, "g"))
	if again.ID != "m-1" || again.Redelivered != 1 {
		t.Errorf("after Close received %s (redelivered %d), want m-1 again", again.ID, again.Redelivered)
	}

	sub.Close()
	if _, err := sub.Subscribe(context.Background(), ex, "g"); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

// A subscriber made while the broker is down sets itself up behind Next.
func TestSubscribeWhileDown(t *testing.T) {
	sub := newSubscriber(t, deadAddr(t), amqp.SubscriberOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sn, err := sub.Subscribe(ctx, "orders", "g")
	if err != nil {
		t.Fatalf("Subscribe while the broker is down: %v", err)
	}
	defer sn.Close()
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	_, err = sn.Next(short)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next while down: %v, want the deadline", err)
	}
	contains(t, err, "connection refused")
}
