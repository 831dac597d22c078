package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferry-dev/ferry/transport"
)

// Publisher publishes messages to RabbitMQ exchanges with publisher
// confirms, persistent delivery and mandatory routing. It implements
// transport.Publisher and transport.Checker and is safe for concurrent
// use.
type Publisher struct {
	opts PublisherOptions
	log  *slog.Logger
	conn *connector
	enc  encoder

	lanes []*lane
	next  atomic.Uint32

	exchanges exchangeCache
	declarer  declarer

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
	stop     chan struct{} // closed at Close: calls waiting for a connection give up
}

// NewPublisher returns a publisher for the broker at url
// ("amqp://user:password@host:5672/vhost"). It connects in the background
// and does not wait for the broker: while it is unreachable, Publish waits
// for it as long as its context allows. It fails only on a malformed URL
// or invalid options.
func NewPublisher(url string, o PublisherOptions) (*Publisher, error) {
	o = o.withDefaults()
	if err := checkURL(url, o.TLS); err != nil {
		return nil, fmt.Errorf("amqp: %w", err)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("amqp: publisher options: %w", err)
	}
	p := &Publisher{
		opts: o,
		log:  o.Logger.With("transport", "amqp"),
		enc: encoder{
			enc: transport.Encoding{Format: o.Format, CEPrefix: CEPrefix, Source: o.Source},
			key: routingKey(o.RoutingKey),
		},
		stop: make(chan struct{}),
	}
	p.declarer.exchanges = o.Exchanges
	p.exchanges.known = make(map[string]bool)
	p.exchanges.checks = make(map[string]*exchangeCheck)
	for range o.Channels {
		p.lanes = append(p.lanes, &lane{sem: make(chan struct{}, 1)})
	}
	p.conn = newConnector(o.ConnOptions.dial(url, p.setup))
	return p, nil
}

// setup declares the configured exchanges on each new connection.
func (p *Publisher) setup(conn *amqp091.Connection) error {
	declared, err := p.declarer.declare(conn)
	for _, name := range declared {
		p.exchanges.add(name)
	}
	return err
}

// Publish publishes m to the exchange dest with the routing key that
// PublisherOptions.RoutingKey makes of m, and returns once the broker has
// confirmed it: routed to every bound queue and, for durable queues,
// written to disk. A message that no queue is bound to take, an exchange
// that does not exist, or a header RabbitMQ cannot carry is refused with a
// *transport.RejectedError. A broker that nacks the message, a connection
// lost before the confirm, or ctx ending gives any other error: the
// message may or may not have been taken, and is published again by the
// relay (consumers deduplicate by message id).
func (p *Publisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	return p.publish(ctx, dest, m, &p.enc)
}

// RouteOptions are the settings a route may give differently from its
// publisher's. Zero fields take the publisher's.
type RouteOptions struct {
	// RoutingKey replaces PublisherOptions.RoutingKey for the route's
	// messages: a template with the same placeholders.
	RoutingKey string
}

// Route returns a publisher for one route: it publishes through p, on
// p's connection and channels, with o's settings in place of p's. Its
// Close does nothing; closing p closes the connection they share.
func (p *Publisher) Route(o RouteOptions) (transport.Publisher, error) {
	r := &routePublisher{p: p, enc: p.enc}
	if o.RoutingKey != "" {
		if err := routingKey(o.RoutingKey).validate(); err != nil {
			return nil, fmt.Errorf("amqp: route options: %w", err)
		}
		r.enc.key = routingKey(o.RoutingKey)
	}
	return r, nil
}

// routePublisher is a Publisher with its own encoder, made by Publisher.Route.
type routePublisher struct {
	p   *Publisher
	enc encoder
}

func (r *routePublisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	return r.p.publish(ctx, dest, m, &r.enc)
}

func (r *routePublisher) Check(ctx context.Context, dest string) error { return r.p.Check(ctx, dest) }

// Close does nothing: the route's publisher owns the connection.
func (r *routePublisher) Close() error { return nil }

