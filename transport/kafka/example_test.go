package kafka_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/kafka"
)

// A publisher and a subscriber of one topic. The example runs its own
// in-process Kafka; in production, Brokers names your cluster.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "orders"))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	pub, err := kafka.NewPublisher(kafka.PublisherOptions{Brokers: brokers})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The relay checks its routes' topics when it starts.
	if err := pub.Check(ctx, "orders"); err != nil {
		log.Fatal(err)
	}
	err = pub.Publish(ctx, "orders", &transport.Message{
		ID:      "0195f3c2-7a4e-7b1d-9c1e-3f2a8d6b4c01",
		Topic:   "orders",
		Key:     "customer-42",
		Type:    "OrderPlaced",
		Headers: map[string]string{"content-type": "application/json"},
		Payload: []byte(`{"order":1001,"total":"59.90"}`),
	})
	if err != nil {
		log.Fatal(err) // a *transport.RejectedError if Kafka refused it
	}

	sub, err := kafka.NewSubscriber(kafka.SubscriberOptions{Brokers: brokers})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	sn, err := sub.Subscribe(ctx, "orders", "billing")
	if err != nil {
		log.Fatal(err)
	}
	defer sn.Close()
	d, err := sn.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Type, d.Key, string(d.Payload), d.Headers["content-type"])
	if err := d.Ack(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: OrderPlaced customer-42 {"order":1001,"total":"59.90"} application/json
}
