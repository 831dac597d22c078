package relay_test

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
)

// TestConcurrentWritersKeepCommitOrder has several writers per key, each
// transaction taking the next number of its key from a counter row (the
// business row), writing a message with it, and committing; a third of
// the transactions roll back after writing; one transaction stays open
// for a while holding a message. The relay must deliver, per key, the
// committed numbers in increasing order, and nothing rolled back.
func TestConcurrentWritersKeepCommitOrder(t *testing.T) {
	forEachStoreAndPolled(t, func(t *testing.T, ts testStore) {
		ctx := context.Background()
		counters := ts.table + "_counters"
		if _, err := ts.db.Exec(`CREATE TABLE ` + counters + ` (k VARCHAR(50) PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ts.db.Exec(`DROP TABLE ` + counters) })
		const keys, writers, perWriter = 4, 4, 40
		for k := range keys {
			if _, err := ts.db.Exec(`INSERT INTO ` + counters + ` (k, n) VALUES ('k` + strconv.Itoa(k) + `', 0)`); err != nil {
				t.Fatal(err)
			}
		}
		rc := newRecorder()
		startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default", Concurrency: 8}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}, PollAbove: ts.pollAbove})
		outbox := ferry.NewOutbox(ts)
		bump := rebind(ts, `UPDATE `+counters+` SET n = n + 1 WHERE k = ?`)
		read := rebind(ts, `SELECT n FROM `+counters+` WHERE k = ?`)

		// The long transaction writes its message, then stays open while
		// everything else flows. (Not on SQLite: one writer at a time there,
		// so an open write transaction blocks every other writer.)
		var long *sql.Tx
		if ts.Dialect() != "sqlite" {
			var err error
			if long, err = ts.db.BeginTx(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if err := outbox.Write(ctx, long, ferry.Message{ID: "long", Topic: "t", Key: "long-key"}); err != nil {
				t.Fatal(err)
			}
		}

		var mu sync.Mutex
		committed := map[string]int{} // key → highest committed number
		rolledBack := map[string]bool{}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					key := "k" + strconv.Itoa((w+i)%keys)
					tx, err := ts.db.BeginTx(ctx, nil)
					if err != nil {
						t.Error(err)
						return
					}
					// Lock the business row first, as an aggregate update does.
					var n int
					if _, err := tx.Exec(bump, key); err == nil {
						err = tx.QueryRow(read, key).Scan(&n)
					}
					if err == nil {
						err = outbox.Write(ctx, tx, ferry.Message{ID: fmt.Sprintf("%s-%d-w%d-%d", key, n, w, i), Topic: "t", Key: key,
							Payload: []byte(strconv.Itoa(n))})
					}
					if err != nil {
						tx.Rollback()
						if isBusy(err) {
							continue // a lost race on the counter row: nothing was written
						}
						t.Errorf("writer %d: %v", w, err)
						return
					}
					if i%3 == 2 {
						tx.Rollback()
						mu.Lock()
						rolledBack[fmt.Sprintf("%s-%d-w%d-%d", key, n, w, i)] = true
						mu.Unlock()
						continue
					}
					if err := tx.Commit(); err != nil {
						if isBusy(err) {
							continue
						}
						t.Errorf("writer %d: commit: %v", w, err)
						return
					}
					mu.Lock()
					committed[key]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		total := 0
		for _, n := range committed {
			total += n
		}
		waitFor(t, "committed messages", func() bool { return rc.count() >= total })
		if long != nil {
			if err := long.Commit(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the long transaction's message", func() bool { return rc.count() >= total+1 })
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, r := range rc.got {
			if rolledBack[r.ID] {
				t.Errorf("delivered %s, which was rolled back", r.ID)
			}
		}
		for key, got := range rc.byKey {
			if key == "long-key" {
				continue
			}
			prev := 0
			for _, p := range got {
				n, _ := strconv.Atoi(p)
				if n <= prev {
					t.Fatalf("key %s: delivered %s after %d; per key the numbers must rise in commit order (all: %v)", key, p, prev, got)
				}
				prev = n
			}
		}
	})
}

// rebind turns ? placeholders into $n for PostgreSQL.
func rebind(ts testStore, q string) string {
	if ts.Dialect() != "postgres" {
		return q
	}
	out, n := []byte{}, 0
	for i := range len(q) {
		if q[i] == '?' {
			n++
			out = append(out, '$')
			out = strconv.AppendInt(out, int64(n), 10)
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}

// isBusy reports a lock conflict that the database resolved by failing
// one writer (a deadlock victim or SQLite's busy), which a real writer
// retries.
func isBusy(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	for _, m := range []string{"deadlock", "Deadlock", "SQLITE_BUSY", "database is locked", "40001", "40P01"} {
		if contains(s, m) {
			return true
		}
	}
	return false
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestLateCommitBehindCursor: a transaction writes a message of key "a",
// stays open while other transactions commit past it and a rescan pass
// runs, writes a second message of "a", which later ones also pass, and
// commits. Both messages are behind the relay's cursor when they become
// visible, and with a rescan interval of ten minutes no timed pass comes
// for them: the relay must still find them, and deliver them in order.
// On PostgreSQL the commit's notification names a-1's id and the relay
// catches up at once; MariaDB notifies nothing, and probes find them.
func TestLateCommitBehindCursor(t *testing.T) {
	forEachStoreAndPolled(t, func(t *testing.T, ts testStore) {
		if ts.Dialect() == "sqlite" {
			t.Skip("SQLite has one writer at a time: no transaction can commit past an open one")
		}
		ctx := context.Background()
		rc := newRecorder()
		startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default"}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}, RescanInterval: 10 * time.Minute, PollAbove: ts.pollAbove})
		outbox := ferry.NewOutbox(ts)
		write := func(tx *sql.Tx, m ferry.Message) {
			t.Helper()
			m.Topic = "t"
			if tx != nil {
				if err := outbox.Write(ctx, tx, m); err != nil {
					t.Fatal(err)
				}
				return
			}
			tx, err := ts.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := outbox.Write(ctx, tx, m); err != nil {
				tx.Rollback()
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		delivered := func(id string) func() bool {
			return func() bool {
				rc.mu.Lock()
				defer rc.mu.Unlock()
				for _, r := range rc.got {
					if r.ID == id {
						return true
					}
				}
				return false
			}
		}

		late, err := ts.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer late.Rollback()
		write(late, ferry.Message{ID: "a-1", Key: "a", Payload: []byte("1")})
		write(nil, ferry.Message{ID: "b-1", Key: "b"})
		waitFor(t, "b-1", delivered("b-1"))
		// A delayed message falling due makes the relay run a rescan pass,
		// which reads behind a cursor that is past a-1.
		write(nil, ferry.Message{ID: "c-1", Key: "c", DeliverAt: time.Now().Add(300 * time.Millisecond)})
		waitFor(t, "c-1", delivered("c-1"))
		write(late, ferry.Message{ID: "a-2", Key: "a", Payload: []byte("2")})
		write(nil, ferry.Message{ID: "d-1", Key: "d"})
		waitFor(t, "d-1", delivered("d-1"))
		if err := late.Commit(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a-1 and a-2", func() bool { return delivered("a-1")() && delivered("a-2")() })
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if got := rc.byKey["a"]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
			t.Fatalf("key a: delivered payloads %v; want [1 2], in the order the transaction wrote them", got)
		}
	})
}
