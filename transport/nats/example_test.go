package nats_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/nats"
)

// A publisher that creates its stream, and a subscriber that reads it back
// as the group "billing".
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, err := nats.NewPublisher("nats://127.0.0.1:4222", nats.PublisherOptions{
		Streams: []nats.Stream{{
			Name:       "ORDERS",
			Subjects:   []string{"orders.>"},
			MaxAge:     7 * 24 * time.Hour,
			Duplicates: 10 * time.Minute, // longer than the relay's retries of one message
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	err = p.Publish(ctx, "orders.placed", &transport.Message{
		ID:      "0190b7a4-4f5e-7c3a-9d1e-8a2b3c4d5e6f",
		Topic:   "orders",
		Key:     "customer-42",
		Type:    "OrderPlaced",
		Payload: []byte(`{"order":1001}`),
	})
	if transport.IsRejected(err) {
		log.Fatalf("the server will never take it: %v", err)
	} else if err != nil {
		log.Fatalf("try again later: %v", err)
	}

	s, err := nats.NewSubscriber("nats://127.0.0.1:4222", nats.SubscriberOptions{AckWait: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	sub, err := s.Subscribe(ctx, "orders.placed", "billing")
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	d, err := sub.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Type, d.Key, string(d.Payload))
	if err := d.Ack(ctx); err != nil {
		log.Fatal(err)
	}
}
