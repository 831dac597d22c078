package local_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport/local"
)

// A Mux turns the outbox into a job queue: give it to the relay as the
// destination of a route, and each message is handled by the function
// registered for its type.
func ExampleMux() {
	mux := local.NewMux()
	mux.HandleFunc("SendWelcomeEmail", func(ctx context.Context, r *ferry.Record) error {
		fmt.Printf("sending welcome e-mail: %s\n", r.Payload)
		return nil
	})

	// The relay calls Deliver; here we call it by hand.
	ctx := context.Background()
	err := mux.Deliver(ctx, &ferry.Record{Message: ferry.Message{
		ID: "m-1", Topic: "jobs", Type: "SendWelcomeEmail", Payload: []byte(`{"user":7}`)}})
	fmt.Println("error:", err)

	err = mux.Deliver(ctx, &ferry.Record{Message: ferry.Message{ID: "m-2", Topic: "jobs", Type: "ResizeImage"}})
	fmt.Println("permanent:", ferry.IsPermanent(err))
	fmt.Println(err)
	// Output:
	// sending welcome e-mail: {"user":7}
	// error: <nil>
	// permanent: true
	// local: no handler for message type "ResizeImage" (message m-2); register one with Mux.Handle, then retry the message
}

func ExampleNewWriter() {
	w := local.NewWriter(os.Stdout)
	occurred := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ctx := context.Background()
	w.Deliver(ctx, &ferry.Record{
		Message:    ferry.Message{ID: "m-1", Lane: "online", Topic: "orders.placed", Key: "order-7", Type: "OrderPlaced", Payload: []byte(`{"total": 12}`)},
		Seq:        1,
		OccurredAt: occurred,
	})
	w.Deliver(ctx, &ferry.Record{
		Message:    ferry.Message{ID: "m-2", Lane: "batch", Topic: "files", Payload: []byte("not json")},
		Seq:        2,
		OccurredAt: occurred,
	})
	// Output:
	// {"id":"m-1","seq":1,"lane":"online","topic":"orders.placed","key":"order-7","type":"OrderPlaced","occurred_at":"2025-01-02T03:04:05Z","payload":{"total":12}}
	// {"id":"m-2","seq":2,"lane":"batch","topic":"files","occurred_at":"2025-01-02T03:04:05Z","payload_base64":"bm90IGpzb24="}
}

func ExampleMux_HandleUnknown() {
	mux := local.NewMux()
	mux.HandleUnknown(local.Discard) // drop messages of types nobody handles
	err := mux.Deliver(context.Background(), &ferry.Record{Message: ferry.Message{ID: "m-1", Topic: "t", Type: "Legacy"}})
	fmt.Println(err)
	// Output:
	// <nil>
}
