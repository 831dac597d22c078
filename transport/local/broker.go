package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// Broker is an in-process message broker with the semantics of a durable
// one, minus the durability: destinations hold messages until every group
// that subscribed to them has acknowledged them, groups share their
// messages among their subscriptions, a nacked or abandoned message is
// delivered again. It lets the relay, the consumer runtime and their tests
// run in one process without a broker, and passes the same conformance
// suite as the real ones. Everything is lost when the process exits.
//
// A group starts at the oldest message its destination still holds. A
// destination with no group keeps what is published to it, up to
// MaxBacklog messages; beyond that Publish fails until a group reads, so
// nothing is dropped.
type Broker struct {
	// MaxBacklog bounds the messages a destination holds; 0 means 100,000.
	MaxBacklog int

	mu     sync.Mutex
	dests  map[string]*localDest
	closed bool
}

// NewBroker returns an empty broker.
func NewBroker() *Broker { return &Broker{} }

type localDest struct {
	base    int64                // offset of log[0]
	log     []*transport.Message // messages from offset base on
	groups  map[string]*group
	changed chan struct{} // closed and replaced when something can be delivered
}

type group struct {
	cursor    int64                   // next offset never delivered
	inFlight  map[int64]*Subscription // delivered, not yet settled
	retry     map[int64]time.Time     // nacked or abandoned: due again at
	delivered map[int64]int           // deliveries so far, for Redelivered
}

func (b *Broker) dest(name string) *localDest {
	if b.dests == nil {
		b.dests = make(map[string]*localDest)
	}
	d := b.dests[name]
	if d == nil {
		d = &localDest{groups: map[string]*group{}, changed: make(chan struct{})}
		b.dests[name] = d
	}
	return d
}

// wake tells waiting subscriptions of d to look again. Callers hold b.mu.
func (d *localDest) wake() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// trim drops the messages every group has settled. Callers hold b.mu.
func (d *localDest) trim() {
	if len(d.groups) == 0 {
		return
	}
	low := d.base + int64(len(d.log))
	for _, g := range d.groups {
		low = min(low, g.cursor)
		for off := range g.inFlight {
			low = min(low, off)
		}
		for off := range g.retry {
			low = min(low, off)
		}
	}
	if n := low - d.base; n > 0 {
		clear(d.log[:n])
		d.log = d.log[n:]
		d.base = low
	}
}

func (b *Broker) maxBacklog() int {
	if b.MaxBacklog > 0 {
		return b.MaxBacklog
	}
	return 100_000
}

// Publisher returns a publisher to b.
func (b *Broker) Publisher() transport.Publisher { return &brokerPublisher{b: b} }

type brokerPublisher struct{ b *Broker }

// Publish appends m to dest. It copies nothing: m must not change after.
func (p *brokerPublisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dest == "" {
		return &transport.RejectedError{Transport: "local", MessageID: m.ID, Reason: "the destination name is empty"}
	}
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return transport.ErrClosed
	}
	d := b.dest(dest)
	if len(d.log) >= b.maxBacklog() {
		return fmt.Errorf("local: destination %q holds %d messages, its limit (Broker.MaxBacklog); a subscriber must catch up", dest, len(d.log))
	}
	d.log = append(d.log, m)
	d.wake()
	return nil
}

func (p *brokerPublisher) Close() error { return nil }

// Subscriber returns a subscriber to b. Closing it closes its
// subscriptions, not the broker.
func (b *Broker) Subscriber() transport.Subscriber { return &brokerSubscriber{b: b} }

type brokerSubscriber struct {
	b    *Broker
	mu   sync.Mutex
	subs []*Subscription
}

// Subscribe reads dest in group.
func (s *brokerSubscriber) Subscribe(ctx context.Context, dest, group string) (transport.Subscription, error) {
	if dest == "" || group == "" {
		return nil, errors.New("local: Subscribe needs a destination and a group name")
	}
	b := s.b
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, transport.ErrClosed
	}
	d := b.dest(dest)
	g := d.groups[group]
	if g == nil {
		g = newGroup(d.base)
		d.groups[group] = g
	}
	b.mu.Unlock()
	sub := &Subscription{b: b, d: d, g: g, done: make(chan struct{})}
	s.mu.Lock()
	s.subs = append(s.subs, sub)
	s.mu.Unlock()
	return sub, nil
}