// publish is Publish with enc making the publishing.
func (p *Publisher) publish(ctx context.Context, dest string, m *transport.Message, enc *encoder) error {
	if err := checkName("exchange", dest); err != nil {
		return p.rejected(dest, m, err.Error(), "publish to an exchange: give the route a destination of 1 to 255 bytes of UTF-8", nil)
	}
	pub, key, err := enc.publishing(m)
	if err != nil {
		return p.rejected(dest, m, err.Error(), "", nil)
	}
	if !p.begin() {
		return p.errorf(dest, m, "%w", transport.ErrClosed)
	}
	defer p.inflight.Done()

	// A blocked broker stops reading the socket: the message would sit in
	// a write that no context can interrupt. Fail at once; the relay
	// retries with backoff until the alarm clears.
	if reason := p.conn.blockedReason(); reason != "" {
		return p.errorf(dest, m, "the broker blocks publishing (%s): free memory or disk on the broker", reason)
	}
	if err := p.exchanges.ensure(ctx, p, dest); err != nil {
		return p.failed(dest, m, "check the exchange", err)
	}
	cl, err := p.send(ctx, dest, key, pub)
	if err != nil {
		return p.failed(dest, m, "send", err)
	}
	select {
	case <-cl.done:
	case <-ctx.Done():
		return p.errorf(dest, m, "waiting for the broker's confirm: %w", ctx.Err())
	}
	switch {
	case cl.lost != nil:
		if e, ok := brokerError(cl.lost); ok && isAboutExchange(e, dest) {
			return p.refusedByBroker(dest, m, e)
		}
		return p.errorf(dest, m, "the channel closed before the broker confirmed the message (it may have been taken, and comes again when retried): %w", cl.lost)
	case !cl.ack:
		return p.errorf(dest, m, "the broker nacked the message: a queue refused it (a length limit with x-overflow reject-publish) or could not store it")
	case cl.returned != nil:
		r := cl.returned
		return p.rejected(dest, m,
			fmt.Sprintf("unroutable: %s (%d) for routing key %q", r.ReplyText, r.ReplyCode, key),
			fmt.Sprintf("bind a queue to exchange %q with a key matching %q, or give the exchange an alternate-exchange", dest, key), nil)
	}
	return nil
}

// begin registers a call in flight, unless the publisher is closed.
func (p *Publisher) begin() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.inflight.Add(1)
	return true
}

// lane is one confirm channel, reopened when it closes. sem serialises
// publishing on it (the delivery tags must be known in advance) in a way
// that a caller's context can cut short.
type lane struct {
	sem chan struct{}
	s   *session
}

// send publishes on the next lane, round robin, and returns the call
// waiting for the confirm. A message that did not go out because its
// channel had just closed is sent again on a new one.
func (p *Publisher) send(ctx context.Context, exchange, key string, pub amqp091.Publishing) (*call, error) {
	l := p.lanes[int(p.next.Add(1))%len(p.lanes)]
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.stop:
		return nil, transport.ErrClosed
	}
	defer func() { <-l.sem }()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if l.s == nil || !l.s.alive() {
			l.s, err = openSession(ctx, p.conn, p.log)
			if err != nil {
				l.s = nil
				if errors.Is(err, errClosing) {
					return nil, transport.ErrClosed
				}
				return nil, err
			}
		}
		var cl *call
		cl, err = l.s.publish(ctx, exchange, key, pub)
		if err == nil {
			return cl, nil
		}
		if !errors.Is(err, amqp091.ErrClosed) {
			return nil, err
		}
	}
	return nil, err
}

// isAboutExchange reports whether a channel error is the broker's refusal
// of an exchange: missing (404) or not permitted (403).
func isAboutExchange(e *amqp091.Error, exchange string) bool {
	if e.Code != amqp091.NotFound && e.Code != amqp091.AccessRefused {
		return false
	}
	return strings.Contains(e.Reason, "exchange '"+exchange+"'")
}

func (p *Publisher) refusedByBroker(dest string, m *transport.Message, e *amqp091.Error) error {
	p.exchanges.forget(dest)
	if e.Code == amqp091.AccessRefused {
		return p.rejected(dest, m, e.Reason, "grant the user write permission on the exchange (rabbitmqctl set_permissions)", e)
	}
	return p.rejected(dest, m, e.Reason, missingExchangeHint(dest), e)
}

func missingExchangeHint(dest string) string {
	return fmt.Sprintf("declare exchange %q (list it in PublisherOptions.Exchanges, or rabbitmqadmin declare exchange name=%s type=topic durable=true), or route the messages to an exchange that exists", dest, dest)
}

// failed wraps an error of the way to the broker (connecting, checking,
// sending); a broker's refusal of the exchange is a RejectedError.
func (p *Publisher) failed(dest string, m *transport.Message, step string, err error) error {
	var rej *transport.RejectedError
	if errors.As(err, &rej) {
		r := *rej
		r.MessageID = m.ID
		return &r
	}
	if errors.Is(err, transport.ErrClosed) || errors.Is(err, errClosing) {
		return p.errorf(dest, m, "%w", transport.ErrClosed)
	}
	return p.errorf(dest, m, "%s: %w", step, err)
}

