package relay_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// testStore is a migrated store and its database handle.
type testStore struct {
	ferry.Store
	db *sql.DB
}

type storeFactory struct {
	name string
	open func(t *testing.T) testStore
}

func sqliteStore(t *testing.T) testStore {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ferry.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return testStore{Store: s, db: s.DB}
}

// forEachStore runs f against every database.
func forEachStore(t *testing.T, f func(t *testing.T, ts testStore)) {
	for _, sf := range factories {
		t.Run(sf.name, func(t *testing.T) {
			t.Parallel()
			f(t, sf.open(t))
		})
	}
}

var factories = []storeFactory{{"sqlite", sqliteStore}}

// recorder is a destination that records what it receives.
type recorder struct {
	mu     sync.Mutex
	got    []ferry.Record
	byKey  map[string][]string // payloads per key, in delivery order
	fail   func(r *ferry.Record) error
	active map[string]int // deliveries in flight per lane/key
	overlap int           // times two deliveries of one key overlapped
	notify chan struct{}
}

func newRecorder() *recorder {
	return &recorder{byKey: map[string][]string{}, active: map[string]int{}, notify: make(chan struct{}, 1)}
}

func (rc *recorder) Deliver(ctx context.Context, r *ferry.Record) error {
	k := r.Lane + "/" + r.Key
	rc.mu.Lock()
	if r.Key != "" {
		rc.active[k]++
		if rc.active[k] > 1 {
			rc.overlap++
		}
	}
	fail := rc.fail
	rc.mu.Unlock()
	var err error
	if fail != nil {
		err = fail(r)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.Key != "" {
		rc.active[k]--
	}
	if err == nil {
		rc.got = append(rc.got, *r)
		rc.byKey[r.Key] = append(rc.byKey[r.Key], string(r.Payload))
		select {
		case rc.notify <- struct{}{}:
		default:
		}
	}
	return err
}

func (rc *recorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// waitFor waits until cond holds, failing the test after a generous limit
// (a hang, not a speed check).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger {
	if os.Getenv("FERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startRelay runs a relay until the test ends.
func startRelay(t *testing.T, opts relay.Options) (stop func()) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 2 * time.Second
	}
	if opts.RescanInterval == 0 {
		opts.RescanInterval = 200 * time.Millisecond
	}
	r, err := relay.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay.Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("relay did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// write writes msgs in one transaction.
func write(t *testing.T, ts testStore, msgs ...ferry.Message) {
	t.Helper()
	ctx := context.Background()
	tx, err := ts.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ferry.NewOutbox(ts).Write(ctx, tx, msgs...); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestDeliversInKeyOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		rc := newRecorder()
		const keys, perKey = 20, 30
		startRelay(t, relay.Options{Store: ts, Lanes: []relay.Lane{{Name: "default", Concurrency: 8, BatchSize: 50}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}})
		for i := range perKey {
			var msgs []ferry.Message
			for k := range keys {
				msgs = append(msgs, ferry.Message{Topic: "t", Key: fmt.Sprintf("k%d", k), Payload: []byte(fmt.Sprint(i))})
			}
			write(t, ts, msgs...)
		}
		waitFor(t, "all messages", func() bool { return rc.count() == keys*perKey })
		for k, got := range rc.byKey {
			for i, p := range got {
				if p != fmt.Sprint(i) {
					t.Fatalf("key %s: delivery %d was payload %s; want %d (full order %v)", k, i, p, i, got)
				}
			}
		}
		if rc.overlap > 0 {
			t.Errorf("%d deliveries of one key overlapped; want none", rc.overlap)
		}
		waitFor(t, "all DONE", func() bool {
			st, _ := ts.Stats(context.Background())
			return len(st) == 1 && st[0].Done == keys*perKey && st[0].Waiting == 0
		})
	})
}

func TestPoisonMessageFailsAndHoldsOnlyItsKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		rc := newRecorder()
		boom := errors.New("boom: downstream says no")
		rc.fail = func(r *ferry.Record) error {
			if string(r.Payload) == "poison" {
				return boom
			}
			return nil
		}
		startRelay(t, relay.Options{Store: ts, Lanes: []relay.Lane{{Name: "default", MaxAttempts: 3,
			Backoff: relay.Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}})
		write(t, ts, ferry.Message{Topic: "t", Key: "bad", Payload: []byte("poison")},
			ferry.Message{Topic: "t", Key: "bad", Payload: []byte("after")})
		for i := range 100 {
			write(t, ts, ferry.Message{Topic: "t", Key: fmt.Sprint("good", i%7), Payload: []byte("ok")})
		}
		waitFor(t, "good keys", func() bool { return rc.count() == 100 })
		var failed []ferry.Record
		waitFor(t, "poison FAILED", func() bool {
			failed, _ = ts.List(context.Background(), ferry.Filter{Status: ferry.StatusFailed})
			return len(failed) == 1
		})
		if f := failed[0]; f.Attempts != 3 || f.LastError != boom.Error() || f.FailedAt.IsZero() {
			t.Errorf("FAILED message: attempts %d, last error %q, failed at %v; want 3, %q, a time", f.Attempts, f.LastError, f.FailedAt, boom)
		}
		time.Sleep(300 * time.Millisecond) // several rescans: the held key must stay held
		rc.mu.Lock()
		after := len(rc.byKey["bad"])
		rc.mu.Unlock()
		if after != 0 {
			t.Fatalf("the key's later message was delivered while its first message is FAILED (hold policy)")
		}
		// A person fixes the destination and retries: both go, in order.
		rc.mu.Lock()
		rc.fail = nil
		rc.mu.Unlock()
		if n, err := ts.Retry(context.Background(), ferry.Filter{Key: "bad"}); err != nil || n != 1 {
			t.Fatalf("Retry: %d, %v", n, err)
		}
		waitFor(t, "held key after retry", func() bool { rc.mu.Lock(); defer rc.mu.Unlock(); return len(rc.byKey["bad"]) == 2 })
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if got := rc.byKey["bad"]; got[0] != "poison" || got[1] != "after" {
			t.Errorf("after retry the key delivered %v; want [poison after]", got)
		}
	})
}

func TestNoRouteFails(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		rc := newRecorder()
		startRelay(t, relay.Options{Store: ts, Lanes: []relay.Lane{{Name: "default"}},
			Routes: []relay.Route{{Topic: "orders.*", Destination: rc}}})
		write(t, ts, ferry.Message{Topic: "orders.placed"}, ferry.Message{Topic: "payments"})
		var failed []ferry.Record
		waitFor(t, "unrouted message FAILED", func() bool {
			failed, _ = ts.List(context.Background(), ferry.Filter{Status: ferry.StatusFailed})
			return len(failed) == 1
		})
		if want := `relay: no route for topic "payments"`; len(failed[0].LastError) < len(want) || failed[0].LastError[:len(want)] != want {
			t.Errorf("last error %q; want it to start with %q", failed[0].LastError, want)
		}
		waitFor(t, "routed message", func() bool { return rc.count() == 1 })
	})
}
