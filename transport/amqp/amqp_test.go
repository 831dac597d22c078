package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/amqp"
	"github.com/ferry-dev/ferry/transport/transporttest"
)

// brokerAddr is the RabbitMQ the tests use; scripts/services.sh rabbitmq
// starts it. FERRY_AMQP_ADDR overrides it.
func brokerAddr() string {
	if a := os.Getenv("FERRY_AMQP_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:5672"
}

func urlFor(addr string) string { return "amqp://guest:guest@" + addr + "/" }

var brokerURL = urlFor(brokerAddr())

// conn returns connection options that reconnect quickly and log to the
// test's output.
func conn(t *testing.T) amqp.ConnOptions {
	return amqp.ConnOptions{
		DialTimeout:       2 * time.Second,
		MaxReconnectDelay: 300 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// admin returns a plain client connection for setting up and inspecting
// the broker; it fails the test if the broker is down.
func admin(t *testing.T) *amqp091.Channel {
	t.Helper()
	c, err := amqp091.Dial(brokerURL)
	if err != nil {
		t.Fatalf("RabbitMQ at %s: %v (start it with: bash scripts/services.sh rabbitmq)", brokerAddr(), err)
	}
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// uniqueName returns a name no other test uses.
func uniqueName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + "." + hex.EncodeToString(b)
}

// testGroups are the group names the tests and the conformance suite use;
// their queues are deleted with the exchange.
var testGroups = []string{"g", "a", "b", "h", "q"}

// newExchange declares a durable exchange of the given kind that the
// test's cleanup deletes, with the group queues made for it.
func newExchange(t *testing.T, kind string) string {
	t.Helper()
	name := uniqueName("ferrytest")
	ch := admin(t)
	if err := ch.ExchangeDeclare(name, kind, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAll(name) })
	return name
}

// deleteAll deletes an exchange and the queues of the test groups. It
// dials afresh: it runs after the test's other cleanups.
func deleteAll(exchange string) {
	c, err := amqp091.Dial(brokerURL)
	if err != nil {
		return
	}
	defer c.Close()
	for _, g := range testGroups {
		ch, err := c.Channel()
		if err != nil {
			return
		}
		ch.QueueDelete(exchange+"."+g, false, false, false)
		ch.Close()
	}
	if ch, err := c.Channel(); err == nil {
		ch.ExchangeDelete(exchange, false, false)
		ch.Close()
	}
}

// queueArgs makes queues the tests leave behind (a test killed before its
// cleanup) expire once unused for a minute.
var queueArgs = amqp091.Table{"x-expires": int32(60_000)}

func newPublisher(t *testing.T, addr string, o amqp.PublisherOptions) *amqp.Publisher {
	t.Helper()
	o.ConnOptions = conn(t)
	p, err := amqp.NewPublisher(urlFor(addr), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newSubscriber(t *testing.T, addr string, o amqp.SubscriberOptions) *amqp.Subscriber {
	t.Helper()
	o.ConnOptions = conn(t)
	if o.QueueArguments == nil {
		o.QueueArguments = queueArgs
	}
	s, err := amqp.NewSubscriber(urlFor(addr), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func subscribe(t *testing.T, s transport.Subscriber, source, group string) transport.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sn, err := s.Subscribe(ctx, source, group)
	if err != nil {
		t.Fatalf("Subscribe(%q, %q): %v", source, group, err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn
}

func publish(t *testing.T, p transport.Publisher, dest string, m *transport.Message) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Publish(ctx, dest, m)
}

func mustPublish(t *testing.T, p transport.Publisher, dest string, m *transport.Message) {
	t.Helper()
	if err := publish(t, p, dest, m); err != nil {
		t.Fatalf("Publish(%s): %v", m.ID, err)
	}
}

func next(t *testing.T, sn transport.Subscription) *transport.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := sn.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return d
}

// TestConformance runs the shared suite. Messages are routed by type
// (RoutingKey "{type}") and the group queues bind only the types the
// suite sends, so a message of another type is unroutable: that is the
// refusal the suite checks.
func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Broker{
		Name: "amqp",
		Addr: brokerAddr(),
		NewPublisher: func(t *testing.T, addr string) transport.Publisher {
			o := amqp.PublisherOptions{ConnOptions: conn(t), RoutingKey: "{type}"}
			p, err := amqp.NewPublisher(urlFor(addr), o)
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		NewSubscriber: func(t *testing.T, addr string) transport.Subscriber {
			o := amqp.SubscriberOptions{
				ConnOptions:    conn(t),
				BindingKeys:    []string{"OrderPlaced", ""},
				QueueArguments: queueArgs,
			}
			s, err := amqp.NewSubscriber(urlFor(addr), o)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		NewDest:    func(t *testing.T) string { return newExchange(t, amqp.KindTopic) },
		Ordered:    true,
		Groups:     true,
		Persistent: true,
		// A lost connection is seen by the broker at once (the proxy
		// closes the socket) or after two missed heartbeats.
		Redelivery: 2 * time.Second,
		Reject: func(t *testing.T, dest string) (*transport.Message, string) {
			return &transport.Message{ID: uniqueName("unroutable"), Topic: dest, Type: "NobodyListens", Payload: []byte("x")}, "NO_ROUTE"
		},
	})
}

func TestMain(m *testing.M) {
	// A quick probe, so that a broker that is down fails every test with
	// one clear message instead of timeouts.
	c, err := amqp091.Dial(brokerURL)
	if err != nil {
		os.Stderr.WriteString("RabbitMQ at " + brokerAddr() + " is unreachable: " + err.Error() + "\nstart it with: bash scripts/services.sh rabbitmq\n")
		os.Exit(1)
	}
	c.Close()
	os.Exit(m.Run())
}

// contains fails the test unless err's text contains every part.
func contains(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
