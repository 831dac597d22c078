package amqp_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/amqp"
)

// A publisher and a subscriber of the exchange "orders": the subscriber's
// group "billing" gets the queue "orders.billing", bound to the exchange,
// and every message published to it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const url = "amqp://guest:guest@127.0.0.1:5672/"
	orders := amqp.Exchange{Name: "orders", Kind: amqp.KindTopic}

	sub, err := amqp.NewSubscriber(url, amqp.SubscriberOptions{Exchanges: []amqp.Exchange{orders}})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	// Subscribe first: the group's queue must be bound before a message
	// is published, or the message is unroutable.
	sn, err := sub.Subscribe(ctx, "orders", "billing")
	if err != nil {
		log.Fatal(err)
	}
	defer sn.Close()

	pub, err := amqp.NewPublisher(url, amqp.PublisherOptions{
		Exchanges:  []amqp.Exchange{orders},
		RoutingKey: "{type}", // route by event type; the queue binds "#", which takes all
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	err = pub.Publish(ctx, "orders", &transport.Message{
		ID:      "order-42-placed",
		Topic:   "orders",
		Key:     "customer-7",
		Type:    "OrderPlaced",
		Headers: map[string]string{"content-type": "application/json"},
		Payload: []byte(`{"order":42}`),
	})
	if err != nil {
		log.Fatal(err) // a *transport.RejectedError if the broker refused it for good
	}

	d, err := sn.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.ID, d.Type, string(d.Payload))
	if err := d.Ack(ctx); err != nil {
		log.Fatal(err)
	}
}
