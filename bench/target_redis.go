package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/redis"
)

// redisTarget publishes to a Redis stream. Raw is go-redis alone: XADD of
// the same entries (the fields ferry writes, see transport/redis), in
// pipelines of rawRedisBatch commands over rawRedisConns connections at
// once, each pipeline waiting for all its replies, which is what Redis
// itself acknowledges.
func redisTarget() brokerTarget {
	return brokerTarget{
		defaultURL: "redis://127.0.0.1:6379/0",
		start: func(_ context.Context, url string) (string, func(), error) {
			return url, func() {}, nil
		},
		prepare: func(ctx context.Context, url, dest string) (func(), error) {
			c, err := redisClient(url)
			if err != nil {
				return nil, err
			}
			defer c.Close()
			// A stream left by an interrupted run would make the raw
			// phase's numbers include its length.
			if err := c.Del(ctx, dest).Err(); err != nil {
				return nil, fmt.Errorf("redis: delete stream %q before the run: %w", dest, err)
			}
			return func() {
				c, err := redisClient(url)
				if err != nil {
					return
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				c.Del(ctx, dest)
			}, nil
		},
		subscriber: func(_ context.Context, url string) (transport.Subscriber, error) {
			return redis.NewSubscriber(redis.SubscriberOptions{Addr: url, Mode: redis.Streams})
		},
		publisher: func(_ context.Context, url string) (transport.Publisher, error) {
			return redis.NewPublisher(redis.PublisherOptions{Addr: url, Mode: redis.Streams})
		},
		raw: rawRedis,
	}
}

const (
	rawRedisBatch = 1000
	rawRedisConns = 4
)

func redisClient(url string) (*goredis.Client, error) {
	if !strings.Contains(url, "://") {
		return goredis.NewClient(&goredis.Options{Addr: url}), nil
	}
	o, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: %q: %w", url, err)
	}
	return goredis.NewClient(o), nil
}

func rawRedis(ctx context.Context, url, dest string, msgs []*transport.Message) error {
	c, err := redisClient(url)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	batches := make(chan []*transport.Message)
	var wg sync.WaitGroup
	for range rawRedisConns {
		wg.Go(func() {
			for batch := range batches {
				pipe := c.Pipeline()
				for _, m := range batch {
					pipe.XAdd(ctx, &goredis.XAddArgs{Stream: dest, Values: rawRedisValues(m)})
				}
				if _, err := pipe.Exec(ctx); err != nil {
					cancel(fmt.Errorf("redis: XADD to %q: %w", dest, err))
					return
				}
			}
		})
	}
feed:
	for batch := range slices.Chunk(msgs, rawRedisBatch) {
		select {
		case batches <- batch:
		case <-ctx.Done():
			break feed
		}
	}
	close(batches)
	wg.Wait()
	return context.Cause(ctx)
}

// rawRedisValues writes m's entry as transport/redis does: the payload,
// the ferry-* fields, and h:<name> for each of the message's headers.
func rawRedisValues(m *transport.Message) []any {
	values := make([]any, 0, 2*(len(m.Headers)+6))
	values = append(values, redis.FieldPayload, m.Payload)
	transport.Encoding{}.Headers(m, func(name, value string) {
		if !strings.HasPrefix(name, "ferry-") {
			name = redis.HeaderPrefix + name
		}
		values = append(values, name, value)
	})
	return values
}
