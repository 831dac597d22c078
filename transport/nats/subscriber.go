package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// closeTimeout bounds how long closing a subscription spends giving back
// the messages it had buffered; those it could not give back return after
// AckWait.
const closeTimeout = 3 * time.Second

// Subscriber reads JetStream subjects through durable pull consumers. It
// implements transport.Subscriber.
type Subscriber struct {
	nc      *conn
	js      jetstream.JetStream
	o       SubscriberOptions
	streams *streamSetup
	log     *slog.Logger
	stop    context.CancelFunc

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

var _ transport.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a subscriber to the NATS servers at url (one URL
// or a comma-separated list). Like NewPublisher it does not wait for the
// server, and fails only on invalid options.
func NewSubscriber(url string, o SubscriberOptions) (*Subscriber, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("nats: subscriber options: %w", err)
	}
	o = o.withDefaults()
	nc, err := connect(url, o.ConnOptions)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc.Conn)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	log := o.Logger.With("transport", transportName)
	ctx, stop := context.WithCancel(context.Background())
	s := &Subscriber{
		nc:      nc,
		js:      js,
		o:       o,
		streams: newStreamSetup(js, o.Streams, log),
		log:     log,
		stop:    stop,
		subs:    make(map[*subscription]struct{}),
	}
	go s.streams.run(ctx)
	return s, nil
}

// Subscribe reads the subject source (wildcards allowed) as the durable
// consumer named group, on the stream that holds source. The consumer is
// created when it does not exist, with a filter on source, explicit
// acknowledgements and the options' AckWait, MaxAckPending and
// MaxDeliver; a new group starts at the stream's first message.
// Subscriptions of one group share its messages; each group gets all of
// them.
//
// If the server is up, Subscribe sets the consumer up at once and returns
// an error when no stream holds source or group is already a consumer of
// another subject. If the server cannot be reached, the subscription sets
// itself up when it can, behind Next.
func (s *Subscriber) Subscribe(ctx context.Context, source, group string) (transport.Subscription, error) {
	if problem := checkSubject(source, true); problem != "" {
		return nil, fmt.Errorf("nats: subscribe: %s", problem)
	}
	if problem := checkName("group (the durable consumer's)", group); problem != "" {
		return nil, fmt.Errorf("nats: subscribe to %q: %s", source, problem)
	}
	sub := &subscription{
		s:           s,
		source:      source,
		group:       group,
		log:         s.log.With("subject", source, "group", group),
		outstanding: make(map[*acker]struct{}),
	}
	sub.life, sub.end = context.WithCancel(context.Background())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, transport.ErrClosed
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()

	if s.nc.IsConnected() {
		if _, err := sub.iterator(ctx); err != nil {
			var perm *setupError
			if errors.As(err, &perm) || ctx.Err() != nil {
				sub.Close()
				return nil, err
			}
			sub.log.Warn("nats: subscription not set up yet; Next will try again", "err", err)
		}
	}
	return sub, nil
}

// Close closes the subscriptions, giving back the messages they hold, and
// the connection.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	s.stop()
	for _, sub := range subs {
		sub.Close()
	}
	s.nc.Close()
	return nil
}

func (s *Subscriber) forget(sub *subscription) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

// setupError is a subscription that cannot be set up as asked, whatever
// the number of attempts: no stream holds the subject, the group is a
// consumer of another subject, the server refuses the consumer.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// subscription is a durable consumer read through the client's message
// iterator, which pulls batches and keeps pulling across reconnects.
type subscription struct {
	s             *Subscriber
	source, group string
	log           *slog.Logger
	life          context.Context // ends at Close
	end           context.CancelFunc

	mu          sync.Mutex
	iter        jetstream.MessagesContext // nil until set up, and after a failure
	closed      bool
	outstanding map[*acker]struct{} // delivered, not yet settled
}

