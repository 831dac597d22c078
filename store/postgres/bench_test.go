package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// benchMessages returns n messages shaped like a batch producer's: UUIDv7
// ids, keys keys (none if 0), a trace header and a 200-byte JSON payload.
func benchMessages(n, keys int) []ferry.Message {
	payload := []byte(fmt.Sprintf(`{"settlement_id":"%0180d"}`, 42))
	out := make([]ferry.Message, n)
	for i := range out {
		out[i] = ferry.Message{
			ID:      ferry.NewID(),
			Lane:    "batch",
			Topic:   "settlements",
			Key:     keyOf(i, keys),
			Type:    "SettlementCreated",
			Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			Payload: payload,
		}
	}
	return out
}

// keyOf is the key of the i-th of messages with keys keys.
func keyOf(i, keys int) string {
	if keys == 0 {
		return ""
	}
	return fmt.Sprintf("merchant-%d", i%keys)
}

// benchWrite times writing 100,000 messages of 10,000 keys in one
// transaction, begin to commit, on a table that grows by that much each
// iteration.
func benchWrite(b *testing.B, write func(ctx context.Context, s *Store, msgs []ferry.Message) error) {
	benchWriteKeys(b, 10_000, write)
}

// benchWriteKeys is benchWrite with messages of keys keys (0: unkeyed).
func benchWriteKeys(b *testing.B, keys int, write func(ctx context.Context, s *Store, msgs []ferry.Message) error) {
	s := open(b, testdb.PostgresDSN(b), testdb.Table(b))
	const n = 100_000
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		msgs := benchMessages(n, keys)
		b.StartTimer()
		if err := write(context.Background(), s, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
	var stored int
	s.DB.QueryRow(s.Q(`SELECT COUNT(*) FROM {{t}}`)).Scan(&stored)
	if stored != n*b.N {
		b.Fatalf("stored %d messages, want %d", stored, n*b.N)
	}
}

// sqlTx runs f in a database/sql transaction on the store's pool.
func sqlTx(ctx context.Context, s *Store, f func(tx *sql.Tx) error) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// BenchmarkWrite100k is Store.Write: one unnest INSERT per 64 MB.
func BenchmarkWrite100k(b *testing.B) {
	benchWrite(b, func(ctx context.Context, s *Store, msgs []ferry.Message) error {
		return sqlTx(ctx, s, func(tx *sql.Tx) error { return s.Write(ctx, tx, msgs) })
	})
}

// BenchmarkWrite100kSQLStore is the baseline: sqlstore's portable
// multi-row INSERT ... VALUES in chunks of 500 messages.
func BenchmarkWrite100kSQLStore(b *testing.B) {
	benchWrite(b, func(ctx context.Context, s *Store, msgs []ferry.Message) error {
		return sqlTx(ctx, s, func(tx *sql.Tx) error { return s.Store.Write(ctx, tx, msgs) })
	})
}

// BenchmarkWritePgx100k is Store.WritePgx in a transaction on a pgx.Conn.
func BenchmarkWritePgx100k(b *testing.B) {
	conn, err := pgx.Connect(context.Background(), testdb.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	benchWrite(b, func(ctx context.Context, s *Store, msgs []ferry.Message) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return s.WritePgx(ctx, tx, msgs) })
	})
}

// BenchmarkWritePgx100kUnkeyed is BenchmarkWritePgx100k with messages
// without a key, which stay out of the index of keyed messages that
// per-key order needs.
func BenchmarkWritePgx100kUnkeyed(b *testing.B) {
	conn, err := pgx.Connect(context.Background(), testdb.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	benchWriteKeys(b, 0, func(ctx context.Context, s *Store, msgs []ferry.Message) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return s.WritePgx(ctx, tx, msgs) })
	})
}

// BenchmarkNotify writes one message per transaction to an idle
// listener: ns/op is commit plus wake-up, and wake-µs the median time from
// Commit's return to the wake-up (zero when the notification
// arrives before Commit returns).
func BenchmarkNotify(b *testing.B) {
	s := open(b, testdb.PostgresDSN(b), testdb.Table(b))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lanes := make(chan time.Time, 1)
	go s.Listen(ctx, func(string, int64) { lanes <- time.Now() })
	writeOne := func(i int) time.Time {
		err := sqlTx(ctx, s, func(tx *sql.Tx) error {
			return s.Write(ctx, tx, []ferry.Message{{ID: fmt.Sprint("n", i), Lane: "l", Topic: "t"}})
		})
		if err != nil {
			b.Fatal(err)
		}
		return time.Now()
	}
	for i := 0; ; i++ { // wait until LISTEN is in place
		writeOne(-i - 1)
		select {
		case <-lanes:
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		committed := writeOne(i)
		woken := <-lanes
		lat = append(lat, max(0, woken.Sub(committed)))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "wake-µs")
}

// BenchmarkConcurrentCommits has 16 producers commit one message per
// transaction: on the outbox, on the outbox while relays announce that they
// poll the lane (AnnouncePolling), and, as the baseline, on the same table
// without its wake-up trigger. PostgreSQL serializes the commits of
// transactions that NOTIFY, across the server (to queue notifications in
// commit order, it holds a lock from before the commit record is written
// until it is flushed), so concurrent producers cannot share a WAL flush:
// the gap between the first and the last is that cost, which the
// announcement takes off.
func BenchmarkConcurrentCommits(b *testing.B) {
	for _, name := range []string{"outbox", "outbox-polled", "without-trigger"} {
		b.Run(name, func(b *testing.B) {
			s := open(b, testdb.PostgresDSN(b), testdb.Table(b))
			s.DB.SetMaxOpenConns(32)
			switch name {
			case "outbox-polled":
				if _, err := s.AnnouncePolling(context.Background(), "online", time.Hour, false); err != nil {
					b.Fatal(err)
				}
			case "without-trigger":
				if _, err := s.DB.Exec(s.Q(`DROP TRIGGER {{t}}_wake_insert ON {{t}}`)); err != nil {
					b.Fatal(err)
				}
			}
			var n atomic.Int64
			b.SetParallelism(8) // 16 producers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := n.Add(1)
					err := sqlTx(ctx, s, func(tx *sql.Tx) error {
						return s.Write(ctx, tx, []ferry.Message{{ID: fmt.Sprint("c", i), Lane: "online", Topic: "orders", Key: fmt.Sprint("customer-", i%1000)}})
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}
