package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// BenchmarkPublish publishes from 256 goroutines, as the relay does, to
// the in-process cluster (which shares the CPU with the publisher).
func BenchmarkPublish(b *testing.B) {
	addr := testCluster(b)
	topic := newTopic(b, 8, nil)
	p := newPublisher(b, addr, nil)
	payload := make([]byte, 200)
	var seq atomic.Int64
	b.SetParallelism(128) // GOMAXPROCS × 128 goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			m := &transport.Message{ID: fmt.Sprint(i), Topic: "bench", Key: fmt.Sprint(i % 10000), Type: "T", Payload: payload, OccurredAt: time.Now(), Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
			if err := p.Publish(context.Background(), topic, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