// Next returns the next message of the subscription. When the server goes
// away it waits for it; when the consumer disappears (deleted, or lost by
// a server that kept it in memory) it creates it again.
func (sub *subscription) Next(ctx context.Context) (*transport.Delivery, error) {
	// Close ends a Next that is waiting, whatever ctx says.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(sub.life, cancel)()
	wait := 100 * time.Millisecond
	for {
		iter, err := sub.iterator(ctx)
		if err != nil {
			if sub.isClosed() {
				return nil, transport.ErrClosed
			}
			var perm *setupError
			if errors.As(err, &perm) || ctx.Err() != nil {
				return nil, err
			}
			sub.log.Warn("nats: subscription not set up; trying again", "err", err, "in", wait)
			if !sleep(ctx, wait) {
				if sub.isClosed() {
					return nil, transport.ErrClosed
				}
				return nil, ctx.Err()
			}
			wait = min(2*wait, 5*time.Second)
			continue
		}
		msg, err := iter.Next(jetstream.NextContext(ctx))
		if err == nil {
			return sub.deliver(msg)
		}
		if sub.isClosed() {
			return nil, transport.ErrClosed
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrNoHeartbeat) {
			// The server did not answer the pull for a while: it may have
			// lost the consumer. Set up again, which creates it if needed.
			sub.log.Warn("nats: no heartbeat from the server; setting the consumer up again")
		} else {
			sub.log.Warn("nats: subscription failed; setting it up again", "err", err)
		}
		sub.reset(iter)
	}
}

// iterator returns the subscription's message iterator, creating the
// consumer and the iterator if there is none.
func (sub *subscription) iterator(ctx context.Context) (jetstream.MessagesContext, error) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed {
		return nil, transport.ErrClosed
	}
	if sub.iter != nil {
		return sub.iter, nil
	}
	cons, err := sub.consumer(ctx)
	if err != nil {
		return nil, err
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(sub.s.o.Batch), jetstream.PullExpiry(sub.s.o.PullExpiry))
	if err != nil {
		return nil, fmt.Errorf("nats: subscribe to %q as %q: %w", sub.source, sub.group, err)
	}
	sub.iter = iter
	return iter, nil
}

// consumer creates or updates the group's durable consumer on the stream
// that holds the subscription's subject.
func (sub *subscription) consumer(ctx context.Context) (jetstream.Consumer, error) {
	s := sub.s
	if err := s.streams.ensure(ctx); err != nil {
		return nil, fmt.Errorf("nats: subscribe to %q: streams not ready: %w", sub.source, s.nc.explain(err))
	}
	name, err := s.js.StreamNameBySubject(ctx, sub.source)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, &setupError{fmt.Errorf("nats: subscribe to %q: no stream matches the subject: add it to a stream's subjects (SubscriberOptions.Streams, or nats stream add/edit)", sub.source)}
	}
	if err != nil {
		return nil, fmt.Errorf("nats: subscribe to %q: find its stream: %w", sub.source, err)
	}
	stream, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("nats: subscribe to %q: stream %q: %w", sub.source, name, err)
	}
	existing, err := stream.Consumer(ctx, sub.group)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return nil, fmt.Errorf("nats: subscribe to %q: consumer %q: %w", sub.source, sub.group, err)
	default:
		if f := existing.CachedInfo().Config.FilterSubject; f != sub.source {
			return nil, &setupError{fmt.Errorf("nats: subscribe to %q: group %q is already a consumer of stream %q for subject %q: choose another group name, or delete the consumer", sub.source, sub.group, name, f)}
		}
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       sub.group,
		FilterSubject: sub.source,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.o.AckWait,
		MaxAckPending: s.o.MaxAckPending,
		MaxDeliver:    s.o.MaxDeliver,
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = -1
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		err = fmt.Errorf("nats: subscribe to %q: create consumer %q on stream %q: %w", sub.source, sub.group, name, err)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			return nil, &setupError{err}
		}
		return nil, err
	}
	return cons, nil
}

// reset drops a failed iterator so that the next call sets up again.
func (sub *subscription) reset(iter jetstream.MessagesContext) {
	iter.Stop()
	sub.mu.Lock()
	if sub.iter == iter {
		sub.iter = nil
	}
	sub.mu.Unlock()
}