// errorf returns a transient error about publishing m to dest.
func (p *Publisher) errorf(dest string, m *transport.Message, format string, args ...any) error {
	return fmt.Errorf("amqp: publish message %s to exchange %q: "+format, append([]any{m.ID, dest}, args...)...)
}

func (p *Publisher) rejected(dest string, m *transport.Message, reason, hint string, err error) error {
	return &transport.RejectedError{Transport: "amqp", Dest: dest, MessageID: m.ID, Reason: reason, Hint: hint, Err: err}
}

// Check reports whether the exchange dest exists, asking the broker with
// a passive declaration on a channel of its own. A missing exchange is a
// *transport.RejectedError; a broker that cannot be reached before ctx
// ends is another error.
func (p *Publisher) Check(ctx context.Context, dest string) error {
	if err := checkName("exchange", dest); err != nil {
		return &transport.RejectedError{Transport: "amqp", Dest: dest, Reason: err.Error()}
	}
	err := p.exchanges.check(ctx, p, dest)
	if err != nil && !transport.IsRejected(err) {
		return fmt.Errorf("amqp: check exchange %q: %w", dest, err)
	}
	return err
}

// Close waits up to CloseTimeout for the confirms of messages in flight,
// then closes the connection. Publish calls after Close return
// transport.ErrClosed.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.stop)
	p.mu.Unlock()
	p.conn.shutdown()

	done := make(chan struct{})
	go func() {
		p.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(p.opts.CloseTimeout):
		p.log.Warn("amqp: closing with messages still waiting for the broker's confirm", "waited", p.opts.CloseTimeout)
	}
	p.conn.close()
	return nil
}

// exchangeCache remembers the exchanges known to exist, so that a message
// to a missing one is refused after a passive declaration on a throwaway
// channel instead of closing a shared confirm channel with 404 (which
// fails every message in flight on it).
type exchangeCache struct {
	mu     sync.Mutex
	known  map[string]bool
	checks map[string]*exchangeCheck // under way, so concurrent callers share one
}

type exchangeCheck struct {
	done chan struct{}
	err  error
}

func (c *exchangeCache) add(name string) {
	c.mu.Lock()
	c.known[name] = true
	c.mu.Unlock()
}

func (c *exchangeCache) forget(name string) {
	c.mu.Lock()
	delete(c.known, name)
	c.mu.Unlock()
}

// ensure returns nil at once for an exchange known to exist, and checks
// the others.
func (c *exchangeCache) ensure(ctx context.Context, p *Publisher, name string) error {
	c.mu.Lock()
	ok := c.known[name]
	c.mu.Unlock()
	if ok {
		return nil
	}
	return c.check(ctx, p, name)
}

// check asks the broker whether the exchange exists. Concurrent checks
// of one exchange share one question, which is asked for as long as the
// publisher is open (the first caller's context does not cut it short
// for the others); each caller waits no longer than its own ctx.
func (c *exchangeCache) check(ctx context.Context, p *Publisher, name string) error {
	c.mu.Lock()
	chk := c.checks[name]
	if chk == nil {
		chk = &exchangeCheck{done: make(chan struct{})}
		c.checks[name] = chk
		go func() {
			chk.err = p.declarePassive(name)
			c.mu.Lock()
			delete(c.checks, name)
			if chk.err == nil {
				c.known[name] = true
			}
			c.mu.Unlock()
			close(chk.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-chk.done:
		return chk.err
	case <-ctx.Done():
		return p.conn.waitError(ctx)
	}
}

func (p *Publisher) declarePassive(name string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := p.conn.do(ctx, func(ch *amqp091.Channel) error {
		// The broker ignores kind and flags in a passive declaration.
		return ch.ExchangeDeclarePassive(name, KindTopic, true, false, false, false, nil)
	})
	if e, ok := brokerError(err); ok && e.Code == amqp091.NotFound {
		return &transport.RejectedError{Transport: "amqp", Dest: name, Reason: e.Reason, Hint: missingExchangeHint(name), Err: e}
	}
	if e, ok := brokerError(err); ok && e.Code == amqp091.AccessRefused {
		return &transport.RejectedError{Transport: "amqp", Dest: name, Reason: e.Reason, Hint: "grant the user permission on the exchange (rabbitmqctl set_permissions)", Err: e}
	}
	if errors.Is(err, context.Canceled) {
		return transport.ErrClosed
	}
	return err
}
