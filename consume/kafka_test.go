package consume_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestRestartRedoesOnlyUnfinished is the case on Kafka: offsets
// 4, 6 and 7 (and the rest) complete while 5 does not; after the consumer
// stops and starts again, only 5 is handled again — the completed offsets
// above the committed one are kept in the commit metadata.
func TestRestartRedoesOnlyUnfinished(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"), kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	pub, err := kafka.NewPublisher(kafka.PublisherOptions{Brokers: brokers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 10 {
		// A key per message: all ten may be handled at once in key order.
		m := &transport.Message{ID: fmt.Sprintf("m%d", i), Key: fmt.Sprintf("k%d", i), Type: "Counted", Payload: []byte{byte(i)}}
		if err := pub.Publish(context.Background(), "orders", m); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var handled []int64
	started5 := make(chan struct{}, 1)
	consumer := func(block5 bool) *consume.Consumer {
		sub, err := kafka.NewSubscriber(kafka.SubscriberOptions{Brokers: brokers, SessionTimeout: 3 * time.Second, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Close() })
		r := consume.NewRouter("billing")
		r.Event("orders", "Counted", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
			if m.Offset == 5 && block5 {
				started5 <- struct{}{}
				<-ctx.Done() // never finishes before the shutdown
				return ctx.Err()
			}
			mu.Lock()
			handled = append(handled, m.Offset)
			mu.Unlock()
			return nil
		}))
		c, err := consume.New(consume.Options{Name: "billing", Subscriber: sub, Handler: r, Shutdown: consume.Immediate, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(handled)
	}

	stop := run(t, consumer(true))
	<-started5
	waitFor(t, "the nine other offsets", func() bool { return count() == 9 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	handled = nil
	mu.Unlock()

	stop = run(t, consumer(false))
	waitFor(t, "offset 5 after the restart", func() bool { return count() >= 1 })
	time.Sleep(time.Second) // anything else redone would show by now
	stop()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(handled, []int64{5}) {
		t.Errorf("after the restart handled offsets %v, want only [5]", handled)
	}
}

// TestKeyOrderOnKafka runs the order checker against the Kafka transport:
// 100,000 messages of 1,000 keys over 4 partitions, failures injected,
// key order kept, each message handled to completion once.
func TestKeyOrderOnKafka(t *testing.T) {
	const n, keys = 100_000, 1_000
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "orders"), kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	pub, err := kafka.NewPublisher(kafka.PublisherOptions{Brokers: brokers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() {
			for i := k; i < n; i += keys { // each key's messages one after another
				m := &transport.Message{ID: fmt.Sprintf("m%07d", i), Key: fmt.Sprintf("k%d", k), Type: "Counted", Payload: []byte(fmt.Sprint(i))}
				if err := pub.Publish(context.Background(), "orders", m); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	sub, err := kafka.NewSubscriber(kafka.SubscriberOptions{Brokers: brokers, SessionTimeout: 3 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	check := newOrderChecker()
	var failures sync.Map
	r := consume.NewRouter("billing")
	r.Event("orders", "Counted", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		if m.Offset%97 == 3 && m.Attempt == 1 {
			failures.Store(m.ID, true)
			return fmt.Errorf("injected failure")
		}
		check.handled(m)
		return nil
	}))
	// 8 handlers per partition: parallel beyond the 4 partitions, bounded
	// per partition.
	c, err := consume.New(consume.Options{Name: "billing", Subscriber: sub, Handler: r, Concurrency: 64, MaxPerPartition: 8,
		InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	waitFor(t, "every message handled", func() bool { return check.count() == n })
	injected := 0
	failures.Range(func(any, any) bool { injected++; return true })
	if injected == 0 {
		t.Fatal("no failure was injected; the test proves nothing")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(check.violations) > 0 {
		t.Errorf("out of key order: %v", check.violations)
	}
	for i, e := range check.effects {
		if e != 1 {
			t.Fatalf("message %d handled %d times", i, e)
		}
	}
}
