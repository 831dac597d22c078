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

// Subscriber consumes from RabbitMQ: each group is a durable queue bound
// to the source exchange, read with manual acknowledgements. It
// implements transport.Subscriber.
type Subscriber struct {
	opts SubscriberOptions
	log  *slog.Logger
	conn *connector

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
}

// NewSubscriber returns a subscriber for the broker at url. Like
// NewPublisher it connects in the background and fails only on a
// malformed URL or invalid options.
func NewSubscriber(url string, o SubscriberOptions) (*Subscriber, error) {
	o = o.withDefaults()
	if err := checkURL(url, o.TLS); err != nil {
		return nil, fmt.Errorf("amqp: %w", err)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("amqp: subscriber options: %w", err)
	}
	s := &Subscriber{
		opts: o,
		log:  o.Logger.With("transport", "amqp"),
		subs: make(map[*subscription]struct{}),
	}
	d := &declarer{exchanges: o.Exchanges}
	s.conn = newConnector(o.ConnOptions.dial(url, func(conn *amqp091.Connection) error {
		_, err := d.declare(conn)
		return err
	}))
	return s, nil
}

// Subscribe consumes the exchange source as group: it declares the
// group's durable queue (SubscriberOptions.Queue, "<source>.<group>" by
// default), binds it to the exchange and starts consuming. Subscriptions
// of one group share the queue, so each message goes to one of them;
// each group has its own queue and gets every message routed to it.
//
// The queue gets messages published from the moment it is bound; a
// publisher's messages to an exchange that no queue is bound to yet are
// refused as unroutable. So subscribe before publishing the first time.
//
// When the broker is up, Subscribe returns once the queue is bound, with
// the broker's error if it refuses (a missing exchange, a queue that
// exists with other arguments). When it is down, Subscribe returns a
// subscription that sets itself up behind Next once the broker is back.
func (s *Subscriber) Subscribe(ctx context.Context, source, group string) (transport.Subscription, error) {
	if err := checkName("exchange", source); err != nil {
		return nil, fmt.Errorf("amqp: subscribe: %w: name the exchange to consume", err)
	}
	if group == "" {
		return nil, fmt.Errorf("amqp: subscribe to exchange %q: the group is empty: name one (it names the queue)", source)
	}
	queue := strings.NewReplacer("{source}", source, "{group}", group).Replace(s.opts.Queue)
	if err := checkName("queue", queue); err != nil {
		return nil, fmt.Errorf("amqp: subscribe to exchange %q as group %q: %w: shorten the source or group, or set SubscriberOptions.Queue", source, group, err)
	}
	if strings.HasPrefix(queue, "amq.") {
		return nil, fmt.Errorf("amqp: subscribe to exchange %q as group %q: queue name %q starts with amq., which the broker reserves: set SubscriberOptions.Queue", source, group, queue)
	}
	sn := &subscription{
		sub:    s,
		source: source,
		group:  group,
		queue:  queue,
		closed: make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("amqp: subscribe to exchange %q: %w", source, transport.ErrClosed)
	}
	s.subs[sn] = struct{}{}
	s.mu.Unlock()

	if conn := s.conn.current(ctx); conn != nil {
		if err := sn.setup(ctx, conn); err != nil {
			if refused(err) || ctx.Err() != nil {
				sn.Close()
				return nil, err
			}
			// The connection dropped under the setup: Next tries again.
			s.log.Warn("amqp: subscription not set up yet; retrying behind Next", "queue", queue, "err", err)
		}
	}
	return sn, nil
}

// Close closes every subscription, which gives their unacknowledged
// messages back to the broker, and the connection.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for sn := range subs {
		sn.Close()
	}
	s.conn.close()
	return nil
}

func (s *Subscriber) forget(sn *subscription) {
	s.mu.Lock()
	delete(s.subs, sn)
	s.mu.Unlock()
}

// subscription consumes one queue on a channel of its own, replaced when
// it closes.
type subscription struct {
	sub                  *Subscriber
	source, group, queue string

	closed    chan struct{}
	closeOnce sync.Once

	mu         sync.Mutex // guards ch and deliveries
	ch         *amqp091.Channel
	deliveries <-chan amqp091.Delivery

	nextMu sync.Mutex // one Next at a time
}

