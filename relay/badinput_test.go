package relay_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/mysql"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// TestBadInput feeds ferry what users get wrong, through the public API,
// and checks what a user would: the error's type (errors.As), that its
// message names the culprit and says what to do, and that nothing is lost
// or written by half.
func TestBadInput(t *testing.T) {
	t.Run("PayloadTooLarge", func(t *testing.T) {
		forEachStore(t, func(t *testing.T, ts testStore) {
			ctx := context.Background()
			biz := businessTable(t, ts)
			outbox := ferry.NewOutbox(ts, ferry.WithMaxPayload(1000))
			tx, err := ts.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.Exec(rebind(ts, `INSERT INTO `+biz+` (id) VALUES (?)`), "order-1"); err != nil {
				t.Fatal(err)
			}
			err = outbox.Write(ctx, tx,
				ferry.Message{ID: "fits", Topic: "orders", Payload: make([]byte, 1000)},
				ferry.Message{ID: "too-big", Topic: "orders", Payload: make([]byte, 1001)})
			var pe *ferry.PayloadTooLargeError
			if !errors.As(err, &pe) {
				t.Fatalf("Write of an oversized payload: %v (%T); want a *ferry.PayloadTooLargeError", err, err)
			}
			if pe.ID != "too-big" || pe.Size != 1001 || pe.Limit != 1000 {
				t.Errorf("PayloadTooLargeError{ID: %q, Size: %d, Limit: %d}; want too-big, 1001, 1000", pe.ID, pe.Size, pe.Limit)
			}
			mentions(t, err, "too-big", "1001", "1000", "MaxPayload")
			// The refusal sent nothing to the database, so the caller's
			// transaction is intact (on PostgreSQL a failed statement would
			// abort it) and commits its other work.
			if _, err := tx.Exec(rebind(ts, `INSERT INTO `+biz+` (id) VALUES (?)`), "order-2"); err != nil {
				t.Fatalf("the transaction is unusable after the refused write: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatalf("commit after the refused write: %v", err)
			}
			if n := countRows(t, ts, biz); n != 2 {
				t.Errorf("the transaction committed %d business rows; want 2", n)
			}
			// Nothing of the refused call is written, not even the message
			// that fitted.
			if got := listIDs(t, ts, "fits", "too-big"); len(got) != 0 {
				t.Errorf("after the refused write the outbox holds %v; want nothing", got)
			}

			// The default limit applies without the option.
			tx, err = ts.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			err = ferry.NewOutbox(ts).Write(ctx, tx, ferry.Message{Topic: "orders", Payload: make([]byte, ferry.DefaultMaxPayload+1)})
			if !errors.As(err, &pe) || pe.Limit != ferry.DefaultMaxPayload || pe.ID == "" {
				t.Errorf("Write over the default limit: %v; want a *ferry.PayloadTooLargeError with limit %d and the generated id", err, ferry.DefaultMaxPayload)
			}
		})
	})

	t.Run("UnknownLane", func(t *testing.T) {
		forEachStore(t, func(t *testing.T, ts testStore) {
			ctx := context.Background()
			biz := businessTable(t, ts)
			outbox := ferry.NewOutbox(ts, ferry.WithLanes("online", "batch"))
			tx, err := ts.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.Exec(rebind(ts, `INSERT INTO `+biz+` (id) VALUES (?)`), "order-1"); err != nil {
				t.Fatal(err)
			}
			err = outbox.Write(ctx, tx,
				ferry.Message{ID: "good", Lane: "online", Topic: "orders"},
				ferry.Message{ID: "typo", Lane: "onlnie", Topic: "orders"})
			var le *ferry.UnknownLaneError
			if !errors.As(err, &le) {
				t.Fatalf("Write to an unknown lane: %v (%T); want a *ferry.UnknownLaneError", err, err)
			}
			if le.ID != "typo" || le.Lane != "onlnie" || strings.Join(le.Known, ",") != "online,batch" {
				t.Errorf("UnknownLaneError{ID: %q, Lane: %q, Known: %v}; want typo, onlnie, [online batch]", le.ID, le.Lane, le.Known)
			}
			mentions(t, err, "typo", `"onlnie"`, "online", "batch", "not configured")
			if err := tx.Commit(); err != nil {
				t.Fatalf("commit after the refused write: %v", err)
			}
			if n := countRows(t, ts, biz); n != 1 {
				t.Errorf("the transaction committed %d business rows; want 1", n)
			}
			if got := listIDs(t, ts, "good", "typo"); len(got) != 0 {
				t.Errorf("after the refused write the outbox holds %v; want nothing", got)
			}
			// A known lane is accepted.
			tx, err = ts.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if err := outbox.Write(ctx, tx, ferry.Message{ID: "good", Lane: "batch", Topic: "orders"}); err != nil {
				t.Fatalf("Write to a configured lane: %v", err)
			}
		})
	})

	t.Run("InvalidMessage", func(t *testing.T) {
		ts := sqliteStore(t)
		tx, err := ts.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		err = ferry.NewOutbox(ts).Write(context.Background(), tx, ferry.Message{ID: "no-topic", Key: "k"})
		var ie *ferry.InvalidMessageError
		if !errors.As(err, &ie) || ie.ID != "no-topic" || ie.Field != "Topic" {
			t.Fatalf("Write without a topic: %v; want a *ferry.InvalidMessageError for field Topic of no-topic", err)
		}
		mentions(t, err, "no-topic", "Topic", "required")
	})

	// TestNoRouteFails checks that an unrouted message becomes FAILED while
	// a routed one flows. Here: it fails at once (retrying cannot add a
	// route), it holds only its own key, its error says what to do, and
	// once the routes are fixed a retry delivers it and then its key's
	// later message, in order.
	t.Run("NoRoute", func(t *testing.T) {
		forEachStore(t, func(t *testing.T, ts testStore) {
			ctx := context.Background()
			rc := newRecorder()
			lanes := []relay.Lane{{Name: ferry.DefaultLane, MaxAttempts: 5}}
			stop := startRelay(t, relay.Options{Store: ts.Store, Lanes: lanes,
				Routes: []relay.Route{{Topic: "orders.*", Destination: rc}}})
			write(t, ts,
				ferry.Message{ID: "pay-1", Topic: "payments", Key: "acct-1", Payload: []byte("pay-1")},
				ferry.Message{ID: "ord-1", Topic: "orders.paid", Key: "acct-1", Payload: []byte("ord-1")},
				ferry.Message{ID: "ord-2", Topic: "orders.placed", Key: "acct-2", Payload: []byte("ord-2")})
			var failed []ferry.Record
			waitFor(t, "the unrouted message to be FAILED", func() bool {
				failed, _ = ts.List(ctx, ferry.Filter{Status: ferry.StatusFailed})
				return len(failed) == 1
			})
			if f := failed[0]; f.ID != "pay-1" || f.Attempts != 1 || f.FailedAt.IsZero() {
				t.Errorf("FAILED message %s after %d attempts (failed at %v); want pay-1 FAILED at its first attempt, not after the retry budget",
					f.ID, f.Attempts, f.FailedAt)
			}
			if !strings.Contains(failed[0].LastError, `"payments"`) || !strings.Contains(failed[0].LastError, "add a route") {
				t.Errorf("stored error %q; want it to name the topic and say to add a route", failed[0].LastError)
			}
			waitFor(t, "the other key's message", func() bool { return rc.count() == 1 })
			time.Sleep(500 * time.Millisecond) // several rescans: the held key must stay held
			if got := listIDs(t, ts, "ord-1"); len(got) != 1 || got[0].Status != ferry.StatusWaiting {
				t.Fatalf("the unrouted message's key went on: ord-1 is %v; want it WAITING behind pay-1 (hold policy)", got)
			}
			stop()

			// The routes are fixed and a person retries the message.
			rc2 := newRecorder()
			startRelay(t, relay.Options{Store: ts.Store, Lanes: lanes,
				Routes: []relay.Route{{Topic: "payments", Destination: rc2}, {Topic: "orders.*", Destination: rc2}}})
			if n, err := ts.Retry(ctx, ferry.Filter{IDs: []string{"pay-1"}}); err != nil || n != 1 {
				t.Fatalf("Retry: %d, %v; want 1 message retried", n, err)
			}
			waitFor(t, "the retried message and its key's next", func() bool {
				rc2.mu.Lock()
				defer rc2.mu.Unlock()
				return len(rc2.byKey["acct-1"]) >= 2
			})
			rc2.mu.Lock()
			defer rc2.mu.Unlock()
			if got := dedupFirst(rc2.byKey["acct-1"]); strings.Join(got, ",") != "pay-1,ord-1" {
				t.Errorf("after the retry key acct-1 delivered %v; want [pay-1 ord-1]", got)
			}
		})
	})

	// A destination that refuses a message for good (ferry.Permanent): the
	// message is FAILED at once with the destination's error, and the
	// others flow.
	t.Run("DestinationRefuses", func(t *testing.T) {
		forEachStore(t, func(t *testing.T, ts testStore) {
			refusal := fmt.Errorf("schema registry: field amount %q is not a number", "12,50")
			rc := newRecorder()
			rc.fail = func(r *ferry.Record) error {
				if r.ID == "bad" {
					return ferry.Permanent(refusal)
				}
				return nil
			}
			startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: ferry.DefaultLane, MaxAttempts: 10}},
				Routes: []relay.Route{{Topic: "*", Destination: rc}}})
			msgs := []ferry.Message{{ID: "bad", Topic: "t", Key: "a"}}
			for i := range 20 {
				msgs = append(msgs, ferry.Message{Topic: "t", Key: fmt.Sprint("b", i%4)})
			}
			write(t, ts, msgs...)
			var failed []ferry.Record
			waitFor(t, "the refused message to be FAILED", func() bool {
				failed, _ = ts.List(context.Background(), ferry.Filter{Status: ferry.StatusFailed})
				return len(failed) == 1
			})
			if f := failed[0]; f.ID != "bad" || f.Attempts != 1 || f.LastError != refusal.Error() {
				t.Errorf("FAILED %s after %d attempts with error %q; want bad after 1 attempt with %q", f.ID, f.Attempts, f.LastError, refusal)
			}
			waitFor(t, "the other messages", func() bool { return rc.count() == 20 })
		})
	})

	t.Run("InvalidTableName", func(t *testing.T) {
		dir := t.TempDir()
		for _, name := range []string{"orders; DROP TABLE users", "1outbox", "my-outbox", "app.outbox", `"outbox"`, strings.Repeat("t", 49)} {
			if err := sqlstore.CheckTable(name); err == nil {
				t.Errorf("CheckTable(%q) accepted it", name)
			}
			opts := sqlstore.Options{Table: name}
			opens := map[string]func() error{
				"postgres": func() error {
					_, err := postgres.Open(context.Background(), testdb.PostgresDSN(t), opts)
					return err
				},
				"mysql": func() error {
					_, err := mysql.Open(context.Background(), testdb.MySQLDSN(t), opts)
					return err
				},
				"sqlite": func() error {
					_, err := sqlite.Open(context.Background(), filepath.Join(dir, "bad.db"), opts)
					return err
				},
				"store.Open": func() error {
					_, err := store.Open(context.Background(), "sqlite:"+filepath.Join(dir, "bad.db"), opts)
					return err
				},
			}
			for what, open := range opens {
				err := open()
				if err == nil {
					t.Errorf("%s with table %q: no error", what, name)
					continue
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) || !strings.Contains(err.Error(), "letters, digits and underscores") {
					t.Errorf("%s with table %q: %q; want it to name the table and say what a name may contain", what, name, err)
				}
			}
		}
		for _, name := range []string{"ferry_outbox", "_x", "Orders2", strings.Repeat("t", 48)} {
			if err := sqlstore.CheckTable(name); err != nil {
				t.Errorf("CheckTable(%q): %v; want it accepted", name, err)
			}
		}
	})

	t.Run("UnreachableDatabase", func(t *testing.T) {
		// Opening names the server and the reason.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := postgres.Open(ctx, "postgres://postgres@"+addr+"/test?sslmode=disable", sqlstore.Options{}); err == nil {
			t.Error("postgres.Open of an unreachable server: no error")
		} else {
			mentions(t, err, addr, "connect")
		}
		if _, err := mysql.Open(ctx, "root@tcp("+addr+")/test", sqlstore.Options{}); err == nil {
			t.Error("mysql.Open of an unreachable server: no error")
		} else {
			mentions(t, err, addr, "connect")
		}
		bad := filepath.Join(t.TempDir(), "no-such-dir", "ferry.db")
		if _, err := sqlite.Open(ctx, bad, sqlstore.Options{}); err == nil {
			t.Error("sqlite.Open in a missing directory: no error")
		} else {
			mentions(t, err, bad)
		}

		// A relay whose database goes away before it starts neither panics
		// nor gives up; it says why in the log and stops cleanly when asked.
		for _, f := range outageFactories {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				db := f.open(t)
				db.proxy.Cut()
				logs := &syncBuffer{}
				r, err := relay.New(relay.Options{Store: db.relayStore, Lanes: []relay.Lane{{Name: ferry.DefaultLane}},
					Routes: []relay.Route{{Topic: "*", Destination: newRecorder()}}, LeaseTTL: time.Second,
					Logger: slog.New(slog.NewTextHandler(logs, nil))})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx) }()
				waitFor(t, "the relay to report the unreachable database", func() bool {
					return strings.Contains(logs.String(), "cannot take shard leases")
				})
				select {
				case err := <-done:
					t.Fatalf("Run returned while the database was unreachable: %v", err)
				default:
				}
				mentions(t, errors.New(logs.String()), db.proxy.Addr())
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("Run after its context ended: %v; want nil", err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("Run did not return within 30s of its context ending")
				}
			})
		}
	})
}

// mentions checks that err's message contains each of words.
func mentions(t *testing.T, err error, words ...string) {
	t.Helper()
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// businessTable creates a table standing for the application's own data,
// written in the same transactions as the outbox.
func businessTable(t *testing.T, ts testStore) string {
	t.Helper()
	name := ts.table + "_biz"
	if _, err := ts.db.Exec(`CREATE TABLE ` + name + ` (id VARCHAR(50) PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.db.Exec(`DROP TABLE ` + name) })
	return name
}

func countRows(t *testing.T, ts testStore, table string) int {
	t.Helper()
	var n int
	if err := ts.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// listIDs returns the stored messages with these ids.
func listIDs(t *testing.T, ts testStore, ids ...string) []ferry.Record {
	t.Helper()
	got, err := ts.List(context.Background(), ferry.Filter{IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
