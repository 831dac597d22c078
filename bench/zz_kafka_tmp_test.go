package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/kafka"
)

func TestTmpKafkaTarget(t *testing.T) {
	ctx := context.Background()
	tg := kafkaTarget()
	url, stop, err := tg.start(ctx, os.Getenv("KAFKA_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	const n = 200_000
	msgs := make([]*transport.Message, n)
	payload := make([]byte, 200)
	for i := range msgs {
		msgs[i] = &transport.Message{ID: fmt.Sprintf("id-%d-%d", time.Now().UnixNano(), i), Topic: "bench", Key: fmt.Sprint(i % 10000), Type: "T", Payload: payload, OccurredAt: time.Now(), Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	}
	for round := 0; round < 2; round++ {
		dest := fmt.Sprintf("raw%d", round)
		cleanup, err := tg.prepare(ctx, url, dest)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := tg.raw(ctx, url, dest, msgs); err != nil {
			t.Fatal(err)
		}
		t.Logf("raw: %.0f msgs/s", n/time.Since(start).Seconds())
		cleanup()

		linger, _ := time.ParseDuration(os.Getenv("LINGER"))
		p, err := kafka.NewPublisher(kafka.PublisherOptions{Brokers: kafka.ParseBrokers(url), Linger: linger})
		if err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{64, 256} {
			dest = fmt.Sprintf("ferry%d-%d", round, workers)
			cleanup, err = tg.prepare(ctx, url, dest)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			start = time.Now()
			for w := range workers {
				wg.Go(func() {
					for i := w; i < n; i += workers {
						if err := p.Publish(ctx, dest, msgs[i]); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			t.Logf("ferry (%d goroutines): %.0f msgs/s", workers, n/time.Since(start).Seconds())
			cleanup()
		}
		p.Close()
	}
}
