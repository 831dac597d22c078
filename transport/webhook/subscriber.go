package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport"
)

// DefaultAckTimeout bounds how long a push waits for its Ack when
// SubscriberOptions.AckTimeout is zero: a little under the publisher's
// DefaultTimeout, so that a slow consumer makes the sender see a 503 with
// a reason rather than a timeout of its own.
const DefaultAckTimeout = 9 * time.Second

// SubscriberOptions configures a Subscriber.
type SubscriberOptions struct {
	// Secrets verify the Ferry-Signature of every push: it is accepted
	// when it was signed with any of them, so during a rotation the
	// receiver lists the new and the old secret. Required unless
	// Unsigned.
	Secrets [][]byte
	// Unsigned accepts pushes without checking any signature. Use it only
	// when something in front of the subscriber authenticates senders.
	Unsigned bool
	// Tolerance is how far the signature's timestamp may be from the
	// receiver's clock, which bounds how long a recorded push could be
	// replayed. Default 5 minutes (DefaultTolerance); negative disables
	// the check.
	Tolerance time.Duration
	// MaxBody is the largest request body accepted, in bytes; a larger
	// push is answered 413, which the publisher reports as a refusal.
	// Default 1 MiB, the outbox's default payload limit: raise both
	// together.
	MaxBody int64
	// AckTimeout bounds how long a push waits for a subscription to take
	// it and acknowledge it before it is answered 503 (so the sender
	// retries it). Default 9s (DefaultAckTimeout).
	AckTimeout time.Duration
	// Logger receives the subscriber's diagnostics, such as refused
	// signatures. Default: slog.Default().
	Logger *slog.Logger
}

// Subscriber is the receiving end of webhook pushes: an http.Handler that
// turns each signed POST into a transport.Delivery for the subscription
// of the request's path, and answers the sender with the consumer's
// verdict (204 for an Ack, 503 for a Nack). It implements
// transport.Subscriber.
//
// Mount it in a server of your own (http.Handle("/hooks/", http.StripPrefix("/hooks", sub)))
// or let it serve one with Serve or ListenAndServe. A server of your own
// must leave a push time for its Ack: no WriteTimeout or ReadTimeout
// shorter than AckTimeout. Its methods are safe for concurrent use.
type Subscriber struct {
	opts SubscriberOptions
	log  *slog.Logger

	mu      sync.Mutex
	routes  map[string]*route
	known   map[string]bool // paths that had a subscription
	subs    map[*subscription]struct{}
	servers map[*http.Server]struct{}
	closed  bool
	done    chan struct{} // closed by Close
}

var (
	_ transport.Subscriber = (*Subscriber)(nil)
	_ http.Handler         = (*Subscriber)(nil)
)

// route is the subscriptions of one path.
type route struct {
	pushes chan *push    // unbuffered: a push goes to whichever subscription asks first
	gone   chan struct{} // closed when the last subscription of the path closes
	subs   int
}

// NewSubscriber returns a subscriber with opts. It fails only on invalid
// options.
func NewSubscriber(opts SubscriberOptions) (*Subscriber, error) {
	if len(opts.Secrets) == 0 && !opts.Unsigned {
		return nil, errors.New("webhook: SubscriberOptions.Secrets is empty: give the secrets the publishers sign with, or set Unsigned if something else authenticates them")
	}
	for i, s := range opts.Secrets {
		if len(s) == 0 {
			return nil, fmt.Errorf("webhook: SubscriberOptions.Secrets[%d] is empty", i)
		}
	}
	if opts.MaxBody < 0 {
		return nil, fmt.Errorf("webhook: SubscriberOptions.MaxBody %d is negative", opts.MaxBody)
	}
	if opts.AckTimeout < 0 {
		return nil, fmt.Errorf("webhook: SubscriberOptions.AckTimeout %v is negative", opts.AckTimeout)
	}
	if opts.Tolerance == 0 {
		opts.Tolerance = DefaultTolerance
	}
	if opts.MaxBody == 0 {
		opts.MaxBody = ferry.DefaultMaxPayload
	}
	if opts.AckTimeout == 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Subscriber{
		opts:    opts,
		log:     log,
		routes:  make(map[string]*route),
		known:   make(map[string]bool),
		subs:    make(map[*subscription]struct{}),
		servers: make(map[*http.Server]struct{}),
		done:    make(chan struct{}),
	}, nil
}