func newGroup(cursor int64) *group {
	return &group{cursor: cursor, inFlight: map[int64]*Subscription{}, retry: map[int64]time.Time{}, delivered: map[int64]int{}}
}

func (s *brokerSubscriber) Close() error {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		sub.Close()
	}
	return nil
}

// Close closes the broker: publishing and subscribing fail with
// transport.ErrClosed, and waiting subscriptions return it.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, d := range b.dests {
		d.wake()
	}
	return nil
}

// Subscription is a stream of one group's messages of one destination.
type Subscription struct {
	b *Broker
	d *localDest
	g *group

	closeOnce sync.Once
	done      chan struct{}
}

// Next returns the group's next message: one that is due again after a
// nack or an abandoned subscription first, otherwise the oldest not yet
// delivered.
func (s *Subscription) Next(ctx context.Context) (*transport.Delivery, error) {
	for {
		s.b.mu.Lock()
		if s.b.closed {
			s.b.mu.Unlock()
			return nil, transport.ErrClosed
		}
		select {
		case <-s.done:
			s.b.mu.Unlock()
			return nil, transport.ErrClosed
		default:
		}
		off, wait, ok := s.pick(time.Now())
		if ok {
			d := s.deliver(off)
			s.b.mu.Unlock()
			return d, nil
		}
		changed := s.d.changed
		s.b.mu.Unlock()

		var timer <-chan time.Time
		if wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, transport.ErrClosed
		case <-changed:
		case <-timer:
		}
	}
}

// pick chooses the offset to deliver, or how long until a retry is due.
// Callers hold b.mu.
func (s *Subscription) pick(now time.Time) (off int64, wait time.Duration, ok bool) {
	best := int64(-1)
	for o, due := range s.g.retry {
		if !due.After(now) {
			if best < 0 || o < best {
				best = o
			}
		} else if w := due.Sub(now); wait == 0 || w < wait {
			wait = w
		}
	}
	if best >= 0 {
		delete(s.g.retry, best)
		return best, 0, true
	}
	if s.g.cursor < s.d.base+int64(len(s.d.log)) {
		off = s.g.cursor
		s.g.cursor++
		return off, 0, true
	}
	return 0, wait, false
}

// deliver hands out the message at off. Callers hold b.mu.
func (s *Subscription) deliver(off int64) *transport.Delivery {
	m := s.d.log[off-s.d.base]
	s.g.inFlight[off] = s
	before := s.g.delivered[off]
	s.g.delivered[off] = before + 1
	return transport.NewDelivery(*m, 0, off, before, s)
}

// Ack settles d; the group will not see it again.
func (s *Subscription) Ack(ctx context.Context, d *transport.Delivery) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.g.inFlight[d.Offset] != s {
		return fmt.Errorf("local: message %s is not held by this subscription (closed, or settled already)", d.ID)
	}
	delete(s.g.inFlight, d.Offset)
	delete(s.g.delivered, d.Offset)
	s.d.trim()
	return nil
}

// Nack gives d back to the group, to be delivered again after delay.
func (s *Subscription) Nack(ctx context.Context, d *transport.Delivery, delay time.Duration) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.g.inFlight[d.Offset] != s {
		return fmt.Errorf("local: message %s is not held by this subscription (closed, or settled already)", d.ID)
	}
	delete(s.g.inFlight, d.Offset)
	s.g.retry[d.Offset] = time.Now().Add(delay)
	s.d.wake()
	return nil
}

// Close ends the subscription; the messages it holds unsettled go back to
// the group at once.
func (s *Subscription) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.b.mu.Lock()
		defer s.b.mu.Unlock()
		now := time.Now()
		for off, holder := range s.g.inFlight {
			if holder == s {
				delete(s.g.inFlight, off)
				s.g.retry[off] = now
			}
		}
		s.d.wake()
	})
	return nil
}
