package redis

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ferry-dev/ferry/transport"
)

// pubsubSub is a subscription to a Pub/Sub channel. go-redis reads the
// connection in its own goroutine and reconnects (and subscribes again)
// when it breaks; what is published in between is lost.
//
// Redis cannot deliver a Pub/Sub message again, so a nacked message is
// kept in this subscription's memory and delivered again by Next after
// the delay: it survives neither Close nor the process.
type pubsubSub struct {
	parent  *Subscriber
	ps      *goredis.PubSub
	ch      <-chan *goredis.Message
	channel string
	log     *slog.Logger
	done    chan struct{}
	wake    chan struct{} // a nack added a retry
	warn    sync.Once

	mu      sync.Mutex
	closed  bool
	retries []retry // nacked messages, by due time
}

// retry is a nacked Pub/Sub message waiting for its delay.
type retry struct {
	m           transport.Message
	due         time.Time
	redelivered int
}

func (s *Subscriber) subscribePubSub(ctx context.Context, channel string) (*pubsubSub, error) {
	ps := s.client.Subscribe(ctx, channel)
	sub := &pubsubSub{
		parent:  s,
		ps:      ps,
		channel: channel,
		log:     s.log.With("channel", channel),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
	// Wait for Redis to confirm, so that what is published once Subscribe
	// returns reaches this subscription.
	confirmed := false
	for !confirmed {
		msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			sub.log.Warn("redis: subscribed without the server's confirmation; messages published until it is reached are lost", "err", err)
			break
		}
		_, confirmed = msg.(*goredis.Subscription)
	}
	sub.ch = ps.Channel(goredis.WithChannelSize(s.opts.BufferSize))
	return sub, nil
}

// Next returns the next message published to the channel, or a nacked one
// whose delay is over.
func (s *pubsubSub) Next(ctx context.Context) (*transport.Delivery, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, transport.ErrClosed
		}
		var timer *time.Timer
		var due <-chan time.Time
		if len(s.retries) > 0 {
			r := s.retries[0]
			if wait := time.Until(r.due); wait > 0 {
				timer = time.NewTimer(wait)
				due = timer.C
			} else {
				s.retries = slices.Delete(s.retries, 0, 1)
				s.mu.Unlock()
				return s.delivery(r.m, r.redelivered), nil
			}
		}
		s.mu.Unlock()

		select {
		case msg, ok := <-s.ch:
			stopTimer(timer)
			if !ok {
				return nil, transport.ErrClosed
			}
			m, ok := decodeEnvelope(msg.Payload)
			if !ok {
				s.log.Debug("redis: a message on the channel is not in ferry's envelope; delivering it as payload only")
			}
			return s.delivery(m, 0), nil
		case <-due:
		case <-s.wake:
			stopTimer(timer)
		case <-ctx.Done():
			stopTimer(timer)
			return nil, ctx.Err()
		case <-s.done:
			stopTimer(timer)
			return nil, transport.ErrClosed
		}
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func (s *pubsubSub) delivery(m transport.Message, redelivered int) *transport.Delivery {
	return transport.NewDelivery(m, -1, -1, redelivered, &pubsubAcker{sub: s, redelivered: redelivered})
}

// pubsubAcker settles Pub/Sub deliveries, which Redis has forgotten.
type pubsubAcker struct {
	sub         *pubsubSub
	redelivered int
}

// Ack does nothing: Redis forgot the message when it sent it.
func (a *pubsubAcker) Ack(context.Context, *transport.Delivery) error { return nil }

// Nack keeps the message in memory and delivers it again after delay.
func (a *pubsubAcker) Nack(_ context.Context, d *transport.Delivery, delay time.Duration) error {
	s := a.sub
	s.warn.Do(func() {
		s.log.Info("redis: Pub/Sub cannot deliver a message again; nacked messages are kept in this process's memory and lost if the subscription closes or the process stops")
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.log.Warn("redis: a message nacked after Close is lost: Pub/Sub cannot deliver it again", "message_id", d.ID)
		return nil
	}
	r := retry{m: d.Message, due: time.Now().Add(max(delay, 0)), redelivered: a.redelivered + 1}
	i, _ := slices.BinarySearchFunc(s.retries, r.due, func(r retry, t time.Time) int { return r.due.Compare(t) })
	// After the retries due at the same time, so that those keep their
	// order.
	for i < len(s.retries) && !s.retries[i].due.After(r.due) {
		i++
	}
	s.retries = slices.Insert(s.retries, i, r)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close unsubscribes. Nacked messages still waiting are lost (and
// logged): Redis has no way to take them back.
func (s *pubsubSub) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	lost := len(s.retries)
	s.retries = nil
	s.mu.Unlock()
	if lost > 0 {
		s.log.Warn("redis: nacked Pub/Sub messages are lost at Close: Pub/Sub cannot deliver them again", "messages", lost)
	}
	s.parent.forget(s)
	return s.ps.Close()
}