// Subscribe returns a subscription to the pushes whose request path is
// source. source may be the path ("/orders", or "orders" for the same) or
// the full URL the publisher posts to, whose path is taken. Several
// subscriptions of one path share its pushes: each push goes to one of
// them, whatever their group, because a push is one HTTP request with one
// answer. group is therefore ignored; to have every message reach two
// consumers, route it to two URLs.
//
// Subscribe before serving, or a push that arrives first finds no
// subscription and is answered 404, which the publisher takes for a
// refusal.
func (s *Subscriber) Subscribe(ctx context.Context, source, group string) (transport.Subscription, error) {
	path, err := sourcePath(source)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, transport.ErrClosed
	}
	rt := s.routes[path]
	if rt == nil {
		rt = &route{pushes: make(chan *push), gone: make(chan struct{})}
		s.routes[path] = rt
	}
	rt.subs++
	sn := &subscription{s: s, path: path, rt: rt, held: make(map[*push]struct{}), done: make(chan struct{})}
	s.subs[sn] = struct{}{}
	return sn, nil
}

// sourcePath returns the request path of a subscription to source.
func sourcePath(source string) (string, error) {
	if source == "" {
		return "", errors.New("webhook: Subscribe: the source is empty: give the path pushes arrive at")
	}
	u, err := url.Parse(source)
	if err != nil {
		return "", fmt.Errorf("webhook: Subscribe: source %q is not a path or URL: %v", source, err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("webhook: Subscribe: source %q has a query or fragment; pushes are matched by path only", source)
	}
	path := u.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return path, nil
}

// ServeHTTP receives one push. The answers: 204 once the consumer
// acknowledged it; 503 (with Retry-After) when it was nacked, not
// acknowledged within AckTimeout, or its subscription closed; 401 for a
// missing, wrong or stale signature; 404 when no subscription has the
// path (503 if it had one, which may come back); 405 for a method other
// than POST; 413 for a body over MaxBody.
func (s *Subscriber) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, "webhook pushes are POST requests")
		return
	}
	if r.ContentLength > s.opts.MaxBody {
		answer(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("push body of %d bytes is over the receiver's limit of %d bytes", r.ContentLength, s.opts.MaxBody))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			answer(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("push body is over the receiver's limit of %d bytes", s.opts.MaxBody))
			return
		}
		answer(w, http.StatusBadRequest, "reading the push body: "+err.Error())
		return
	}
	if !s.opts.Unsigned {
		if err := Verify(r.Header.Get(SignatureHeader), body, s.opts.Secrets, s.opts.Tolerance, time.Now()); err != nil {
			s.log.Warn("webhook: push refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			answer(w, http.StatusUnauthorized, err.Error())
			return
		}
	}

	s.mu.Lock()
	closed, rt, known := s.closed, s.routes[r.URL.Path], s.known[r.URL.Path]
	s.mu.Unlock()
	switch {
	case closed:
		answer(w, http.StatusServiceUnavailable, "the receiver is shutting down")
		return
	case rt == nil && known:
		// Between a consumer's subscriptions, as when it restarts one:
		// the sender should retry, not give the message up.
		answer(w, http.StatusServiceUnavailable, fmt.Sprintf("no subscription of path %q is open at the moment", r.URL.Path))
		return
	case rt == nil:
		answer(w, http.StatusNotFound, fmt.Sprintf("no subscription for path %q", r.URL.Path))
		return
	}

	p := &push{result: make(chan outcome, 1)}
	p.d = transport.NewDelivery(decode(r.Header, body), -1, -1, 0, p)

	timer := time.NewTimer(s.opts.AckTimeout)
	defer timer.Stop()
	select {
	case rt.pushes <- p:
	case <-timer.C:
		answer(w, http.StatusServiceUnavailable, fmt.Sprintf("no consumer took the message within %v", s.opts.AckTimeout))
		return
	case <-rt.gone:
		answer(w, http.StatusServiceUnavailable, "the subscription closed")
		return
	case <-s.done:
		answer(w, http.StatusServiceUnavailable, "the receiver is shutting down")
		return
	case <-r.Context().Done():
		return // the sender gave up; nobody to answer
	}
	select {
	case o := <-p.result:
		respond(w, o)
	case <-timer.C:
		if p.abandon() {
			answer(w, http.StatusServiceUnavailable, fmt.Sprintf("the consumer did not acknowledge the message within %v", s.opts.AckTimeout))
			return
		}
		respond(w, <-p.result)
	case <-r.Context().Done():
		p.abandon()
	}
}

