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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/mysql"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// testStore is a migrated store and its database handle.
type testStore struct {
	ferry.Store
	db    *sql.DB
	table string
	// forUpdate locks a row until commit ("" on SQLite, where the write
	// lock already serializes writers).
	forUpdate string
	// pollAbove is the relay's Options.PollAbove for tests that run with
	// the store's polled variant too (see withPolled).
	pollAbove float64
}

type storeFactory struct {
	name string
	open func(t testing.TB) testStore
}

func sqliteStore(t testing.TB) testStore {
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
	return testStore{Store: s, db: s.DB, table: sqlstore.DefaultTable}
}

func postgresStore(t testing.TB) testStore {
	t.Helper()
	ctx := context.Background()
	table := testdb.Table(t)
	s, err := postgres.Open(ctx, testdb.PostgresDSN(t), sqlstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	return migrated(t, s, s.DB, table, "FOR UPDATE")
}

func mysqlStore(t testing.TB) testStore {
	t.Helper()
	ctx := context.Background()
	table := testdb.Table(t)
	s, err := mysql.Open(ctx, testdb.MySQLDSN(t), sqlstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	return migrated(t, s, s.DB, table, "FOR UPDATE")
}

func migrated(t testing.TB, s ferry.Store, db *sql.DB, table, forUpdate string) testStore {
	t.Helper()
	t.Cleanup(func() {
		testdb.DropOutbox(db, table, s.Dialect())
		s.Close()
	})
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return testStore{Store: s, db: db, table: table, forUpdate: forUpdate}
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

var factories = []storeFactory{{"sqlite", sqliteStore}, {"postgres", postgresStore}, {"mysql", mysqlStore}}

// forEachStoreAndPolled is forEachStore, plus PostgreSQL with relays that
// poll the lane from the first commit on (ts.pollAbove), so that a test of
// ordering also runs without the notifications that name late commits.
func forEachStoreAndPolled(t *testing.T, f func(t *testing.T, ts testStore)) {
	forEachStore(t, f)
	t.Run("postgres-polled", func(t *testing.T) {
		t.Parallel()
		ts := postgresStore(t)
		ts.pollAbove = 1
		f(t, ts)
	})
}

// recorder is a destination that records what it receives.
type recorder struct {
	mu      sync.Mutex
	got     []ferry.Record
	byKey   map[string][]string // payloads per key, in delivery order
	fail    func(r *ferry.Record) error
	active  map[string]int // deliveries in flight per lane/key
	overlap int            // times two deliveries of one key overlapped
	notify  chan struct{}
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
func startRelay(t testing.TB, opts relay.Options) (stop func()) {
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
func write(t testing.TB, ts testStore, msgs ...ferry.Message) {
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
		startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default", Concurrency: 8, BatchSize: 50}},
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
			done, _ := ts.List(context.Background(), ferry.Filter{Status: ferry.StatusDone, Limit: keys*perKey + 1})
			return len(done) == keys*perKey
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
		startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default", MaxAttempts: 3,
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
		startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default"}},
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

func TestTwoRelaysShareShardsWithoutOverlap(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		rc := newRecorder()
		rc.fail = func(*ferry.Record) error { time.Sleep(time.Millisecond); return nil } // let deliveries overlap if they can
		opts := relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default", Concurrency: 8}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}, LeaseTTL: time.Second}
		a, b := opts, opts
		a.Node, b.Node = "relay-a", "relay-b"
		startRelay(t, a)
		startRelay(t, b)
		// Both hold shards once the second has taken its share.
		waitFor(t, "both relays to hold shards", func() bool {
			var owners map[string]int
			owners = shardOwners(t, ts)
			return owners["relay-a"] > 0 && owners["relay-b"] > 0 && owners["relay-a"]+owners["relay-b"] == ferry.Shards
		})
		const keys, perKey = 40, 20
		for i := range perKey {
			var msgs []ferry.Message
			for k := range keys {
				msgs = append(msgs, ferry.Message{Topic: "t", Key: fmt.Sprint("k", k), Payload: []byte(fmt.Sprint(i))})
			}
			write(t, ts, msgs...)
		}
		waitFor(t, "all messages", func() bool { return rc.count() >= keys*perKey })
		checkKeyOrder(t, rc)
		if rc.overlap > 0 {
			t.Errorf("%d deliveries of one key overlapped across the two relays; want none", rc.overlap)
		}
	})
}

// shardOwners counts the shards each node holds, through the store's own
// lease call as a neutral observer would: by listing them.
func shardOwners(t *testing.T, ts testStore) map[string]int {
	t.Helper()
	rows, err := ts.db.Query(`SELECT owner, COUNT(*) FROM ` + ts.table + `_shards WHERE owner IS NOT NULL GROUP BY owner`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var o string
		var n int
		if err := rows.Scan(&o, &n); err != nil {
			t.Fatal(err)
		}
		out[o] = n
	}
	return out
}

// checkKeyOrder checks that each key's payloads, duplicates removed, count
// up from 0.
func checkKeyOrder(t *testing.T, rc *recorder) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for k, got := range rc.byKey {
		next := 0
		for _, p := range got {
			switch p {
			case fmt.Sprint(next):
				next++
			case fmt.Sprint(next - 1): // a redelivery of the previous one
			default:
				t.Fatalf("key %s: got payload %s after %d in order; full order %v", k, p, next-1, got)
			}
		}
	}
}

func TestFloodedLaneDoesNotDelayOtherLane(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		var mu sync.Mutex
		var batchDone, onlineDone int
		var batchDoneWhenOnlineFinished = -1
		const batchN, onlineN = 3000, 20
		dest := ferry.DestinationFunc(func(ctx context.Context, r *ferry.Record) error {
			if r.Lane == "batch" {
				time.Sleep(200 * time.Microsecond) // a slow downstream for the flood
			}
			mu.Lock()
			defer mu.Unlock()
			if r.Lane == "batch" {
				batchDone++
			} else if onlineDone++; onlineDone == onlineN {
				batchDoneWhenOnlineFinished = batchDone
			}
			return nil
		})
		// The flood is in the table before the relay starts: a FIFO relay
		// would deliver all of it before the first online message.
		var flood []ferry.Message
		for i := range batchN {
			flood = append(flood, ferry.Message{Lane: "batch", Topic: "t", Key: fmt.Sprint(i % 50)})
		}
		write(t, ts, flood...)
		startRelay(t, relay.Options{Store: ts.Store, Routes: []relay.Route{{Topic: "*", Destination: dest}},
			Lanes: []relay.Lane{{Name: "online", Weight: 4, Concurrency: 4}, {Name: "batch", Weight: 1, Concurrency: 2}}})
		for i := range onlineN {
			write(t, ts, ferry.Message{Lane: "online", Topic: "t", Key: fmt.Sprint("o", i%3)})
			time.Sleep(5 * time.Millisecond)
		}
		waitFor(t, "online messages", func() bool { mu.Lock(); defer mu.Unlock(); return onlineDone == onlineN })
		mu.Lock()
		defer mu.Unlock()
		if batchDoneWhenOnlineFinished >= batchN {
			t.Errorf("the online lane finished only after the whole batch flood (%d of %d batch messages done); lanes must not queue behind each other",
				batchDoneWhenOnlineFinished, batchN)
		}
	})
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		started := make(chan struct{})
		release := make(chan struct{})
		dest := ferry.DestinationFunc(func(ctx context.Context, r *ferry.Record) error {
			close(started)
			<-release
			return nil
		})
		stop := startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default"}},
			Routes: []relay.Route{{Topic: "*", Destination: dest}}, ShutdownTimeout: 10 * time.Second})
		write(t, ts, ferry.Message{ID: "slow", Topic: "t"})
		<-started
		stopped := make(chan struct{})
		go func() { stop(); close(stopped) }()
		time.Sleep(100 * time.Millisecond)
		select {
		case <-stopped:
			t.Fatal("Run returned while a delivery was still in flight")
		default:
		}
		close(release)
		<-stopped
		got, err := ts.List(context.Background(), ferry.Filter{IDs: []string{"slow"}})
		if err != nil || len(got) != 1 || got[0].Status != ferry.StatusDone {
			t.Fatalf("after shutdown the in-flight message is %+v (%v); want DONE", got, err)
		}
		owners := shardOwners(t, ts)
		if len(owners) != 0 {
			t.Errorf("after shutdown shards are still leased: %v; want all released", owners)
		}
	})
}

