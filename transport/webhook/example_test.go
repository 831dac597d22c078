package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/webhook"
)

// A publisher pushes a message to a subscriber's server, which hands it to
// a consumer; the consumer's Ack is the answer the publisher waits for.
func Example() {
	ctx := context.Background()
	secrets := [][]byte{[]byte("a long random secret")}

	// The receiving service.
	sub, err := webhook.NewSubscriber(webhook.SubscriberOptions{Secrets: secrets})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	orders, err := sub.Subscribe(ctx, "/orders", "")
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(sub) // or sub.ListenAndServe(":8080")
	defer srv.Close()
	go func() {
		for {
			d, err := orders.Next(ctx)
			if err != nil {
				return
			}
			fmt.Printf("received %s (%s): %s\n", d.ID, d.Type, d.Payload)
			d.Ack(ctx)
		}
	}()

	// The sending service. The relay calls Publish through a route:
	// transport.Destination(pub, "{topic}") posts each message to
	// BaseURL/<its topic>.
	pub, err := webhook.NewPublisher(webhook.Options{BaseURL: srv.URL, Secrets: secrets})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	err = pub.Publish(ctx, "orders", &transport.Message{
		ID: "m-1", Topic: "orders", Key: "order-7", Type: "OrderPlaced", Payload: []byte(`{"order":7}`),
	})
	fmt.Println("published:", err)

	// A refusal is a *transport.RejectedError: the relay marks the message
	// FAILED with the receiver's reason instead of retrying it.
	err = pub.Publish(ctx, "returns", &transport.Message{ID: "m-2", Topic: "returns"})
	var se *webhook.StatusError
	fmt.Println("refused:", transport.IsRejected(err), errors.As(err, &se) && se.StatusCode == http.StatusNotFound)
	// Output:
	// received m-1 (OrderPlaced): {"order":7}
	// published: <nil>
	// refused: true true
}

// A receiver that is not a Subscriber checks the signature with Verify
// before it trusts a push.
func ExampleVerify() {
	secrets := [][]byte{[]byte("a long random secret")}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/orders", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		err = webhook.Verify(r.Header.Get(webhook.SignatureHeader), body, secrets, webhook.DefaultTolerance, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		// Process body, deduplicating by r.Header.Get("Ferry-Id"): a push
		// comes again when its answer was lost.
		w.WriteHeader(http.StatusNoContent)
	})
	_ = http.ListenAndServe(":8080", mux)
}
