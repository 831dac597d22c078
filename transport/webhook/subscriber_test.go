package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

var subSecret = []byte("subscriber-secret")

func newSubscriber(t *testing.T, opts SubscriberOptions) (*Subscriber, *httptest.Server) {
	t.Helper()
	if opts.Secrets == nil && !opts.Unsigned {
		opts.Secrets = [][]byte{subSecret}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := NewSubscriber(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return s, srv
}

func subscribe(t *testing.T, s *Subscriber, source string) transport.Subscription {
	t.Helper()
	sn, err := s.Subscribe(context.Background(), source, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn
}

// post sends body to url signed with secret (unsigned if nil) at t, and
// returns the status, the Retry-After header and the body of the answer.
func post(t *testing.T, url string, body []byte, secret []byte, at time.Time, header http.Header) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if secret != nil {
		req.Header.Set(SignatureHeader, Sign(body, [][]byte{secret}, at))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", url, err) // not Fatal: some tests post from a goroutine
		return 0, "", ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// receive runs f on each delivery of sn until the test ends.
func receive(t *testing.T, sn transport.Subscription, f func(d *transport.Delivery)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			d, err := sn.Next(ctx)
			if err != nil {
				return
			}
			f(d)
		}
	}()
}

func TestSubscriberRefusals(t *testing.T) {
	s, srv := newSubscriber(t, SubscriberOptions{MaxBody: 100})
	subscribe(t, s, "/in")
	now := time.Now()
	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
		secret []byte
		at     time.Time
		status int
		reason string
	}{
		{name: "unsigned", path: "/in", status: 401, reason: "no Ferry-Signature header"},
		{name: "wrong secret", path: "/in", secret: []byte("other"), at: now, status: 401, reason: "no v1 signature matches"},
		{name: "stale", path: "/in", secret: subSecret, at: now.Add(-10 * time.Minute), status: 401, reason: "stale signature"},
		{name: "too large", path: "/in", body: make([]byte, 101), secret: subSecret, at: now, status: 413, reason: "over the receiver's limit of 100 bytes"},
		{name: "unknown path", path: "/other", secret: subSecret, at: now, status: 404, reason: `no subscription for path "/other"`},
		{name: "GET", method: http.MethodGet, path: "/in", status: 405, reason: "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.method == http.MethodGet {
				resp, err := http.Get(srv.URL + tt.path)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.reason) || resp.Header.Get("Allow") != "POST" {
					t.Errorf("GET: %d %q (Allow %q), want %d", resp.StatusCode, b, resp.Header.Get("Allow"), tt.status)
				}
				return
			}
			status, _, reason := post(t, srv.URL+tt.path, tt.body, tt.secret, tt.at, nil)
			if status != tt.status || !strings.Contains(reason, tt.reason) {
				t.Errorf("answer %d %q, want %d saying %q", status, reason, tt.status, tt.reason)
			}
		})
	}
}

func TestSubscriberAckNack(t *testing.T) {
	s, srv := newSubscriber(t, SubscriberOptions{})
	sn := subscribe(t, s, "in") // "in" and "/in" are the same path
	verdict := make(chan func(d *transport.Delivery), 1)
	receive(t, sn, func(d *transport.Delivery) { (<-verdict)(d) })

	verdict <- func(d *transport.Delivery) { d.Ack(context.Background()) }
	if status, _, body := post(t, srv.URL+"/in", []byte("x"), subSecret, time.Now(), nil); status != http.StatusNoContent {
		t.Errorf("acknowledged push: %d %q, want 204", status, body)
	}

	verdict <- func(d *transport.Delivery) { d.Nack(context.Background(), 1500*time.Millisecond) }
	status, retryAfter, body := post(t, srv.URL+"/in", []byte("x"), subSecret, time.Now(), nil)
	if status != http.StatusServiceUnavailable || retryAfter != "2" || !strings.Contains(body, "gave the message back") {
		t.Errorf("nacked push: %d (Retry-After %q) %q, want 503 with Retry-After 2", status, retryAfter, body)
	}

	// Settling twice the same way is harmless; the other way is a bug.
	verdict <- func(d *transport.Delivery) {
		d.Ack(context.Background())
		if err := d.Ack(context.Background()); err != nil {
			t.Errorf("second Ack: %v", err)
		}
		if err := d.Nack(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "already acknowledged") {
			t.Errorf("Nack after Ack: %v, want an error", err)
		}
	}
	if status, _, _ := post(t, srv.URL+"/in", nil, subSecret, time.Now(), nil); status != http.StatusNoContent {
		t.Errorf("push: %d, want 204", status)
	}
}

