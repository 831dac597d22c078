package webhook

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// recorder is a receiver that records each request and answers with
// whatever reply says.
type recorder struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies [][]byte
	reply  http.HandlerFunc
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, r)
	rec.bodies = append(rec.bodies, b)
	reply := rec.reply
	rec.mu.Unlock()
	if reply != nil {
		reply(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rec *recorder) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		t.Fatal("the receiver got no request")
	}
	return rec.reqs[len(rec.reqs)-1], rec.bodies[len(rec.bodies)-1]
}

func newReceiver(t *testing.T) (*recorder, *httptest.Server) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, srv
}

func newPublisher(t *testing.T, opts Options) *Publisher {
	t.Helper()
	p, err := NewPublisher(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testMessage() *transport.Message {
	return &transport.Message{
		ID:         "m-1",
		Topic:      "orders",
		Key:        "order-7",
		Type:       "OrderPlaced",
		Headers:    map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme ünïcode"},
		Payload:    []byte("\x00\x01binary\xff"),
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
	}
}

func TestPublishRequest(t *testing.T) {
	rec, srv := newReceiver(t)
	secret := []byte("s3cret")
	p := newPublisher(t, Options{BaseURL: srv.URL + "/hooks/", Secrets: [][]byte{secret}, Header: http.Header{"Authorization": {"Bearer t"}}})
	m := testMessage()
	if err := p.Publish(context.Background(), "/orders", m); err != nil {
		t.Fatal(err)
	}
	r, b := rec.last(t)
	if r.Method != http.MethodPost || r.URL.Path != "/hooks/orders" {
		t.Errorf("request %s %s, want POST /hooks/orders", r.Method, r.URL.Path)
	}
	if string(b) != string(m.Payload) {
		t.Errorf("body %q, want %q", b, m.Payload)
	}
	want := map[string]string{
		"Ferry-Id":          "m-1",
		"Ferry-Topic":       "orders",
		"Ferry-Key":         "order-7",
		"Ferry-Type":        "OrderPlaced",
		"Ferry-Occurred-At": "2026-01-02T03:04:05.000006Z",
		"Traceparent":       m.Headers["traceparent"],
		"Tenant":            "acme ünïcode",
		"Content-Type":      "application/octet-stream",
		"User-Agent":        "ferry",
		"Idempotency-Key":   "m-1",
		"Authorization":     "Bearer t",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if err := Verify(r.Header.Get(SignatureHeader), b, [][]byte{secret}, time.Minute, time.Now()); err != nil {
		t.Errorf("the push's signature: %v", err)
	}
}

func TestPublishContentTypeAndEmptyBody(t *testing.T) {
	rec, srv := newReceiver(t)
	p := newPublisher(t, Options{BaseURL: srv.URL})
	m := &transport.Message{ID: "m-2", Topic: "t", Headers: map[string]string{"content-type": "application/json"}}
	if err := p.Publish(context.Background(), "x", m); err != nil {
		t.Fatal(err)
	}
	r, b := rec.last(t)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want the message's application/json", ct)
	}
	if len(b) != 0 || r.ContentLength != 0 {
		t.Errorf("body %q (Content-Length %d), want empty", b, r.ContentLength)
	}
	if r.Header.Get(SignatureHeader) != "" {
		t.Error("a publisher without secrets signed the push")
	}
}

func TestPublishCloudEvents(t *testing.T) {
	rec, srv := newReceiver(t)
	p := newPublisher(t, Options{BaseURL: srv.URL, Format: transport.FormatCloudEvents, Source: "shop"})
	m := testMessage()
	m.Topic = "orders ünï"
	if err := p.Publish(context.Background(), "ce", m); err != nil {
		t.Fatal(err)
	}
	r, b := rec.last(t)
	want := map[string]string{
		"ce-specversion":  "1.0",
		"ce-id":           "m-1",
		"ce-source":       "shop",
		"ce-type":         "OrderPlaced",
		"ce-time":         "2026-01-02T03:04:05.000006Z",
		"ce-subject":      "orders%20%C3%BCn%C3%AF", // percent-encoded, as the HTTP binding says
		"ce-partitionkey": "order-7",
		"Ferry-Id":        "",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	// The receiving side reads it back as it was.
	got := decode(r.Header, b)
	if got.ID != m.ID || got.Topic != m.Topic || got.Key != m.Key || got.Type != m.Type || !got.OccurredAt.Equal(m.OccurredAt) {
		t.Errorf("decoded %+v, want the fields of %+v", got, m)
	}
	if got.Headers["tenant"] != "acme ünïcode" || got.Headers["traceparent"] != m.Headers["traceparent"] {
		t.Errorf("decoded headers %v", got.Headers)
	}
}

func TestPublishDest(t *testing.T) {
	rec, srv := newReceiver(t)
	tests := []struct {
		base, dest string
		path       string // the request path, or "" for a refusal
		reason     string
	}{
		{base: srv.URL, dest: "a", path: "/a"},
		{base: srv.URL + "/", dest: "/a/b", path: "/a/b"},
		{base: srv.URL + "/hooks", dest: "a", path: "/hooks/a"},
		{base: "", dest: srv.URL + "/abs", path: "/abs"},
		{base: "http://elsewhere.invalid", dest: srv.URL + "/abs", path: "/abs"},
		{base: "", dest: "a", reason: "Options.BaseURL is not set"},
		{base: srv.URL, dest: "", reason: "dest is empty"},
		{base: srv.URL, dest: "ftp://host/x", reason: "not http:// or https://"},
		{base: srv.URL, dest: "http:///nohost", reason: "not http:// or https://"},
		{base: srv.URL, dest: "%zz", reason: "not a valid URL"},
	}
	for _, tt := range tests {
		p := newPublisher(t, Options{BaseURL: tt.base})
		err := p.Publish(context.Background(), tt.dest, &transport.Message{ID: "m"})
		checkErr := p.Check(context.Background(), tt.dest)
		if tt.path == "" {
			if !transport.IsRejected(err) || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("base %q dest %q: Publish: %v, want a refusal saying %q", tt.base, tt.dest, err, tt.reason)
			}
			if !transport.IsRejected(checkErr) {
				t.Errorf("base %q dest %q: Check: %v, want a refusal", tt.base, tt.dest, checkErr)
			}
			continue
		}
		if err != nil || checkErr != nil {
			t.Errorf("base %q dest %q: Publish: %v, Check: %v", tt.base, tt.dest, err, checkErr)
			continue
		}
		if r, _ := rec.last(t); r.URL.Path != tt.path {
			t.Errorf("base %q dest %q: posted to %s, want %s", tt.base, tt.dest, r.URL.Path, tt.path)
		}
	}
}

func TestPublishBadHeaders(t *testing.T) {
	rec, srv := newReceiver(t)
	p := newPublisher(t, Options{BaseURL: srv.URL})
	tests := []struct {
		headers map[string]string
		key     string
		reason  string
	}{
		{headers: map[string]string{"bad name": "v"}, reason: `header "bad name" is not a valid HTTP header name`},
		{headers: map[string]string{"x-ünï": "v"}, reason: `header "x-ünï" is not a valid HTTP header name`},
		{headers: map[string]string{"x-multi": "a\r\nInjected: yes"}, reason: `header "x-multi" cannot be sent over HTTP as it is: its value has control character '\r'`},
		{headers: map[string]string{"x-pad": " padded"}, reason: `header "x-pad" cannot be sent over HTTP as it is: its value has leading or trailing white space`},
		{headers: map[string]string{"Content-Length": "5"}, reason: `header "Content-Length" is one HTTP uses to frame the request`},
		{key: "a\nb", reason: `header "ferry-key" cannot be sent over HTTP`},
	}
	for _, tt := range tests {
		err := p.Publish(context.Background(), "x", &transport.Message{ID: "m-9", Key: tt.key, Headers: tt.headers})
		var re *transport.RejectedError
		if !errors.As(err, &re) {
			t.Errorf("headers %q key %q: Publish: %v, want a refusal", tt.headers, tt.key, err)
			continue
		}
		if re.MessageID != "m-9" || re.Dest != "x" || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("headers %q key %q: %v, want it to name m-9, x and say %q", tt.headers, tt.key, err, tt.reason)
		}
	}
	if len(rec.reqs) != 0 {
		t.Errorf("%d requests were sent for messages that cannot be", len(rec.reqs))
	}
}

func TestPublishStatus(t *testing.T) {
	rec, srv := newReceiver(t)
	p := newPublisher(t, Options{BaseURL: srv.URL})
	tests := []struct {
		status     int
		header     http.Header
		body       string
		transient  bool
		retryAfter time.Duration
		reason     string
	}{
		{status: 200},
		{status: 201},
		{status: 204},
		{status: 500, body: "boom", transient: true, reason: "answered 500 Internal Server Error: boom"},
		{status: 503, header: http.Header{"Retry-After": {"7"}}, transient: true, retryAfter: 7 * time.Second, reason: "(Retry-After 7s)"},
		{status: 429, header: http.Header{"Retry-After": {time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)}}, transient: true, retryAfter: 90 * time.Second},
		{status: 408, transient: true},
		{status: 400, body: "{\"error\":\n  \"no such order\"}", reason: `answered 400 Bad Request: {"error": "no such order"}`},
		{status: 401, reason: "answered 401 Unauthorized; check that the receiver has the publisher's signing secret"},
		{status: 404, reason: "check the route's URL"},
		{status: 410, reason: "answered 410 Gone"},
		{status: 413, reason: "raise its limit or send a smaller payload"},
		{status: 301, header: http.Header{"Location": {"https://new.example/x"}}, reason: "answered 301 Moved Permanently to https://new.example/x"},
		{status: 307, header: http.Header{"Location": {"/elsewhere"}}, reason: "answered 307 Temporary Redirect to /elsewhere; update the route's URL"},
	}
	for _, tt := range tests {
		rec.mu.Lock()
		rec.reply = func(w http.ResponseWriter, r *http.Request) {
			for k, v := range tt.header {
				w.Header()[k] = v
			}
			w.WriteHeader(tt.status)
			io.WriteString(w, tt.body)
		}
		rec.mu.Unlock()
		err := p.Publish(context.Background(), "x", &transport.Message{ID: "m-3"})
		if tt.status < 300 {
			if err != nil {
				t.Errorf("status %d: %v, want nil", tt.status, err)
			}
			continue
		}
		var se *StatusError
		if err == nil || !errors.As(err, &se) {
			t.Errorf("status %d: %v, want a *StatusError", tt.status, err)
			continue
		}
		if se.StatusCode != tt.status {
			t.Errorf("status %d: StatusError.StatusCode = %d", tt.status, se.StatusCode)
		}
		if transport.IsRejected(err) == tt.transient {
			t.Errorf("status %d: %v: rejected %v, want %v", tt.status, err, transport.IsRejected(err), !tt.transient)
		}
		if d := se.RetryAfter - tt.retryAfter; d < -2*time.Second || d > 2*time.Second {
			t.Errorf("status %d: RetryAfter %v, want %v", tt.status, se.RetryAfter, tt.retryAfter)
		}
		if !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("status %d: %q does not say %q", tt.status, err, tt.reason)
		}
	}
}