func TestShutdownTimeoutCancelsStuckDelivery(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		started := make(chan struct{})
		dest := ferry.DestinationFunc(func(ctx context.Context, r *ferry.Record) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		stop := startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default"}},
			Routes: []relay.Route{{Topic: "*", Destination: dest}}, ShutdownTimeout: 200 * time.Millisecond})
		write(t, ts, ferry.Message{ID: "stuck", Topic: "t"})
		<-started
		stop()
		got, err := ts.List(context.Background(), ferry.Filter{IDs: []string{"stuck"}})
		if err != nil || len(got) != 1 || got[0].Status != ferry.StatusWaiting {
			t.Fatalf("a delivery cancelled at shutdown left %+v (%v); want it WAITING for the next relay", got, err)
		}
	})
}

func TestDelayedMessageWaitsUntilDue(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		rc := newRecorder()
		startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default"}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}})
		due := time.Now().Add(700 * time.Millisecond)
		write(t, ts, ferry.Message{ID: "later", Topic: "t", DeliverAt: due}, ferry.Message{ID: "now", Topic: "t"})
		waitFor(t, "the delayed message", func() bool { return rc.count() == 2 })
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.got[0].ID != "now" {
			t.Errorf("first delivered %s; want the undelayed message first", rc.got[0].ID)
		}
	})
}

