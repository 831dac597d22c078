package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ferry-dev/ferry/transport"
)

// Subscriber reads messages from Redis streams through consumer groups, or
// from Pub/Sub channels, as its Mode says.
type Subscriber struct {
	opts   SubscriberOptions
	client *goredis.Client
	log    *slog.Logger

	mu     sync.Mutex
	closed bool
	subs   map[transport.Subscription]struct{}
}

var _ transport.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a subscriber configured by opts. It fails only on
// invalid options: it connects when a subscription first reads, and
// reconnects whenever a connection breaks.
func NewSubscriber(opts SubscriberOptions) (*Subscriber, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	co, err := clientOptions(opts.Addr, opts.TLS)
	if err != nil {
		return nil, err
	}
	if co.PoolSize == 0 {
		// Each stream subscription holds a connection in XREADGROUP
		// BLOCK; acknowledgements and claims need more. go-redis opens
		// connections only as they are needed.
		co.PoolSize = 64
	}
	return &Subscriber{
		opts:   opts,
		client: goredis.NewClient(co),
		log:    opts.Logger.With("transport", "redis", "mode", opts.Mode.String()),
		subs:   make(map[transport.Subscription]struct{}),
	}, nil
}

// Subscribe starts reading source: in Streams mode the stream key source
// as a member of the consumer group named group, which is created (with
// the stream, if needed) at StartID; in PubSub mode the channel source,
// where group is ignored because every subscription receives every
// message.
//
// Subscribe fails on invalid names, and in Streams mode when source holds
// something other than a stream. When Redis cannot be reached it does not
// fail: the subscription connects behind Next. A Pub/Sub subscription
// receives the messages published once Subscribe returned (when Redis
// could be reached); those published before, or while it is disconnected,
// are lost.
func (s *Subscriber) Subscribe(ctx context.Context, source, group string) (transport.Subscription, error) {
	if err := checkName("source", source); err != nil {
		return nil, err
	}
	var (
		sub transport.Subscription
		err error
	)
	if s.opts.Mode == PubSub {
		sub, err = s.subscribePubSub(ctx, source)
	} else {
		if err := checkName("group", group); err != nil {
			return nil, err
		}
		sub, err = s.subscribeStream(ctx, source, group)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		go sub.Close()
		return nil, transport.ErrClosed
	}
	s.subs[sub] = struct{}{}
	return sub, nil
}

// forget drops a closed subscription from those Close closes.
func (s *Subscriber) forget(sub transport.Subscription) {
	s.mu.Lock()
	delete(s.subs, sub)
	s.mu.Unlock()
}

// Close closes the subscriptions still open, which gives their
// unacknowledged stream entries back to their groups, and then the
// connections.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := make([]transport.Subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Go(func() { sub.Close() })
	}
	wg.Wait()
	return s.client.Close()
}

// consumerName returns a consumer name no other subscription uses:
// host-pid-random, so an operator looking at XINFO CONSUMERS can tell
// which process holds which entries.
func consumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "ferry"
	}
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// backoff is the wait between attempts while Redis cannot be reached.
type backoff struct{ d time.Duration }

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

// next returns how long to wait before the next attempt.
func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = backoffMin
	} else {
		b.d = min(2*b.d, backoffMax)
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