func TestSubscriberDelivery(t *testing.T) {
	s, srv := newSubscriber(t, SubscriberOptions{})
	sn := subscribe(t, s, "/in")
	got := make(chan *transport.Delivery, 1)
	receive(t, sn, func(d *transport.Delivery) { got <- d; d.Ack(context.Background()) })

	p := newPublisher(t, Options{BaseURL: srv.URL, Secrets: [][]byte{[]byte("retired"), subSecret}, Header: http.Header{"Authorization": {"Bearer t"}}})
	m := testMessage()
	if err := p.Publish(context.Background(), "in", m); err != nil {
		t.Fatal(err)
	}
	d := <-got
	if d.ID != m.ID || d.Topic != m.Topic || d.Key != m.Key || d.Type != m.Type || !d.OccurredAt.Equal(m.OccurredAt) || !bytes.Equal(d.Payload, m.Payload) {
		t.Errorf("delivery %+v, want the message %+v", d.Message, m)
	}
	if d.Partition != -1 || d.Offset != -1 || d.Redelivered != 0 {
		t.Errorf("Partition %d Offset %d Redelivered %d, want -1 -1 0", d.Partition, d.Offset, d.Redelivered)
	}
	want := map[string]string{
		"traceparent":  m.Headers["traceparent"],
		"tenant":       "acme ünïcode",
		"content-type": "application/octet-stream",
	}
	for k, v := range want {
		if d.Headers[k] != v {
			t.Errorf("header %q = %q, want %q", k, d.Headers[k], v)
		}
	}
	for k := range d.Headers {
		if _, ok := want[k]; !ok {
			t.Errorf("header %q = %q is the HTTP exchange's, not the message's", k, d.Headers[k])
		}
	}
}

func TestSubscriberAckTimeout(t *testing.T) {
	s, srv := newSubscriber(t, SubscriberOptions{AckTimeout: 200 * time.Millisecond})
	sn := subscribe(t, s, "/in")

	// Nobody calls Next.
	status, _, body := post(t, srv.URL+"/in", nil, subSecret, time.Now(), nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "no consumer took the message within 200ms") {
		t.Errorf("push nobody took: %d %q", status, body)
	}

	// Next takes it but nothing acknowledges it in time; the late Ack is
	// harmless, since the sender pushes the message again.
	held := make(chan *transport.Delivery, 1)
	receive(t, sn, func(d *transport.Delivery) { held <- d })
	status, _, body = post(t, srv.URL+"/in", nil, subSecret, time.Now(), nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "did not acknowledge the message within 200ms") {
		t.Errorf("push not acknowledged: %d %q", status, body)
	}
	if err := (<-held).Ack(context.Background()); err != nil {
		t.Errorf("Ack after the push was answered: %v", err)
	}
}

func TestSubscriptionCloseGivesBack(t *testing.T) {
	s, srv := newSubscriber(t, SubscriberOptions{})
	sn := subscribe(t, s, "/in")
	took := make(chan struct{})
	receive(t, sn, func(d *transport.Delivery) { close(took) })
	answered := make(chan int, 1)
	go func() {
		status, _, _ := post(t, srv.URL+"/in", nil, subSecret, time.Now(), nil)
		answered <- status
	}()
	<-took
	sn.Close()
	if status := <-answered; status != http.StatusServiceUnavailable {
		t.Errorf("push held by a closed subscription: %d, want 503", status)
	}
	if _, err := sn.Next(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Next after Close: %v, want ErrClosed", err)
	}
	// The path may get a subscription again (a consumer restarting its
	// subscription): the sender is told to retry, not that the path is
	// unknown.
	if status, _, body := post(t, srv.URL+"/in", nil, subSecret, time.Now(), nil); status != http.StatusServiceUnavailable {
		t.Errorf("push after the path's only subscription closed: %d %q, want 503", status, body)
	}
	receive(t, subscribe(t, s, "/in"), func(d *transport.Delivery) { d.Ack(context.Background()) })
	if status, _, body := post(t, srv.URL+"/in", nil, subSecret, time.Now(), nil); status != http.StatusNoContent {
		t.Errorf("push after subscribing again: %d %q, want 204", status, body)
	}
}

