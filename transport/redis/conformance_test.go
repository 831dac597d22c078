package redis_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/redis"
	"github.com/ferry-dev/ferry/transport/transporttest"
)

// testAddr is the Redis server the tests use (scripts/services.sh redis).
const testAddr = "127.0.0.1:6379"

// Short timings, so that the tests see redelivery in seconds.
const (
	testClaimIdle = time.Second
	testBlock     = 200 * time.Millisecond
)

// rejectLimit is the MaxMessageBytes of the tests' publishers: the
// conformance suite's refused message is larger.
const rejectLimit = 64 << 10

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() && os.Getenv("REDIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// rawClient returns a plain go-redis client to check what ferry wrote and
// to clean up.
func rawClient(t *testing.T) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: testAddr})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is not reachable at %s (start it with: bash scripts/services.sh redis): %v", testAddr, err)
	}
	return c
}

// newKey returns a key no other test uses, deleted when the test ends.
func newKey(t *testing.T) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	key := "ferry-test:" + name + ":" + hex.EncodeToString(b[:])
	c := rawClient(t)
	t.Cleanup(func() { c.Del(context.Background(), key) })
	return key
}

func newPublisher(t *testing.T, opts redis.PublisherOptions) *redis.Publisher {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = testAddr
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	p, err := redis.NewPublisher(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newSubscriber(t *testing.T, opts redis.SubscriberOptions) *redis.Subscriber {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = testAddr
	}
	if opts.ClaimIdle == 0 {
		opts.ClaimIdle = testClaimIdle
	}
	if opts.Block == 0 {
		opts.Block = testBlock
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := redis.NewSubscriber(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	rawClient(t) // fail at once, and loudly, when Redis is down
	for _, mode := range []redis.Mode{redis.Streams, redis.PubSub} {
		t.Run(mode.String(), func(t *testing.T) {
			b := transporttest.Broker{
				Name: "redis " + mode.String(),
				Addr: testAddr,
				NewPublisher: func(t *testing.T, addr string) transport.Publisher {
					p, err := redis.NewPublisher(redis.PublisherOptions{
						Addr: addr, Mode: mode, MaxMessageBytes: rejectLimit, Logger: testLogger(t),
					})
					if err != nil {
						t.Fatal(err)
					}
					return p
				},
				NewSubscriber: func(t *testing.T, addr string) transport.Subscriber {
					s, err := redis.NewSubscriber(redis.SubscriberOptions{
						Addr: addr, Mode: mode, ClaimIdle: testClaimIdle, Block: testBlock, Logger: testLogger(t),
					})
					if err != nil {
						t.Fatal(err)
					}
					return s
				},
				NewDest: newKey,
				Ordered: true,
				Reject: func(t *testing.T, dest string) (*transport.Message, string) {
					return &transport.Message{
						ID:      "too-large",
						Topic:   dest,
						Type:    "Huge",
						Payload: bytes.Repeat([]byte("x"), 2*rejectLimit),
					}, "over MaxMessageBytes"
				},
			}
			if mode == redis.Streams {
				b.Groups = true
				b.Persistent = true
				// ClaimIdle, plus the claim interval (ClaimIdle/2) and a
				// read's Block.
				b.Redelivery = 2*testClaimIdle + testBlock
			}
			transporttest.Run(t, b)
		})
	}
}
