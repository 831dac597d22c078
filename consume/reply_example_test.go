package consume_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/local"
)

// A web server asks the pricing service for a quote and waits for the
// answer, over the broker. The pricing consumer answers GetQuote commands
// with Replying; the web server's Requester sends them and reads the
// replies on a destination of its own instance.
func ExampleRequester() {
	broker := local.NewBroker()
	ctx := context.Background()

	// The pricing service.
	prices := map[string]string{"sku-7": "12.50 EUR"}
	r := consume.NewRouter("pricing")
	r.Command("GetQuote", consume.Replying(broker.Publisher(), func(ctx context.Context, m *consume.Message) (*transport.Message, error) {
		price, ok := prices[string(m.Payload)]
		if !ok {
			return nil, consume.Permanent(fmt.Errorf("no price for %s", m.Payload))
		}
		return &transport.Message{Type: "Quote", Payload: []byte(price)}, nil
	}))
	c, err := consume.New(consume.Options{Name: "pricing", Subscriber: broker.Subscriber(), Handler: r, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The web server.
	req, err := consume.NewRequester(ctx, consume.RequesterOptions{
		Publisher:  broker.Publisher(),
		Subscriber: broker.Subscriber(),
		ReplyTo:    "replies.web-1",
		Logger:     quiet,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer req.Close()

	runCtx, stop := context.WithCancel(ctx)
	finished := make(chan error)
	go func() { finished <- c.Run(runCtx) }()
	for _, sku := range []string{"sku-7", "sku-9"} {
		reply, err := req.Request(ctx, consume.CommandTopic("pricing"), &transport.Message{ID: "q-" + sku, Type: "GetQuote", Payload: []byte(sku)})
		var remote *consume.RemoteError
		switch {
		case errors.As(err, &remote):
			fmt.Printf("%s: refused: %s\n", sku, remote.Message)
		case err != nil:
			fmt.Printf("%s: %v\n", sku, err)
		default:
			fmt.Printf("%s: %s (reply to %s)\n", sku, reply.Payload, reply.Headers[consume.HeaderCorrelationID])
		}
	}
	stop()
	fmt.Println("run:", <-finished)
	// Output:
	// sku-7: 12.50 EUR (reply to q-sku-7)
	// sku-9: refused: no price for sku-9
	// run: <nil>
}
