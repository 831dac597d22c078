package nats

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// BenchmarkPublish publishes 200-byte messages from many goroutines at
// once, as the relay does (-cpu sets GOMAXPROCS; SetParallelism multiplies
// it to 64 callers per proc).
func BenchmarkPublish(b *testing.B) {
	s := newStream(b)
	p, err := NewPublisher(testURL(testAddr), PublisherOptions{ConnOptions: testConn()})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	payload := make([]byte, 200)
	run := time.Now().UnixNano()
	b.SetParallelism(64)
	var id int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			n := atomicAdd(&id)
			m := &transport.Message{ID: fmt.Sprintf("%d-%d", run, n), Topic: "bench", Key: fmt.Sprint(n % 1000), Type: "T", Payload: payload, OccurredAt: time.Now()}
			if err := p.Publish(ctx, s.subject, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func atomicAdd(p *int64) int64 { return atomic.AddInt64(p, 1) }
