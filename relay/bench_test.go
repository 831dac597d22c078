package relay_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/postgres"
)

// BenchmarkBusyProducers has 16 producers commit one message per
// transaction to one lane of a PostgreSQL outbox while a relay delivers
// them to a no-op destination: with the relay polling the busy lane
// (PollAbove 1000) and, as the baseline, with every commit notifying it
// (PollAbove off). commits/s is what the producers managed.
func BenchmarkBusyProducers(b *testing.B) {
	for _, c := range []struct {
		name  string
		above float64
	}{{"polled", 1000}, {"notified", 0}} {
		b.Run(c.name, func(b *testing.B) {
			ts := postgresStore(b)
			ts.db.SetMaxOpenConns(32)
			var delivered atomic.Int64
			startRelay(b, relay.Options{Store: ts.Store.(*postgres.Store), Lanes: []relay.Lane{{Name: "online", Concurrency: 64}},
				PollAbove: c.above,
				Routes: []relay.Route{{Topic: "*", Destination: ferry.DestinationFunc(func(context.Context, *ferry.Record) error {
					delivered.Add(1)
					return nil
				})}}})
			var n atomic.Int64
			b.SetParallelism(8) // 16 producers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					write(b, ts, ferry.Message{ID: fmt.Sprint("m", i), Lane: "online", Topic: "orders", Key: fmt.Sprint("customer-", i%1000)})
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			deadline := time.Now().Add(time.Minute)
			for delivered.Load() < int64(b.N) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := delivered.Load(); got < int64(b.N) {
				b.Fatalf("delivered %d of %d messages", got, b.N)
			}
		})
	}
}
