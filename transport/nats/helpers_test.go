package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testAddr is the NATS server the tests use; scripts/services.sh nats
// starts it.
const testAddr = "127.0.0.1:4222"

func testURL(addr string) string { return "nats://" + addr }

// testLogger discards logs unless FERRY_TEST_LOG is set: the clients log
// from their own goroutines, which may outlive a test's output.
func testLogger() *slog.Logger {
	if os.Getenv("FERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testConn() ConnOptions {
	return ConnOptions{ReconnectWait: 50 * time.Millisecond, Logger: testLogger()}
}

// admin returns a plain JetStream client for setting up and checking.
func admin(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(testURL(testAddr), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("NATS is not reachable at %s (run: bash scripts/services.sh nats): %v", testAddr, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func unique() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testStream is a stream of the test's own, deleted when the test ends.
type testStream struct {
	name    string
	subject string // the stream's one subject
}

// newStream creates a file stream holding one unique subject. The stream
// refuses messages over 64 KiB, so the tests have something to refuse.
func newStream(t testing.TB) testStream {
	t.Helper()
	js := admin(t)
	id := unique()
	s := testStream{name: "ferrytest_" + id, subject: "ferrytest." + id}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       s.name,
		Subjects:   []string{s.subject},
		Storage:    jetstream.FileStorage,
		MaxMsgSize: 64 << 10,
		Duplicates: time.Minute,
	})
	if err != nil {
		t.Fatalf("create stream %s: %v", s.name, err)
	}
	t.Cleanup(func() { deleteStream(t, s.name) })
	return s
}

func deleteStream(t testing.TB, name string) {
	js := admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, name); err != nil && !isNotFound(err) {
		t.Errorf("delete stream %s: %v", name, err)
	}
}

func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound)
}

func newTestPublisher(t *testing.T, addr string, o PublisherOptions) *Publisher {
	t.Helper()
	if o.ConnOptions.Logger == nil {
		o.ConnOptions = testConn()
	}
	p, err := NewPublisher(testURL(addr), o)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newTestSubscriber(t *testing.T, addr string, o SubscriberOptions) *Subscriber {
	t.Helper()
	if o.ConnOptions.Logger == nil {
		o.ConnOptions = testConn()
	}
	if o.AckWait == 0 {
		o.AckWait = time.Second
	}
	if o.Batch == 0 {
		o.Batch = 10
	}
	if o.PullExpiry == 0 {
		o.PullExpiry = time.Second
	}
	s, err := NewSubscriber(testURL(addr), o)
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