func TestRetentionDeletesDoneMessages(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		rc := newRecorder()
		startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default"}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}, Retention: -1})
		var msgs []ferry.Message
		for range 50 {
			msgs = append(msgs, ferry.Message{Topic: "t"})
		}
		write(t, ts, msgs...)
		waitFor(t, "delivery", func() bool { return rc.count() == 50 })
		waitFor(t, "DONE messages to be deleted", func() bool {
			st, err := ts.Stats(context.Background())
			return err == nil && len(st) == 0
		})
	})
}

func TestBadOptions(t *testing.T) {
	_, err := relay.New(relay.Options{Lanes: []relay.Lane{{Name: "a", OnFailed: "drop"}, {Name: "a"}},
		Routes: []relay.Route{{Topic: "[", Destination: newRecorder()}}})
	if err == nil {
		t.Fatal("New accepted bad options")
	}
	for _, want := range []string{"Store is required", `lane "a" is configured twice`, `on_failed "drop" is not hold or skip`, `topic pattern "["`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestRateLimitHoldsDeliveriesBack checks a lane's token bucket: 40
// messages at 100/s with bursts of 1 cannot all be delivered in much less
// than 0.39s, however fast the machine. (A lower bound on time is what the
// limit promises; nothing here depends on the machine being fast.)
func TestRateLimitHoldsDeliveriesBack(t *testing.T) {
	ts := sqliteStore(t)
	rc := newRecorder()
	var msgs []ferry.Message
	for range 40 {
		msgs = append(msgs, ferry.Message{Topic: "t"})
	}
	write(t, ts, msgs...)
	start := time.Now()
	startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "default", Concurrency: 16, Rate: 100, Burst: 1}},
		Routes: []relay.Route{{Topic: "*", Destination: rc}}})
	waitFor(t, "all messages", func() bool { return rc.count() == 40 })
	if took, least := time.Since(start), 350*time.Millisecond; took < least {
		t.Errorf("40 messages at 100/s took %v; the rate limit allows no less than about 390ms", took)
	}
}

