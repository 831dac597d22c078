package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport"
)

// The headers of request-reply. They are ordinary message headers, which
// every transport carries under their own names (the ferry-* names are
// the transport encoding's own and not available to messages).
const (
	// HeaderReplyTo is the destination a request's reply is published to,
	// in the broker's terms, as a Publisher's dest.
	HeaderReplyTo = "reply-to"
	// HeaderCorrelationID ties a reply to its request. A request carries
	// its own message id unless the requester set another; the reply
	// carries the request's value.
	HeaderCorrelationID = "correlation-id"
	// HeaderReplyError marks a reply as the replier's refusal of the
	// request, with the error's message as its value.
	HeaderReplyError = "reply-error"
)

// RequesterOptions configure a Requester.
type RequesterOptions struct {
	// Publisher sends the requests. Required.
	Publisher transport.Publisher
	// Subscriber reads the replies. Required.
	Subscriber transport.Subscriber
	// ReplyTo is where the repliers publish the replies to this
	// requester's requests, and where it reads them from. Required.
	//
	// Replies must reach the instance that asked, since only it has a
	// caller waiting. Either give each instance a destination of its own
	// ("replies.web-1", with a NATS stream on "replies.>" or a Redis
	// stream per instance), or let the instances share one destination
	// that each reads in a group of its own (see Group), so that each
	// receives every reply and keeps those it waits for: a Kafka topic,
	// an AMQP fanout exchange.
	ReplyTo string
	// Group is the group the requester reads ReplyTo in. Two requesters
	// that read the same ReplyTo in the same group share its replies, and
	// a caller of one times out when its reply goes to the other, so it
	// must be unique to the requester unless ReplyTo is.
	//
	// The default, "requester-<host name>-<process id>", is unique among
	// processes. Brokers that keep a group after its subscription ends (an
	// AMQP queue, a NATS durable consumer, a Redis stream group) keep one
	// per process that ever ran with it, and a queue keeps filling with
	// replies nobody reads; there, name the group after something stable
	// across restarts (a StatefulSet's pod name, a host that runs one
	// requesting process) or remove the old ones.
	Group string
	// Timeout bounds every request, whatever its context allows, so that
	// a lost request or reply does not hold its caller forever. Default
	// 30s.
	Timeout time.Duration
	// Logger receives the requester's logs. Default slog.Default().
	Logger *slog.Logger
}

// Requester sends requests over a broker and waits for their replies:
// request-reply on top of asynchronous messaging. A request is a message
// with a reply-to and a correlation-id header; the replier (see Replying)
// publishes its reply to the reply-to destination with the same
// correlation id, and the requester, which reads that destination,
// hands the reply to the caller waiting for it.
//
// One requester per process serves all its callers; it is safe for
// concurrent use. Delivery is at least once, so a request may be handled
// and answered more than once: the requester keeps the first reply and
// acknowledges and drops the others, as it does with replies that come
// after their caller gave up.
type Requester struct {
	pub     transport.Publisher
	sub     transport.Subscription
	replyTo string
	timeout time.Duration
	log     *slog.Logger

	mu      sync.Mutex
	waiting map[string]chan *transport.Message // by correlation id; buffered, one reply each

	stop      context.CancelFunc // ends the reading of replies
	done      chan struct{}      // closed once reading ended; err says why
	err       error
	closeOnce sync.Once
	closeErr  error
}

// NewRequester subscribes to opts.ReplyTo and returns a requester that
// reads it until Close. ctx bounds the subscribing only.
func NewRequester(ctx context.Context, opts RequesterOptions) (*Requester, error) {
	if opts.Publisher == nil || opts.Subscriber == nil || opts.ReplyTo == "" {
		return nil, errors.New("consume: RequesterOptions need a Publisher, a Subscriber and a ReplyTo destination")
	}
	if opts.Group == "" {
		opts.Group = defaultGroup()
	}
	setDefault(&opts.Timeout, 30*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	sub, err := opts.Subscriber.Subscribe(ctx, opts.ReplyTo, opts.Group)
	if err != nil {
		return nil, fmt.Errorf("consume: requester: subscribe to replies %q as group %q: %w", opts.ReplyTo, opts.Group, err)
	}
	reading, stop := context.WithCancel(context.Background())
	r := &Requester{
		pub:     opts.Publisher,
		sub:     sub,
		replyTo: opts.ReplyTo,
		timeout: opts.Timeout,
		log:     opts.Logger.With("reply_to", opts.ReplyTo, "group", opts.Group),
		waiting: map[string]chan *transport.Message{},
		stop:    stop,
		done:    make(chan struct{}),
	}
	go r.read(reading)
	return r, nil
}

// defaultGroup names a group after the host and process, so that the
// requesters of different processes never share one.
func defaultGroup() string {
	host, _ := os.Hostname()
	// Brokers restrict group names (NATS allows no dots); keep what all
	// of them take.
	host = strings.Map(func(c rune) rune {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			return c
		}
		return '-'
	}, host)
	if host == "" {
		return fmt.Sprintf("requester-%d", os.Getpid())
	}
	return fmt.Sprintf("requester-%s-%d", host, os.Getpid())
}

