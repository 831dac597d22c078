package consume_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/local"
)

// quoteTopic is where the tests' requests go: the commands of the
// consumer "pricing".
var quoteTopic = consume.CommandTopic("pricing")

// startReplier runs the consumer "pricing", which answers GetQuote with f
// and sends what it gives up on to "{source}.dead".
func startReplier(t *testing.T, b *local.Broker, f consume.ReplyFunc) {
	t.Helper()
	r := consume.NewRouter("pricing")
	r.Command("GetQuote", consume.Replying(b.Publisher(), f))
	c, err := consume.New(consume.Options{Name: "pricing", Subscriber: b.Subscriber(), Handler: r, Logger: quiet,
		MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		DeadLetter: consume.ToTopic(b.Publisher(), "{source}.dead")})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
}

func newRequester(t *testing.T, b *local.Broker, opts consume.RequesterOptions) *consume.Requester {
	t.Helper()
	opts.Publisher = b.Publisher()
	opts.Subscriber = b.Subscriber()
	if opts.ReplyTo == "" {
		opts.ReplyTo = "replies.web-1"
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	req, err := consume.NewRequester(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { req.Close() })
	return req
}

func quote(ctx context.Context, m *consume.Message) (*transport.Message, error) {
	return &transport.Message{Type: "Quote", Payload: append([]byte("quote for "), m.Payload...)}, nil
}

func getQuote(payload string) *transport.Message {
	return &transport.Message{Type: "GetQuote", Payload: []byte(payload)}
}

func TestRequestReply(t *testing.T) {
	b := local.NewBroker()
	var seen *consume.Message
	startReplier(t, b, func(ctx context.Context, m *consume.Message) (*transport.Message, error) {
		seen = m
		return quote(ctx, m)
	})
	req := newRequester(t, b, consume.RequesterOptions{})

	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	m := &transport.Message{ID: "r1", Type: "GetQuote", Payload: []byte("sku-7"), Headers: map[string]string{transport.TraceParent: tp}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := req.Request(ctx, quoteTopic, m)
	if err != nil {
		t.Fatal(err)
	}
	if string(reply.Payload) != "quote for sku-7" || reply.Type != "Quote" || reply.Topic != "replies.web-1" || reply.ID == "" || reply.OccurredAt.IsZero() {
		t.Errorf("reply %+v", reply)
	}
	if reply.Headers[consume.HeaderCorrelationID] != "r1" || reply.Headers[transport.TraceParent] != tp {
		t.Errorf("reply headers %v", reply.Headers)
	}
	if seen.Headers[consume.HeaderReplyTo] != "replies.web-1" || seen.Headers[consume.HeaderCorrelationID] != "r1" || seen.Topic != quoteTopic {
		t.Errorf("request as the replier saw it: %+v", seen.Message)
	}
	if len(m.Headers) != 1 {
		t.Errorf("Request changed the caller's message: headers %v", m.Headers)
	}

	// Without an id, the request gets one, and a correlation id set by
	// the caller is the one that travels.
	reply, err = req.Request(ctx, quoteTopic, &transport.Message{Type: "GetQuote", Payload: []byte("sku-8"),
		Headers: map[string]string{consume.HeaderCorrelationID: "order-42"}})
	if err != nil {
		t.Fatal(err)
	}
	if reply.Headers[consume.HeaderCorrelationID] != "order-42" || seen.ID == "" || seen.ID == "order-42" {
		t.Errorf("reply headers %v to request %s", reply.Headers, seen.ID)
	}
}

// Many requests at once each get their own reply.
func TestConcurrentRequests(t *testing.T) {
	b := local.NewBroker()
	startReplier(t, b, quote)
	req := newRequester(t, b, consume.RequesterOptions{})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const n = 50
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sku := fmt.Sprint("sku-", i)
			reply, err := req.Request(ctx, quoteTopic, getQuote(sku))
			if err == nil && string(reply.Payload) != "quote for "+sku {
				err = fmt.Errorf("request for %s got %q", sku, reply.Payload)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// Two requesters sharing a reply destination, each in a group of its
// own, get their own replies.
func TestRequestersSharingReplyTo(t *testing.T) {
	b := local.NewBroker()
	startReplier(t, b, quote)
	a := newRequester(t, b, consume.RequesterOptions{ReplyTo: "replies", Group: "web-1"})
	c := newRequester(t, b, consume.RequesterOptions{ReplyTo: "replies", Group: "web-2"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 10 {
		for _, req := range []*consume.Requester{a, c} {
			sku := fmt.Sprint("sku-", i)
			reply, err := req.Request(ctx, quoteTopic, getQuote(sku))
			if err != nil || string(reply.Payload) != "quote for "+sku {
				t.Fatalf("request for %s: %v, %v", sku, reply, err)
			}
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	b := local.NewBroker() // nobody answers
	req := newRequester(t, b, consume.RequesterOptions{Timeout: 30 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := req.Request(ctx, quoteTopic, &transport.Message{ID: "r1", Type: "GetQuote"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `request r1 (type "GetQuote") to "commands.pricing": no reply after`) {
		t.Errorf("err = %v", err)
	}
	// The requester's Timeout bounds a request whose context does not.
	began := time.Now()
	_, err = req.Request(context.Background(), quoteTopic, &transport.Message{ID: "r2", Type: "GetQuote"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > 2*time.Second {
		t.Errorf("after %v: err = %v", time.Since(began), err)
	}
	var remote *consume.RemoteError
	if errors.As(err, &remote) {
		t.Errorf("a timeout is a RemoteError: %v", err)
	}
}

// A permanent error is the caller's to know, as a RemoteError; a
// transient one is retried until it passes.
func TestRemoteError(t *testing.T) {
	b := local.NewBroker()
	var attempts atomic.Int64
	startReplier(t, b, func(ctx context.Context, m *consume.Message) (*transport.Message, error) {
		switch string(m.Payload) {
		case "discontinued":
			return nil, consume.Permanent(errors.New("product discontinued"))
		case "flaky":
			if attempts.Add(1) < 3 {
				return nil, errors.New("price service unavailable")
			}
		}
		return quote(ctx, m)
	})
	req := newRequester(t, b, consume.RequesterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := req.Request(ctx, quoteTopic, &transport.Message{ID: "r1", Type: "GetQuote", Payload: []byte("discontinued")})
	var remote *consume.RemoteError
	if !errors.As(err, &remote) || remote.Message != "product discontinued" || remote.RequestID != "r1" || remote.Dest != quoteTopic {
		t.Fatalf("err = %#v", err)
	}
	if want := `consume: request r1 (type "GetQuote") to "commands.pricing" failed: product discontinued`; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("a remote error is a timeout")
	}
	// The refusal is an answer, not a failure: nothing is dead-lettered.
	dead, _ := b.Subscriber().Subscribe(ctx, quoteTopic+".dead", "ops")
	peek, stopPeek := context.WithTimeout(ctx, 50*time.Millisecond)
	if d, err := dead.Next(peek); err == nil {
		t.Errorf("dead letter %s: %v", d.ID, d.Headers)
	}
	stopPeek()

	reply, err := req.Request(ctx, quoteTopic, getQuote("flaky"))
	if err != nil || string(reply.Payload) != "quote for flaky" || attempts.Load() != 3 {
		t.Errorf("after %d attempts: %v, %v", attempts.Load(), reply, err)
	}
}

// A reply that comes after its caller gave up is dropped, and so is a
// second reply to one request; neither reaches the next caller.
func TestLateAndDuplicateReplies(t *testing.T) {
	b := local.NewBroker()
	release := make(chan struct{})
	startReplier(t, b, func(ctx context.Context, m *consume.Message) (*transport.Message, error) {
		if string(m.Payload) == "slow" {
			<-release
		}
		return quote(ctx, m)
	})
	var logs syncBuffer
	req := newRequester(t, b, consume.RequesterOptions{
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := req.Request(ctx, quoteTopic, &transport.Message{ID: "r1", Type: "GetQuote", Payload: []byte("slow")})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow request: %v", err)
	}
	close(release)
	waitFor(t, "the late reply to be dropped", func() bool { return strings.Contains(logs.String(), "correlation_id=r1") })

	// A redelivered request answered twice.
	pub := b.Publisher()
	pub.Publish(context.Background(), "replies.web-1", &transport.Message{ID: "dup", Headers: map[string]string{consume.HeaderCorrelationID: "r1"}})

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := req.Request(ctx, quoteTopic, &transport.Message{ID: "r2", Type: "GetQuote", Payload: []byte("fast")})
	if err != nil || string(reply.Payload) != "quote for fast" || reply.Headers[consume.HeaderCorrelationID] != "r2" {
		t.Fatalf("next request: %+v, %v", reply, err)
	}
	if !strings.Contains(logs.String(), `level=DEBUG msg="consume: requester dropped a reply nobody waits for`) {
		t.Errorf("logs:\n%s", logs.String())
	}
}

// A request without a reply-to cannot be answered: it goes to the dead
// letters without being handled.
func TestRequestWithoutReplyTo(t *testing.T) {
	b := local.NewBroker()
	var handled atomic.Bool
	startReplier(t, b, func(ctx context.Context, m *consume.Message) (*transport.Message, error) {
		handled.Store(true)
		return quote(ctx, m)
	})
	dead, err := b.Subscriber().Subscribe(context.Background(), quoteTopic+".dead", "ops")
	if err != nil {
		t.Fatal(err)
	}
	b.Publisher().Publish(context.Background(), quoteTopic, &transport.Message{ID: "r1", Type: "GetQuote", Payload: []byte("sku-7")})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := dead.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := `consume: request r1 (type "GetQuote") has no reply-to header, so it cannot be answered: send it with a Requester, or set the header`
	if d.ID != "r1" || d.Headers[consume.HeaderDeadReason] != want || d.Headers[consume.HeaderDeadAttempts] != "1" {
		t.Errorf("dead letter %s: %v", d.ID, d.Headers)
	}
	if handled.Load() {
		t.Error("the request was handled")
	}
}

// A reply the broker refuses is not retried: the request goes to the
// dead letters.
func TestReplyRefused(t *testing.T) {
	b := local.NewBroker()
	refusing := refusingPublisher{b.Publisher()}
	r := consume.NewRouter("pricing")
	r.Command("GetQuote", consume.Replying(refusing, quote))
	var reasons []error
	c, _ := consume.New(consume.Options{Name: "pricing", Subscriber: b.Subscriber(), Handler: r, Logger: quiet,
		DeadLetter: deadLetterFunc(func(ctx context.Context, m *consume.Message, reason error) error {
			reasons = append(reasons, reason)
			return nil
		})})
	req := newRequester(t, b, consume.RequesterOptions{ReplyTo: "replies.gone", Timeout: 100 * time.Millisecond})
	stop := run(t, c)
	if _, err := req.Request(context.Background(), quoteTopic, getQuote("sku-7")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	stop()
	if len(reasons) != 1 || !transport.IsRejected(reasons[0]) || !consume.IsPermanent(reasons[0]) ||
		!strings.Contains(reasons[0].Error(), `publish to "replies.gone"`) {
		t.Errorf("dead-letter reasons %v", reasons)
	}
}

// refusingPublisher refuses messages to "replies.gone".
type refusingPublisher struct{ transport.Publisher }

func (p refusingPublisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	if dest == "replies.gone" {
		return &transport.RejectedError{Transport: "test", Dest: dest, MessageID: m.ID, Reason: "no such destination"}
	}
	return p.Publisher.Publish(ctx, dest, m)
}

// waitSent waits until n requests were published to quoteTopic.
func waitSent(t *testing.T, b *local.Broker, n int) {
	t.Helper()
	sub, err := b.Subscriber().Subscribe(context.Background(), quoteTopic, "peek")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range n {
		if _, err := sub.Next(ctx); err != nil {
			t.Fatalf("waiting for %d requests: %v", n, err)
		}
	}
}

func TestRequesterClose(t *testing.T) {
	b := local.NewBroker()
	req := newRequester(t, b, consume.RequesterOptions{})
	errs := make(chan error, 1)
	go func() {
		_, err := req.Request(context.Background(), quoteTopic, getQuote("sku-7"))
		errs <- err
	}()
	waitSent(t, b, 1)
	if err := req.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, transport.ErrClosed) {
		t.Errorf("request in flight: err = %v", err)
	}
	if _, err := req.Request(context.Background(), quoteTopic, getQuote("sku-8")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("request after Close: err = %v", err)
	}
	if err := req.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRequestDuplicateCorrelationID(t *testing.T) {
	b := local.NewBroker()
	req := newRequester(t, b, consume.RequesterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := req.Request(ctx, quoteTopic, &transport.Message{ID: "r1", Type: "GetQuote"})
		first <- err
	}()
	waitSent(t, b, 1)
	_, err := req.Request(ctx, quoteTopic, &transport.Message{ID: "r2", Type: "GetQuote", Headers: map[string]string{consume.HeaderCorrelationID: "r1"}})
	if err == nil || !strings.Contains(err.Error(), `correlation id "r1" is another request's in flight`) {
		t.Errorf("err = %v", err)
	}
	cancel()
	<-first
}

func TestNewRequesterNeedsOptions(t *testing.T) {
	if _, err := consume.NewRequester(context.Background(), consume.RequesterOptions{}); err == nil {
		t.Error("NewRequester with no options succeeded")
	}
}

// syncBuffer is a bytes.Buffer that a logger and a test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