// setup opens a channel on conn, declares and binds the queue and starts
// consuming it.
func (sn *subscription) setup(ctx context.Context, conn *amqp091.Connection) error {
	o := sn.sub.opts
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: subscribe to exchange %q: open a channel: %w", sn.source, err)
	}
	res := make(chan error, 1)
	var deliveries <-chan amqp091.Delivery
	go func() {
		res <- func() error {
			if err := ch.Qos(o.Prefetch, 0, false); err != nil {
				return fmt.Errorf("set the prefetch to %d: %w", o.Prefetch, err)
			}
			if _, err := ch.QueueDeclare(sn.queue, true, false, false, false, o.queueArguments()); err != nil {
				if e, ok := brokerError(err); ok && e.Code == amqp091.PreconditionFailed {
					return fmt.Errorf("declare queue %q: %w: the queue exists with other arguments (type, dead-lettering, ...): delete it or make SubscriberOptions match it", sn.queue, err)
				}
				return fmt.Errorf("declare queue %q: %w", sn.queue, err)
			}
			for _, key := range o.BindingKeys {
				if err := ch.QueueBind(sn.queue, key, sn.source, false, o.BindingArguments); err != nil {
					if e, ok := brokerError(err); ok && e.Code == amqp091.NotFound {
						return fmt.Errorf("bind queue %q to exchange %q: %w: declare the exchange (SubscriberOptions.Exchanges lists those to declare)", sn.queue, sn.source, err)
					}
					return fmt.Errorf("bind queue %q to exchange %q with key %q: %w", sn.queue, sn.source, key, err)
				}
			}
			var err error
			deliveries, err = ch.Consume(sn.queue, "", false, false, false, false, nil)
			if err != nil {
				return fmt.Errorf("consume queue %q: %w", sn.queue, err)
			}
			return nil
		}()
	}()
	select {
	case err = <-res:
	case <-ctx.Done():
		ch.Close()
		<-res
		return fmt.Errorf("amqp: subscribe to exchange %q: %w", sn.source, ctx.Err())
	}
	if err != nil {
		if !ch.IsClosed() {
			ch.Close()
		}
		return fmt.Errorf("amqp: subscribe to exchange %q as group %q: %w", sn.source, sn.group, err)
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	select {
	case <-sn.closed:
		ch.Close()
		return transport.ErrClosed
	default:
	}
	sn.ch, sn.deliveries = ch, deliveries
	return nil
}

// Next returns the next delivery. When the channel or the connection
// closes, Next sets the subscription up again, waiting for the broker as
// long as ctx allows; it returns an error when the broker refuses the
// setup (the exchange was deleted, say); a later Next tries again.
func (sn *subscription) Next(ctx context.Context) (*transport.Delivery, error) {
	sn.nextMu.Lock()
	defer sn.nextMu.Unlock()
	delay := sn.sub.opts.MinReconnectDelay
	for {
		select {
		case <-sn.closed:
			return nil, transport.ErrClosed
		default:
		}
		sn.mu.Lock()
		ch, deliveries := sn.ch, sn.deliveries
		sn.mu.Unlock()
		if deliveries == nil {
			err := sn.resetup(ctx)
			switch {
			case err == nil:
				delay = sn.sub.opts.MinReconnectDelay
				continue
			case errors.Is(err, transport.ErrClosed), ctx.Err() != nil:
				return nil, err
			}
			if refused(err) {
				return nil, err
			}
			sn.sub.log.Warn("amqp: subscription setup failed; retrying", "queue", sn.queue, "retry_in", delay, "err", err)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, fmt.Errorf("amqp: next from queue %q: %w (last error: %v)", sn.queue, ctx.Err(), err)
			case <-sn.closed:
				return nil, transport.ErrClosed
			}
			delay = min(2*delay, sn.sub.opts.MaxReconnectDelay)
			continue
		}
		select {
		case d, ok := <-deliveries:
			if !ok {
				// The channel or connection closed, or the broker
				// cancelled the consumer (the queue was deleted). What was
				// not acknowledged goes back to the queue.
				sn.drop(ch)
				continue
			}
			return transport.NewDelivery(decode(&d), -1, -1, redelivered(&d), &acker{sn: sn, ch: ch, tag: d.DeliveryTag}), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sn.closed:
			return nil, transport.ErrClosed
		}
	}
}