// A destination that asks to be tried again later (a webhook's
// Retry-After) is given that long, even when the lane's backoff is
// shorter, but no longer than the lane's maximum backoff.
func TestRetryLaterIsHonoured(t *testing.T) {
	ts := sqliteStore(t)
	var (
		mu       sync.Mutex
		attempts []time.Time
	)
	dest := ferry.DestinationFunc(func(ctx context.Context, r *ferry.Record) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, time.Now())
		switch len(attempts) {
		case 1:
			return ferry.RetryLater(errors.New("503 Service Unavailable"), 700*time.Millisecond)
		case 2:
			return ferry.RetryLater(errors.New("503 Service Unavailable"), time.Hour) // capped at Backoff.Max
		}
		return nil
	})
	write(t, ts, ferry.Message{Topic: "t", Key: "k"})
	startRelay(t, relay.Options{Store: ts.Store, RescanInterval: 20 * time.Millisecond,
		Lanes:  []relay.Lane{{Name: ferry.DefaultLane, Backoff: relay.Backoff{Initial: 10 * time.Millisecond, Max: 1200 * time.Millisecond}}},
		Routes: []relay.Route{{Topic: "*", Destination: dest}}})
	waitFor(t, "the third attempt", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts) == 3
	})
	if gap := attempts[1].Sub(attempts[0]); gap < 650*time.Millisecond {
		t.Errorf("second attempt %v after the first; the destination asked for 700ms", gap)
	}
	if gap := attempts[2].Sub(attempts[1]); gap < 1100*time.Millisecond || gap > 10*time.Second {
		t.Errorf("third attempt %v after the second; want the lane's maximum backoff, 1.2s, not the hour asked for", gap)
	}
}

// unsupportedOlder is a store wrapper that has FetchWithOlder but cannot
// serve it, as a wrapper of a store without it would.
type unsupportedOlder struct{ ferry.Store }

func (unsupportedOlder) FetchWithOlder(context.Context, ferry.FetchQuery, int) ([]ferry.Record, []ferry.KeySeq, error) {
	return nil, nil, fmt.Errorf("wrapped store: %w", errors.ErrUnsupported)
}

