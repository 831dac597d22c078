package amqp

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// A call is one message published on a confirm channel, waiting for the
// broker's verdict.
type call struct {
	exchange, key, id string

	done     chan struct{} // closed once one of the fields below is set
	ack      bool          // the broker confirmed (basic.ack) rather than refused (basic.nack)
	returned *amqp091.Return
	lost     error // the channel closed before the verdict came
}

// returnKey finds the call a basic.return is about. A return carries no
// delivery tag, only what was published.
type returnKey struct{ exchange, key, id string }

// session is one open channel in confirm mode and the calls published on
// it. One goroutine (watch) reads the channel's returns and confirms, in
// the order the broker sent them: RabbitMQ sends the basic.return of an
// unroutable message before its basic.ack, so by the time a confirm is
// read, the return of the same message has been recorded. Waiting on the
// client's DeferredConfirmation instead would race with the return.
type session struct {
	ch  *amqp091.Channel
	log *slog.Logger

	mu       sync.Mutex
	pending  map[uint64]*call
	returned map[returnKey][]*amqp091.Return
	dead     bool
}

// openSession opens a confirm channel on the connector's connection.
func openSession(ctx context.Context, c *connector, log *slog.Logger) (*session, error) {
	ch, err := c.channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("put a channel in confirm mode: %w", err)
	}
	s := &session{
		ch:       ch,
		log:      log,
		pending:  make(map[uint64]*call),
		returned: make(map[returnKey][]*amqp091.Return),
	}
	// The client gives up on a listener that blocks for 5s and drops what
	// it had for it; watch never blocks for long, and the buffers absorb
	// bursts while it takes s.mu.
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 512))
	returns := ch.NotifyReturn(make(chan amqp091.Return, 64))
	closes := ch.NotifyClose(make(chan *amqp091.Error, 1))
	go s.watch(confirms, returns, closes)
	return s, nil
}

func (s *session) watch(confirms <-chan amqp091.Confirmation, returns <-chan amqp091.Return, closes <-chan *amqp091.Error) {
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			s.noteReturn(r)
		case c, ok := <-confirms:
			if !ok {
				// The client closes the confirm listener last, after the
				// close listener has the channel's error (if any).
				s.drainReturns(returns)
				s.fail(<-closes)
				return
			}
			s.drainReturns(returns)
			s.settle(c)
		}
	}
}

// drainReturns records the returns already sent, so that none that came
// before a confirm is missed.
func (s *session) drainReturns(returns <-chan amqp091.Return) {
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			s.noteReturn(r)
		default:
			return
		}
	}
}

func (s *session) noteReturn(r amqp091.Return) {
	k := returnKey{r.Exchange, r.RoutingKey, r.MessageId}
	s.mu.Lock()
	s.returned[k] = append(s.returned[k], &r)
	s.mu.Unlock()
}

func (s *session) settle(c amqp091.Confirmation) {
	s.mu.Lock()
	cl := s.pending[c.DeliveryTag]
	delete(s.pending, c.DeliveryTag)
	if cl != nil {
		k := returnKey{cl.exchange, cl.key, cl.id}
		if rs := s.returned[k]; len(rs) > 0 {
			cl.returned = rs[0]
			if len(rs) == 1 {
				delete(s.returned, k)
			} else {
				s.returned[k] = rs[1:]
			}
		}
	}
	s.mu.Unlock()
	if cl == nil {
		s.log.Warn("amqp: a confirm for a message not published on this channel", "delivery_tag", c.DeliveryTag)
		return
	}
	cl.ack = c.Ack
	close(cl.done)
}

// fail ends the calls still waiting: the channel is closed and their
// verdict will never come.
func (s *session) fail(cause *amqp091.Error) {
	lost := error(amqp091.ErrClosed)
	if cause != nil {
		lost = cause
	}
	s.mu.Lock()
	pending := s.pending
	s.pending = nil
	s.returned = nil
	s.dead = true
	s.mu.Unlock()
	for _, cl := range pending {
		cl.lost = lost
		close(cl.done)
	}
}

func (s *session) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.dead && !s.ch.IsClosed()
}

// publish sends p and returns the call that waits for its confirm. The
// caller serialises calls on one session, which makes the next delivery
// tag known before the message goes out, so the call is registered before
// its confirm can arrive.
func (s *session) publish(ctx context.Context, exchange, key string, p amqp091.Publishing) (*call, error) {
	cl := &call{exchange: exchange, key: key, id: p.MessageId, done: make(chan struct{})}
	tag := s.ch.GetNextPublishSeqNo()
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return nil, amqp091.ErrClosed
	}
	s.pending[tag] = cl
	s.mu.Unlock()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, p)
	if err != nil {
		s.mu.Lock()
		if s.pending != nil {
			delete(s.pending, tag)
		}
		s.mu.Unlock()
		return nil, err
	}
	if dc != nil && dc.DeliveryTag != tag {
		// Only ferry publishes on this channel, one call at a time, so the
		// client's numbering and ours cannot differ; if they ever do, the
		// channel's confirms cannot be trusted to find their calls.
		s.log.Error("amqp: delivery tags out of step; reopening the channel", "want", tag, "got", dc.DeliveryTag)
		s.ch.Close()
	}
	return cl, nil
}
