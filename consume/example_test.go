package consume_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/local"
)

// A consumer handles an event stream in key order, and a message whose
// payload it cannot decode goes to the dead letters instead of blocking
// its key. The in-process broker stands in for Kafka, NATS, RabbitMQ or
// Redis: only the Subscriber and Publisher change.
func Example() {
	broker := local.NewBroker()
	pub := broker.Publisher()
	ctx := context.Background()
	for i, payload := range []string{`{"total": 12}`, `not json`, `{"total": 30}`} {
		pub.Publish(ctx, "orders", &transport.Message{ID: fmt.Sprint("m", i), Key: "order-7", Type: "OrderPlaced", Payload: []byte(payload)})
	}

	done := make(chan struct{})
	r := consume.NewRouter("billing")
	r.Event("orders", "OrderPlaced", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		if m.Payload[0] != '{' {
			return consume.Permanent(errors.New("payload is not JSON"))
		}
		fmt.Printf("invoice for %s: %s\n", m.Key, m.Payload)
		if m.ID == "m2" {
			close(done)
		}
		return nil
	}))
	c, err := consume.New(consume.Options{
		Name:       "billing",
		Subscriber: broker.Subscriber(),
		Handler:    r,
		DeadLetter: consume.ToTopic(pub, "{source}.dead"),
		Logger:     quiet,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	finished := make(chan error)
	go func() { finished <- c.Run(runCtx) }()
	<-done
	stop()
	fmt.Println("run:", <-finished)

	dead, _ := broker.Subscriber().Subscribe(ctx, "orders.dead", "ops")
	d, _ := dead.Next(ctx)
	fmt.Printf("dead letter %s: %s\n", d.ID, d.Headers[consume.HeaderDeadReason])
	// Output:
	// invoice for order-7: {"total": 12}
	// invoice for order-7: {"total": 30}
	// run: <nil>
	// dead letter m1: payload is not JSON
}