func TestPublishRetryStatusOption(t *testing.T) {
	rec, srv := newReceiver(t)
	rec.reply = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusConflict) }
	p := newPublisher(t, Options{BaseURL: srv.URL, RetryStatus: func(s int) bool { return s == http.StatusConflict || DefaultRetryStatus(s) }})
	err := p.Publish(context.Background(), "x", &transport.Message{ID: "m"})
	if err == nil || transport.IsRejected(err) {
		t.Fatalf("409 with RetryStatus saying it is transient: %v", err)
	}
}

func TestPublishRedirects(t *testing.T) {
	rec, srv := newReceiver(t)
	rec.reply = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/temp":
			http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
		case "/found":
			http.Redirect(w, r, "/final", http.StatusFound)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
	m := &transport.Message{ID: "m", Payload: []byte("payload")}

	p := newPublisher(t, Options{BaseURL: srv.URL})
	if err := p.Publish(context.Background(), "temp", m); !transport.IsRejected(err) {
		t.Errorf("307 without FollowRedirects: %v, want a refusal", err)
	}

	p = newPublisher(t, Options{BaseURL: srv.URL, FollowRedirects: true})
	if err := p.Publish(context.Background(), "temp", m); err != nil {
		t.Fatalf("307 with FollowRedirects: %v", err)
	}
	r, b := rec.last(t)
	if r.URL.Path != "/final" || r.Method != http.MethodPost || string(b) != "payload" {
		t.Errorf("the redirect went to %s %s with %q, want POST /final with the payload", r.Method, r.URL.Path, b)
	}
	if err := p.Publish(context.Background(), "found", m); !transport.IsRejected(err) || !strings.Contains(err.Error(), "302 Found") {
		t.Errorf("302 with FollowRedirects: %v, want a refusal (net/http would re-send it as a GET)", err)
	}
}

