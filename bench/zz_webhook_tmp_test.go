package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

func TestZZWebhookThroughput(t *testing.T) {
	tg := webhookTarget()
	ctx := context.Background()
	const n = 100000
	msgs := make([]*transport.Message, n)
	payload := make([]byte, 200)
	for i := range msgs {
		msgs[i] = &transport.Message{ID: fmt.Sprintf("id-%d", i), Topic: "bench", Key: fmt.Sprintf("k%d", i%10000), Type: "T", Payload: payload, OccurredAt: time.Now()}
	}
	url, stop, err := tg.start(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for round := 0; round < 3; round++ {
		p, _ := tg.publisher(ctx, url)
		st := time.Now()
		var wg sync.WaitGroup
		ch := make(chan *transport.Message, 1024)
		for range 64 {
			wg.Go(func() {
				for m := range ch {
					if err := p.Publish(ctx, "zz-bench", m); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		for _, m := range msgs {
			ch <- m
		}
		close(ch)
		wg.Wait()
		ferry := time.Since(st)
		p.Close()
		st = time.Now()
		if err := tg.raw(ctx, url, "zz-bench-raw", msgs); err != nil {
			t.Fatal(err)
		}
		raw := time.Since(st)
		t.Logf("ferry publisher (64 goroutines): %.0f msg/s; raw: %.0f msg/s", n/ferry.Seconds(), n/raw.Seconds())
	}
}