func respond(w http.ResponseWriter, o outcome) {
	if o.state == acked {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Retry-After", strconv.FormatInt(int64((o.delay+time.Second-1)/time.Second), 10))
	answer(w, http.StatusServiceUnavailable, o.why)
}

// answer writes a short plain-text reason, which the publisher puts in its
// error.
func answer(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, reason)
}

// decode builds the message a push carries: its fields from the Ferry-*
// or ce-* headers, the other headers as the message's (lower-cased, the
// headers of the HTTP exchange itself left out) and body as payload.
func decode(h http.Header, body []byte) transport.Message {
	m := transport.Decode(cePrefix, func(yield func(name, value string) bool) {
		for name, values := range h {
			lower := strings.ToLower(name)
			if hop[lower] || framing[lower] {
				continue
			}
			if strings.HasPrefix(lower, "ferry-") && !ferryField[lower] {
				continue // reserved for ferry; not a message header
			}
			value := strings.Join(values, ", ")
			if strings.HasPrefix(lower, cePrefix) {
				value = ceDecode(value)
			}
			if !yield(lower, value) {
				return
			}
		}
	})
	if v, ok := m.Headers[strings.ToLower(idempotencyKey)]; ok && v == m.ID {
		delete(m.Headers, strings.ToLower(idempotencyKey))
	}
	if len(body) > 0 {
		m.Payload = body
	}
	return m
}

var ferryField = map[string]bool{
	transport.HeaderID: true, transport.HeaderTopic: true, transport.HeaderKey: true,
	transport.HeaderType: true, transport.HeaderOccurredAt: true,
}

// Serve accepts connections on ln and serves pushes on them until Close,
// after which it returns http.ErrServerClosed.
func (s *Subscriber) Serve(ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// Leaves time for a large body on a slow link, and for the
		// consumer's Ack, within which the connection must not be cut.
		ReadTimeout: time.Minute + s.opts.AckTimeout,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.servers[srv] = struct{}{}
	s.mu.Unlock()
	return srv.Serve(ln)
}

// ListenAndServe listens on the TCP address addr and serves pushes until
// Close, after which it returns http.ErrServerClosed.
func (s *Subscriber) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return s.Serve(ln)
}

// Close closes every subscription, which answers 503 to the pushes not
// yet acknowledged so that their senders retry them, and shuts down the
// servers started by Serve.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	servers := s.servers
	s.servers = nil
	var subs []*subscription
	for sn := range s.subs {
		subs = append(subs, sn)
	}
	s.mu.Unlock()

	// The subscriptions give their pushes back, so the handlers return at
	// once and shutting down does not wait for long.
	for _, sn := range subs {
		sn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("webhook: shutting down the server: %w", err))
			srv.Close()
		}
	}
	return errors.Join(errs...)
}