// TestFetchWithOlderUnsupported: a store whose FetchWithOlder says it is
// unsupported is read with Fetch and WaitingKeys instead, in key order.
func TestFetchWithOlderUnsupported(t *testing.T) {
	ts := postgresStore(t)
	rc := newRecorder()
	startRelay(t, relay.Options{Store: unsupportedOlder{ts.Store}, Lanes: []relay.Lane{{Name: "default", Concurrency: 4, BatchSize: 10}},
		Routes: []relay.Route{{Topic: "*", Destination: rc}}})
	for i := range 10 {
		write(t, ts, ferry.Message{Topic: "t", Key: "a", Payload: []byte(fmt.Sprint(i))}, ferry.Message{Topic: "t", Key: "b", Payload: []byte(fmt.Sprint(i))})
	}
	waitFor(t, "all messages", func() bool { return rc.count() == 20 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, k := range []string{"a", "b"} {
		if got := rc.byKey[k]; !slices.Equal(got, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}) {
			t.Errorf("key %s: delivered %v; want 0 to 9 in order", k, got)
		}
	}
}

// TestWarnsOfUnservedLane: a message committed to a lane the relay does
// not serve (a producer's typo) is named in the log once, with the lanes
// the relay serves, and left WAITING.
func TestWarnsOfUnservedLane(t *testing.T) {
	ts := postgresStore(t) // the only store whose commits name their lane to the relay
	rc := newRecorder()
	logs := &syncBuffer{}
	startRelay(t, relay.Options{Store: ts.Store, Lanes: []relay.Lane{{Name: "online"}},
		Routes: []relay.Route{{Topic: "*", Destination: rc}}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	// Until the relay listens, a notification is lost: write until the
	// served lane's message arrives, then once more to the typo.
	for i := 0; rc.count() == 0; i++ {
		write(t, ts, ferry.Message{ID: fmt.Sprint("ok-", i), Lane: "online", Topic: "t"})
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 3 {
		write(t, ts, ferry.Message{ID: fmt.Sprint("typo-", i), Lane: "onlien", Topic: "t"})
	}
	waitFor(t, "the warning about lane onlien", func() bool { return strings.Contains(logs.String(), "lane=onlien") })
	time.Sleep(100 * time.Millisecond)
	if n := strings.Count(logs.String(), "lane=onlien"); n != 1 {
		t.Errorf("the unserved lane was reported %d times; want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "served=[online]") {
		t.Errorf("the warning does not list the served lanes:\n%s", logs)
	}
	stats, err := ts.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waiting := 0
	for _, s := range stats {
		if s.Lane == "onlien" {
			waiting = s.Waiting
		}
	}
	if waiting != 3 {
		t.Errorf("lane onlien has %d WAITING messages; want the 3 written", waiting)
	}
}

// TestBusyLaneIsPolled: when commits to a lane come fast, the relay
// announces that it polls the lane (producers then skip the notification
// that serializes their commits on PostgreSQL), delivers everything, and
// lets the announcement lapse when the commits stop, after which a commit
// is delivered again on its notification.
func TestBusyLaneIsPolled(t *testing.T) {
	ts := postgresStore(t)
	pg := ts.Store.(*postgres.Store)
	rc := newRecorder()
	startRelay(t, relay.Options{Store: pg, Lanes: []relay.Lane{{Name: "busy"}}, PollAbove: 200,
		Routes: []relay.Route{{Topic: "*", Destination: rc}}})
	ctx := t.Context()
	polled := func() time.Duration {
		left, err := pg.Polled(ctx, "busy")
		if err != nil {
			t.Fatal(err)
		}
		return left
	}

	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Each producer has keys of its own, so that its commit
				// order is each key's order.
				write(t, ts, ferry.Message{ID: fmt.Sprintf("p%d-%d", p, i), Lane: "busy", Topic: "t",
					Key: fmt.Sprintf("p%d-k%d", p, i%5), Payload: []byte(fmt.Sprint(i / 5))})
				written.Add(1)
			}
		})
	}
	waitFor(t, "the relay to announce that it polls the busy lane", func() bool { return polled() > 0 })
	time.Sleep(500 * time.Millisecond) // commits while polled
	close(stop)
	wg.Wait()
	waitFor(t, "every message to be delivered", func() bool { return rc.count() >= int(written.Load()) })
	checkKeyOrder(t, rc)

	waitFor(t, "the announcement to lapse once the commits stopped", func() bool { return polled() == 0 })
	n := rc.count()
	write(t, ts, ferry.Message{ID: "after", Lane: "busy", Topic: "t"})
	waitFor(t, "the message written after the lapse", func() bool { return rc.count() > n })
}

// TestRelayFollowsAnotherRelaysPolling: a relay that never announces
// polling itself (PollAbove off) polls a lane while another relay's
// announcement holds, since producers then notify neither, and together
// they deliver everything.
func TestRelayFollowsAnotherRelaysPolling(t *testing.T) {
	ts := postgresStore(t)
	pg := ts.Store.(*postgres.Store)
	rc := newRecorder()
	follower := &syncBuffer{}
	startRelay(t, relay.Options{Store: pg, Node: "announcer", Lanes: []relay.Lane{{Name: "busy"}}, PollAbove: 1,
		Routes: []relay.Route{{Topic: "*", Destination: rc}}})
	startRelay(t, relay.Options{Store: pg, Node: "follower", Lanes: []relay.Lane{{Name: "busy"}},
		Routes: []relay.Route{{Topic: "*", Destination: rc}},
		Logger: slog.New(slog.NewTextHandler(follower, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	written := 0
	for !strings.Contains(follower.String(), "polling it too") {
		write(t, ts, ferry.Message{ID: fmt.Sprint("m", written), Lane: "busy", Topic: "t", Key: fmt.Sprint("k", written%64)})
		written++
		if written > 20_000 {
			t.Fatalf("the follower never polled the lane:\n%s", follower)
		}
	}
	if strings.Contains(follower.String(), "producers stop notifying") {
		t.Errorf("the relay with PollAbove off announced polling:\n%s", follower)
	}
	waitFor(t, "every message", func() bool { return rc.count() >= written })
}