// Request publishes m to dest as a request and waits for its reply, until
// ctx ends or the requester's Timeout passes. It returns the reply; a
// *RemoteError if the replier refused the request; or an error wrapping
// ctx's error (context.DeadlineExceeded at the timeout) if no reply came
// in time, which does not mean the request was not carried out: the
// replier may still handle it, and its late reply is dropped.
//
// Request sends a copy of m, leaving m as it is: with a new id if m has
// none, Topic dest if m has none, and the reply-to and correlation-id
// headers set. A correlation-id header already in m is kept, and must not
// be that of another request in flight.
func (r *Requester) Request(ctx context.Context, dest string, m *transport.Message) (*transport.Message, error) {
	select {
	case <-r.done:
		// Nobody would read the reply: do not send the request.
		return nil, fmt.Errorf("consume: request to %q: %w", dest, r.err)
	default:
	}
	req := transport.Message{}
	if m != nil {
		req = *m
	}
	req.Headers = make(map[string]string, len(req.Headers)+2)
	if m != nil {
		maps.Copy(req.Headers, m.Headers)
	}
	if req.ID == "" {
		req.ID = ferry.NewID()
	}
	if req.Topic == "" {
		req.Topic = dest
	}
	if req.OccurredAt.IsZero() {
		req.OccurredAt = time.Now().UTC()
	}
	corr := req.Headers[HeaderCorrelationID]
	if corr == "" {
		corr = req.ID
		req.Headers[HeaderCorrelationID] = corr
	}
	req.Headers[HeaderReplyTo] = r.replyTo

	// Register before publishing: the reply can come before Publish returns.
	reply := make(chan *transport.Message, 1)
	r.mu.Lock()
	if _, dup := r.waiting[corr]; dup {
		r.mu.Unlock()
		return nil, fmt.Errorf("consume: request %s to %q: correlation id %q is another request's in flight", req.ID, dest, corr)
	}
	r.waiting[corr] = reply
	r.mu.Unlock()

	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.pub.Publish(ctx, dest, &req); err != nil {
		r.forget(corr)
		return nil, fmt.Errorf("consume: request %s (type %q) to %q: publish: %w", req.ID, req.Type, dest, err)
	}
	select {
	case m := <-reply:
		return outcome(m, &req, dest)
	case <-ctx.Done():
		if !r.forget(corr) { // the reply came meanwhile
			return outcome(<-reply, &req, dest)
		}
		return nil, fmt.Errorf("consume: request %s (type %q) to %q: no reply after %v: %w",
			req.ID, req.Type, dest, time.Since(began).Round(time.Millisecond), ctx.Err())
	case <-r.done:
		if !r.forget(corr) {
			return outcome(<-reply, &req, dest)
		}
		return nil, fmt.Errorf("consume: request %s (type %q) to %q: %w", req.ID, req.Type, dest, r.err)
	}
}

// forget stops waiting for corr's reply. It reports false when the reply
// was handed over already.
func (r *Requester) forget(corr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.waiting[corr]; !ok {
		return false
	}
	delete(r.waiting, corr)
	return true
}

func outcome(reply, req *transport.Message, dest string) (*transport.Message, error) {
	if msg, failed := header(reply.Headers, HeaderReplyError); failed {
		return nil, &RemoteError{RequestID: req.ID, Type: req.Type, Dest: dest, Message: msg}
	}
	return reply, nil
}

// read hands the replies to the callers waiting for them until ctx ends
// or the subscription fails.
func (r *Requester) read(ctx context.Context) {
	defer close(r.done)
	for {
		d, err := r.sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				r.err = fmt.Errorf("consume: requester closed: %w", transport.ErrClosed)
			} else {
				// Transports reconnect behind Next: an error is final.
				r.err = fmt.Errorf("consume: requester: read replies from %q: %w", r.replyTo, err)
				r.log.Error("consume: requester stopped reading replies", "err", err)
			}
			return
		}
		r.deliver(ctx, d)
	}
}

func (r *Requester) deliver(ctx context.Context, d *transport.Delivery) {
	corr, _ := header(d.Headers, HeaderCorrelationID)
	r.mu.Lock()
	waiter, ok := r.waiting[corr]
	delete(r.waiting, corr)
	r.mu.Unlock()
	switch {
	case ok:
		reply := d.Message
		waiter <- &reply
	case corr == "":
		r.log.Warn("consume: requester dropped a message without a correlation id: it is not a reply", "id", d.ID, "type", d.Type)
	default:
		r.log.Debug("consume: requester dropped a reply nobody waits for: it came late, twice, or for another requester reading the same destination",
			"id", d.ID, "correlation_id", corr)
	}
	// The caller has the reply, or nobody wants it: it is done with
	// either way, and a reply given back would only come again.
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.Ack(settle); err != nil {
		r.log.Warn("consume: requester: acknowledge reply", "id", d.ID, "err", err)
	}
}