func TestPublishTimeoutAndContext(t *testing.T) {
	rec, srv := newReceiver(t)
	release := make(chan struct{})
	rec.reply = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	defer close(release)

	p := newPublisher(t, Options{BaseURL: srv.URL, Timeout: 200 * time.Millisecond})
	start := time.Now()
	err := p.Publish(context.Background(), "slow", &transport.Message{ID: "m"})
	if err == nil || transport.IsRejected(err) || !strings.Contains(err.Error(), "no response within 200ms (Timeout, of the publisher or its route)") {
		t.Errorf("slow receiver: %v, want a transient timeout naming Options.Timeout", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow receiver: %v does not wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Publish took %v with a 200ms timeout", d)
	}

	p = newPublisher(t, Options{BaseURL: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = p.Publish(ctx, "slow", &transport.Message{ID: "m"})
	if !errors.Is(err, context.DeadlineExceeded) || transport.IsRejected(err) {
		t.Errorf("ctx ended: %v, want the context's error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Publish took %v with a 100ms context", d)
	}
}

func TestPublishUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	p := newPublisher(t, Options{BaseURL: url})
	err := p.Publish(context.Background(), "x", &transport.Message{ID: "m"})
	if err == nil || transport.IsRejected(err) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("unreachable receiver: %v, want a transient connection error", err)
	}
}

func TestPublishErrorsHideQuery(t *testing.T) {
	rec, srv := newReceiver(t)
	rec.reply = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) }
	p := newPublisher(t, Options{})
	err := p.Publish(context.Background(), "http://user:pw@"+strings.TrimPrefix(srv.URL, "http://")+"/x?token=secret", &transport.Message{ID: "m"})
	if err == nil {
		t.Fatal("Publish: nil, want a refusal")
	}
	for _, s := range []string{"token", "secret", "pw"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("%q holds %q from the URL's query or credentials, which do not belong in the outbox's last error", err, s)
		}
	}
}