// resetup waits for a connection and sets the subscription up on it.
func (sn *subscription) resetup(ctx context.Context) error {
	conn, err := sn.sub.conn.get(ctx)
	if err != nil {
		if errors.Is(err, errClosing) {
			return transport.ErrClosed
		}
		return fmt.Errorf("amqp: next from queue %q: %w", sn.queue, err)
	}
	return sn.setup(ctx, conn)
}

// drop forgets a channel that closed, so that Next sets up a new one.
func (sn *subscription) drop(ch *amqp091.Channel) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.ch == ch {
		sn.ch, sn.deliveries = nil, nil
	}
	if ch != nil && !ch.IsClosed() {
		ch.Close()
	}
}

// Close stops consuming: closing the channel gives every delivery not yet
// acknowledged back to the queue. The queue stays, and keeps the group's
// messages until it subscribes again.
func (sn *subscription) Close() error {
	sn.closeOnce.Do(func() {
		close(sn.closed)
		sn.mu.Lock()
		ch := sn.ch
		sn.ch, sn.deliveries = nil, nil
		sn.mu.Unlock()
		if ch != nil && !ch.IsClosed() {
			ch.Close()
		}
		sn.sub.forget(sn)
	})
	return nil
}

// acker settles one delivery on the channel it came on.
type acker struct {
	sn      *subscription
	ch      *amqp091.Channel
	tag     uint64
	settled atomic.Bool
}

// Ack acknowledges the delivery.
func (a *acker) Ack(ctx context.Context, d *transport.Delivery) error {
	if err := a.begin(ctx, d, "ack"); err != nil {
		return err
	}
	if err := a.ch.Ack(a.tag, false); err != nil {
		return a.failed(d, "ack", err)
	}
	return nil
}

// Nack gives the delivery back to the queue (basic.nack with requeue).
// AMQP has no delayed requeue: with a delay, Nack returns at once and the
// nack is sent when the delay is over; until then the message counts
// against the prefetch. A subscription closed or a connection lost in
// the meantime gives it back sooner.
func (a *acker) Nack(ctx context.Context, d *transport.Delivery, delay time.Duration) error {
	if err := a.begin(ctx, d, "nack"); err != nil {
		return err
	}
	if delay <= 0 {
		if err := a.ch.Nack(a.tag, false, true); err != nil {
			return a.failed(d, "nack", err)
		}
		return nil
	}
	id := d.ID
	time.AfterFunc(delay, func() {
		if err := a.ch.Nack(a.tag, false, true); err != nil && !errors.Is(err, amqp091.ErrClosed) {
			a.sn.sub.log.Warn("amqp: delayed nack failed; the broker gives the message back when the channel closes", "message_id", id, "queue", a.sn.queue, "err", err)
		}
	})
	return nil
}

// begin allows one settlement per delivery: a second ack of a delivery
// tag is a channel error in AMQP, which would close the channel and give
// back every other message in flight on it.
func (a *acker) begin(ctx context.Context, d *transport.Delivery, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("amqp: %s message %s: %w", what, d.ID, err)
	}
	if !a.settled.CompareAndSwap(false, true) {
		return fmt.Errorf("amqp: %s message %s: it was already acknowledged or nacked", what, d.ID)
	}
	return nil
}

func (a *acker) failed(d *transport.Delivery, what string, err error) error {
	if errors.Is(err, amqp091.ErrClosed) {
		select {
		case <-a.sn.closed:
			return fmt.Errorf("amqp: %s message %s: %w (the broker delivers it again)", what, d.ID, transport.ErrClosed)
		default:
		}
		return fmt.Errorf("amqp: %s message %s: the channel it came on has closed (connection lost); the broker delivers it again: %w", what, d.ID, err)
	}
	return fmt.Errorf("amqp: %s message %s: %w", what, d.ID, err)
}