// subscription is one Subscribe's stream of the pushes of a path.
type subscription struct {
	s    *Subscriber
	path string
	rt   *route

	mu     sync.Mutex
	held   map[*push]struct{} // handed out by Next, not yet settled
	closed bool
	done   chan struct{}
}

// Next returns the next push to the subscription's path. Its Delivery has
// Partition and Offset -1 and Redelivered 0: the sender's retries are new
// requests, which the receiver cannot tell from first attempts.
func (sn *subscription) Next(ctx context.Context) (*transport.Delivery, error) {
	select {
	case p := <-sn.rt.pushes:
		sn.mu.Lock()
		if sn.closed {
			sn.mu.Unlock()
			p.settle(outcome{state: nacked, why: "the subscription closed"})
			return nil, transport.ErrClosed
		}
		p.sub = sn
		sn.held[p] = struct{}{}
		sn.mu.Unlock()
		return p.d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-sn.done:
		return nil, transport.ErrClosed
	}
}

// Close answers 503 to the pushes handed out and not yet acknowledged, so
// that their senders retry them, and stops the subscription.
func (sn *subscription) Close() error {
	sn.mu.Lock()
	if sn.closed {
		sn.mu.Unlock()
		return nil
	}
	sn.closed = true
	close(sn.done)
	held := sn.held
	sn.held = nil
	sn.mu.Unlock()
	for p := range held {
		p.settle(outcome{state: nacked, why: "the subscription closed before the message was acknowledged"})
	}

	s := sn.s
	s.mu.Lock()
	delete(s.subs, sn)
	sn.rt.subs--
	if sn.rt.subs == 0 {
		if s.routes[sn.path] == sn.rt {
			delete(s.routes, sn.path)
			s.known[sn.path] = true
		}
		close(sn.rt.gone)
	}
	s.mu.Unlock()
	return nil
}

func (sn *subscription) forget(p *push) {
	sn.mu.Lock()
	delete(sn.held, p)
	sn.mu.Unlock()
}

// The states of a push.
const (
	pending int32 = iota
	acked
	nacked
	abandoned // the handler answered or the sender left without a verdict
)

type outcome struct {
	state int32 // acked or nacked
	delay time.Duration
	why   string
}

// push is one request waiting for its verdict; it is its delivery's Acker.
type push struct {
	d      *transport.Delivery
	state  atomic.Int32
	result chan outcome // buffered: settle never blocks
	sub    *subscription
}

// settle records o as the push's verdict if it has none yet. A push whose
// sender is gone or already answered has nothing more to settle: the
// sender pushes the message again, so settling it is not an error.
// Settling it the other way than before is.
func (p *push) settle(o outcome) error {
	if p.state.CompareAndSwap(pending, o.state) {
		p.result <- o
		return nil
	}
	switch st := p.state.Load(); st {
	case abandoned, o.state:
		return nil
	case acked:
		return fmt.Errorf("webhook: message %s was already acknowledged", p.d.ID)
	default:
		return fmt.Errorf("webhook: message %s was already nacked", p.d.ID)
	}
}

// abandon marks a push that will get no verdict; it reports false if one
// came first.
func (p *push) abandon() bool { return p.state.CompareAndSwap(pending, abandoned) }

// Ack answers the push 204.
func (p *push) Ack(ctx context.Context, d *transport.Delivery) error {
	err := p.settle(outcome{state: acked})
	p.release()
	return err
}

// Nack answers the push 503 with a Retry-After of delay, rounded up to
// whole seconds.
func (p *push) Nack(ctx context.Context, d *transport.Delivery, delay time.Duration) error {
	err := p.settle(outcome{state: nacked, delay: max(delay, 0), why: "the consumer gave the message back"})
	p.release()
	return err
}

func (p *push) release() {
	if p.sub != nil {
		p.sub.forget(p)
	}
}