func TestPublishClose(t *testing.T) {
	rec, srv := newReceiver(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	rec.reply = func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusNoContent)
	}
	p, err := NewPublisher(Options{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	published := make(chan error, 1)
	go func() { published <- p.Publish(context.Background(), "x", &transport.Message{ID: "m"}) }()
	<-entered
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned with a push in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-published; err != nil {
		t.Errorf("the push in flight during Close: %v", err)
	}
	<-closed
	if err := p.Publish(context.Background(), "x", &transport.Message{ID: "m2"}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

func TestNewPublisherOptions(t *testing.T) {
	tests := []struct {
		opts   Options
		reason string
	}{
		{Options{BaseURL: "hooks.example.com"}, "not an absolute http or https URL"},
		{Options{BaseURL: "ftp://x/"}, "not an absolute http or https URL"},
		{Options{BaseURL: "http://x/?a=1"}, "has a query"},
		{Options{Secrets: [][]byte{nil}}, "Secrets[0] is empty"},
		{Options{Timeout: -time.Second}, "Timeout -1s is negative"},
		{Options{Format: 7}, "Format 7 is unknown"},
		{Options{Header: http.Header{"bad name": {"v"}}}, `"bad name" is not a valid HTTP header name`},
		{Options{MaxConnsPerHost: -1}, "MaxConnsPerHost -1 is negative"},
	}
	for _, tt := range tests {
		_, err := NewPublisher(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("NewPublisher(%+v): %v, want an error saying %q", tt.opts, err, tt.reason)
		}
	}
}

func TestPublishConcurrentReusesConnections(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewUnstartedServer(&recorder{})
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns[c.RemoteAddr().String()] = true
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	p := newPublisher(t, Options{BaseURL: srv.URL})
	const workers, each = 32, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if err := p.Publish(context.Background(), "x", &transport.Message{ID: "m", Payload: []byte("p")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(conns) > 2*workers {
		t.Errorf("%d pushes from %d goroutines opened %d connections; they should be kept alive and reused", workers*each, workers, len(conns))
	}
}

// A route's own header, secrets and timeout, on the connections of the
// publisher it came from.
func TestRoute(t *testing.T) {
	rec, srv := newReceiver(t)
	release := make(chan struct{})
	defer close(release)
	rec.reply = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}
	p := newPublisher(t, Options{
		BaseURL: srv.URL,
		Secrets: [][]byte{[]byte("publisher-secret")},
		Header:  http.Header{"Authorization": {"Bearer publisher"}, "X-Team": {"billing"}},
	})
	r, err := p.Route(RouteOptions{
		Header:  http.Header{"authorization": {"Bearer partner"}},
		Secrets: [][]byte{[]byte("partner-secret")},
		Timeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	if err := r.Publish(context.Background(), "partner", m); err != nil {
		t.Fatal(err)
	}
	req, body := rec.last(t)
	if got := req.Header.Get("Authorization"); got != "Bearer partner" {
		t.Errorf("Authorization %q, want the route's", got)
	}
	if got := req.Header.Get("X-Team"); got != "billing" {
		t.Errorf("X-Team %q, want the publisher's, which the route does not set", got)
	}
	sig := req.Header.Get(SignatureHeader)
	if err := Verify(sig, body, [][]byte{[]byte("partner-secret")}, time.Minute, time.Now()); err != nil {
		t.Errorf("the route's push does not verify with the route's secret: %v", err)
	}
	if err := Verify(sig, body, [][]byte{[]byte("publisher-secret")}, time.Minute, time.Now()); err == nil {
		t.Error("the route's push verifies with the publisher's secret, which the route replaces")
	}

	if err := p.Publish(context.Background(), "own", m); err != nil {
		t.Fatal(err)
	}
	req, body = rec.last(t)
	if got := req.Header.Get("Authorization"); got != "Bearer publisher" {
		t.Errorf("the publisher's own push: Authorization %q: a route changed its publisher", got)
	}
	if err := Verify(req.Header.Get(SignatureHeader), body, [][]byte{[]byte("publisher-secret")}, time.Minute, time.Now()); err != nil {
		t.Errorf("the publisher's own push: %v", err)
	}

	if err := r.Publish(context.Background(), "slow", m); err == nil || !strings.Contains(err.Error(), "no response within 100ms") {
		t.Errorf("route with a 100ms timeout, slow receiver: %v", err)
	}

	for _, bad := range []struct {
		o    RouteOptions
		want string
	}{
		{RouteOptions{Header: http.Header{"Bad Name": {"x"}}}, `RouteOptions.Header: "Bad Name" is not a valid HTTP header name`},
		{RouteOptions{Header: http.Header{"Content-Length": {"1"}}}, "framing"},
		{RouteOptions{Secrets: [][]byte{nil}}, "RouteOptions.Secrets[0] is empty"},
		{RouteOptions{Timeout: -time.Second}, "RouteOptions.Timeout -1s is negative"},
	} {
		if _, err := p.Route(bad.o); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Route(%+v): %v, want an error containing %q", bad.o, err, bad.want)
		}
	}
}