func (sub *subscription) deliver(msg jetstream.Msg) (*transport.Delivery, error) {
	a := &acker{sub: sub, msg: msg}
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		msg.Nak()
		return nil, transport.ErrClosed
	}
	sub.outstanding[a] = struct{}{}
	sub.mu.Unlock()

	h := msg.Headers()
	m := transport.Decode(cePrefix, func(yield func(name, value string) bool) {
		for name, values := range h {
			if name == jetstream.MsgIDHeader || len(values) == 0 {
				continue // ferry's own copy of the id, for the stream's deduplication
			}
			if !yield(name, values[0]) {
				return
			}
		}
	})
	m.Payload = msg.Data()
	var (
		offset      int64 = -1
		redelivered int
	)
	if meta, err := msg.Metadata(); err == nil {
		offset = int64(meta.Sequence.Stream)
		redelivered = int(meta.NumDelivered) - 1
	}
	return transport.NewDelivery(m, -1, offset, redelivered, a), nil
}

// isClosed reports whether Close has begun: its first step ends life,
// before it takes mu to set closed, so a Next woken by that must count it.
func (sub *subscription) isClosed() bool {
	if sub.life.Err() != nil {
		return true
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.closed
}

// Close stops pulling and gives back to the server, so that they are
// delivered again at once, the messages the subscription had buffered and
// the deliveries not yet acknowledged.
func (sub *subscription) Close() error {
	sub.end() // first, so that a set-up in progress lets go of mu
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return nil
	}
	sub.closed = true
	iter := sub.iter
	sub.iter = nil
	outstanding := sub.outstanding
	sub.outstanding = nil
	sub.mu.Unlock()
	defer sub.s.forget(sub)

	// Stop pulling first and only then give the messages back: a pull
	// request still open would have the server hand them straight back to
	// this subscription.
	var buffered []jetstream.Msg
	if iter != nil {
		// Drain keeps what was buffered, and what the server sends until
		// it sees the unsubscription, for the Next calls below.
		iter.Drain()
		deadline := time.Now().Add(closeTimeout)
		for left := time.Until(deadline); left > 0; left = time.Until(deadline) {
			msg, err := iter.Next(jetstream.NextMaxWait(left))
			if err != nil {
				break
			}
			buffered = append(buffered, msg)
		}
		iter.Stop()
	}
	// The delay outlasts the pull requests this subscription left at the
	// server: NATS 2.9 delivers a message again twice, or only after
	// AckWait, when it first tries a pull request whose subscriber is
	// gone.
	delay := sub.s.o.PullExpiry + 500*time.Millisecond
	for a := range outstanding {
		a.msg.NakWithDelay(delay)
	}
	for _, msg := range buffered {
		msg.NakWithDelay(delay)
	}
	return nil
}

// acker settles one delivery.
type acker struct {
	sub *subscription
	msg jetstream.Msg
}

func (a *acker) settled() {
	a.sub.mu.Lock()
	delete(a.sub.outstanding, a)
	a.sub.mu.Unlock()
}

// Ack acknowledges the message; with SubscriberOptions.DoubleAck it waits
// for the server to confirm.
func (a *acker) Ack(ctx context.Context, d *transport.Delivery) error {
	var err error
	if a.sub.s.o.DoubleAck {
		err = a.msg.DoubleAck(ctx)
	} else {
		err = a.msg.Ack()
	}
	if err != nil {
		return fmt.Errorf("nats: ack message %s (stream sequence %d): %w", d.ID, d.Offset, err)
	}
	a.settled()
	return nil
}

// Nack asks the server to deliver the message again after delay (at once
// if delay is not positive).
func (a *acker) Nack(ctx context.Context, d *transport.Delivery, delay time.Duration) error {
	var err error
	if delay > 0 {
		err = a.msg.NakWithDelay(delay)
	} else {
		err = a.msg.Nak()
	}
	if err != nil {
		return fmt.Errorf("nats: nack message %s (stream sequence %d): %w", d.ID, d.Offset, err)
	}
	a.settled()
	return nil
}

// sleep waits for d or ctx, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