// Close stops reading replies and ends the requests waiting for one with
// an error wrapping transport.ErrClosed. It closes neither the Publisher
// nor the Subscriber, which may serve others.
func (r *Requester) Close() error {
	r.closeOnce.Do(func() {
		r.stop()
		r.closeErr = r.sub.Close()
	})
	<-r.done
	return r.closeErr
}

// RemoteError is a request the replier refused: its handler failed with a
// permanent error, whose message the reply carries.
type RemoteError struct {
	RequestID string
	Type      string // the request's type
	Dest      string // where the request was sent
	Message   string // the replier's error
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("consume: request %s (type %q) to %q failed: %s", e.RequestID, e.Type, e.Dest, e.Message)
}

// ReplyFunc answers a request. It returns the reply, or an error: one
// wrapped with Permanent is sent to the requester as a RemoteError; any
// other is retried.
type ReplyFunc func(ctx context.Context, m *Message) (*transport.Message, error)

// Replying returns a handler of requests that answers each with f,
// publishing the reply through pub to the request's reply-to destination
// with the request's correlation id. Register it as any handler, usually
// for a command:
//
//	router.Command("GetQuote", consume.Replying(pub, quote))
//
// The reply is published before the handler returns, so the request is
// acknowledged only once its reply is sent: if the replier dies in
// between, the request comes again and is answered again, and the
// requester keeps the first reply. f must therefore be safe to run twice
// for one request, as every handler must be.
//
// What f returns is sent as it is, with its id, topic and time filled in
// if empty and the correlation-id header set (a nil reply is an empty
// one); the request's traceparent is passed on unless the reply has one.
// A permanent error from f is not a failure of the consumer but an
// answer: it is sent as a reply with the reply-error header, which the
// caller gets as a *RemoteError, and the request is acknowledged rather
// than dead-lettered, since the one who asked knows. Any other error is
// retried like any handler's, and after the retry budget the request goes
// to the dead letters and its caller times out.
//
// A request without a reply-to header fails with a permanent error, and
// goes to the dead letters, before f runs: it cannot be answered. So does
// one whose reply the broker refuses (a reply-to destination that does
// not exist, say); other failures to publish the reply are retried.
func Replying(pub transport.Publisher, f ReplyFunc) Handler {
	if pub == nil || f == nil {
		panic("consume: Replying needs a Publisher and a ReplyFunc")
	}
	return HandlerFunc(func(ctx context.Context, m *Message) error {
		replyTo, _ := header(m.Headers, HeaderReplyTo)
		if replyTo == "" {
			return Permanent(fmt.Errorf("consume: request %s (type %q) has no %s header, so it cannot be answered: send it with a Requester, or set the header",
				m.ID, m.Type, HeaderReplyTo))
		}
		reply, err := f(ctx, m)
		if err != nil && !IsPermanent(err) {
			return err
		}
		out := transport.Message{}
		if err == nil && reply != nil {
			out = *reply
		}
		out.Headers = make(map[string]string, len(out.Headers)+2)
		if err == nil && reply != nil {
			maps.Copy(out.Headers, reply.Headers)
		}
		if err != nil {
			msg := err.Error()
			if msg == "" {
				msg = "the replier failed without saying why"
			}
			out.Headers[HeaderReplyError] = msg
		}
		if out.ID == "" {
			out.ID = ferry.NewID()
		}
		if out.Topic == "" {
			out.Topic = replyTo
		}
		if out.OccurredAt.IsZero() {
			out.OccurredAt = time.Now().UTC()
		}
		corr, _ := header(m.Headers, HeaderCorrelationID)
		if corr == "" {
			corr = m.ID
		}
		out.Headers[HeaderCorrelationID] = corr
		if tp, ok := header(m.Headers, transport.TraceParent); ok {
			if _, set := header(out.Headers, transport.TraceParent); !set {
				out.Headers[transport.TraceParent] = tp
			}
		}
		if perr := pub.Publish(ctx, replyTo, &out); perr != nil {
			perr = fmt.Errorf("consume: reply to request %s (type %q): publish to %q: %w", m.ID, m.Type, replyTo, perr)
			if transport.IsRejected(perr) {
				return Permanent(perr)
			}
			return perr
		}
		return nil
	})
}

// header returns the value of the header name, which it looks up without
// regard to case as a fallback, because some transports (HTTP) change the
// case of header names on the way.
func header(h map[string]string, name string) (string, bool) {
	if v, ok := h[name]; ok {
		return v, true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}