func TestSubscriberCloseAndServe(t *testing.T) {
	s, err := NewSubscriber(SubscriberOptions{Secrets: [][]byte{subSecret}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	sn, err := s.Subscribe(context.Background(), "http://any.host/in", "ignored")
	if err != nil {
		t.Fatal(err)
	}
	took := make(chan struct{})
	go func() {
		if _, err := sn.Next(context.Background()); err == nil {
			close(took)
		}
	}()
	answered := make(chan int, 1)
	go func() {
		status, _, _ := post(t, "http://"+ln.Addr().String()+"/in", nil, subSecret, time.Now(), nil)
		answered <- status
	}()
	<-took
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if status := <-answered; status != http.StatusServiceUnavailable {
		t.Errorf("push held when the subscriber closed: %d, want 503", status)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Close: %v, want http.ErrServerClosed", err)
	}
	if _, err := s.Subscribe(context.Background(), "/in", ""); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

func TestSubscriptionsOfAPathShare(t *testing.T) {
	s, srv := newSubscriber(t, SubscriberOptions{})
	var mu sync.Mutex
	counts := map[int]int{}
	for i := range 2 {
		sn := subscribe(t, s, "/in")
		receive(t, sn, func(d *transport.Delivery) {
			mu.Lock()
			counts[i]++
			mu.Unlock()
			time.Sleep(time.Millisecond) // let the other one take some
			d.Ack(context.Background())
		})
	}
	p := newPublisher(t, Options{BaseURL: srv.URL, Secrets: [][]byte{subSecret}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				if err := p.Publish(context.Background(), "in", &transport.Message{ID: "m"}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if counts[0]+counts[1] != 80 || counts[0] == 0 || counts[1] == 0 {
		t.Errorf("two subscriptions of a path received %d and %d of 80 pushes; want each push once, shared", counts[0], counts[1])
	}
}

func TestNewSubscriberOptions(t *testing.T) {
	tests := []struct {
		opts   SubscriberOptions
		reason string
	}{
		{SubscriberOptions{}, "Secrets is empty"},
		{SubscriberOptions{Secrets: [][]byte{{}}}, "Secrets[0] is empty"},
		{SubscriberOptions{Unsigned: true, MaxBody: -1}, "MaxBody -1 is negative"},
		{SubscriberOptions{Unsigned: true, AckTimeout: -1}, "AckTimeout -1ns is negative"},
	}
	for _, tt := range tests {
		if _, err := NewSubscriber(tt.opts); err == nil || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("NewSubscriber(%+v): %v, want an error saying %q", tt.opts, err, tt.reason)
		}
	}
	s, err := NewSubscriber(SubscriberOptions{Unsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, source := range []string{"", "/in?x=1", "%zz"} {
		if _, err := s.Subscribe(context.Background(), source, ""); err == nil {
			t.Errorf("Subscribe(%q): nil error", source)
		}
	}
}

func TestSubscriberUnsigned(t *testing.T) {
	s, srv := newSubscriber(t, SubscriberOptions{Unsigned: true})
	sn := subscribe(t, s, "/in")
	receive(t, sn, func(d *transport.Delivery) { d.Ack(context.Background()) })
	if status, _, body := post(t, srv.URL+"/in", []byte("x"), nil, time.Time{}, nil); status != http.StatusNoContent {
		t.Errorf("unsigned push to an Unsigned subscriber: %d %q", status, body)
	}
}
