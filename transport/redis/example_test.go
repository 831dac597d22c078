package redis_test

import (
	"context"
	"log"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/redis"
)

// Publish a message to a stream and read it back through a consumer
// group. A relay publishes the same way, through transport.Destination.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	pub, err := redis.NewPublisher(redis.PublisherOptions{
		Addr:   "redis://127.0.0.1:6379/0",
		Mode:   redis.Streams, // durable; redis.PubSub is lossy
		MaxLen: 1_000_000,     // trim the stream to about a million entries
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	sub, err := redis.NewSubscriber(redis.SubscriberOptions{
		Addr:      "redis://127.0.0.1:6379/0",
		ClaimIdle: 30 * time.Second, // a dead consumer's entries come again after this
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	// Subscribe first: the group is created at StartID "0", so it would
	// also get what was published before.
	sn, err := sub.Subscribe(ctx, "orders", "billing")
	if err != nil {
		log.Fatal(err)
	}
	defer sn.Close()

	err = pub.Publish(ctx, "orders", &transport.Message{
		ID:      "0190a8c4-0000-7000-8000-000000000001",
		Topic:   "orders",
		Key:     "customer-42",
		Type:    "OrderPlaced",
		Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		Payload: []byte(`{"order":1}`),
	})
	if err != nil {
		log.Fatal(err) // a *transport.RejectedError if Redis refused it for good
	}

	d, err := sn.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%s %s: %s", d.Type, d.ID, d.Payload)
	if err := d.Ack(ctx); err != nil {
		log.Fatal(err)
	}
}
