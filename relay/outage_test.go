package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/tcpproxy"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/mysql"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// outageDB is a database whose relay connects through a TCP proxy that the
// test can cut: ts is the direct connection (the producer's), relayStore
// goes through proxy.
type outageDB struct {
	ts         testStore
	relayStore ferry.Store
	proxy      *tcpproxy.Proxy
}

var outageFactories = []struct {
	name string
	open func(t *testing.T) outageDB
}{
	{"postgres", func(t *testing.T) outageDB {
		ts := postgresStore(t)
		dsn := testdb.PostgresDSN(t)
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		p := newProxy(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
		s, err := postgres.Open(context.Background(), proxiedPostgresDSN(t, dsn, p), sqlstore.Options{Table: ts.table})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return outageDB{ts: ts, relayStore: s, proxy: p}
	}},
	{"mysql", func(t *testing.T) outageDB {
		ts := mysqlStore(t)
		dsn := testdb.MySQLDSN(t)
		target, proxied := proxiedMySQLDSN(t, dsn)
		p := newProxy(t, target)
		s, err := mysql.Open(context.Background(), proxied(p.Addr()), sqlstore.Options{Table: ts.table})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return outageDB{ts: ts, relayStore: s, proxy: p}
	}},
}

func newProxy(t *testing.T, target string) *tcpproxy.Proxy {
	t.Helper()
	if strings.HasPrefix(target, "/") {
		t.Fatalf("the outage tests need the database on TCP, not the socket %s", target)
	}
	p, err := tcpproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// proxiedPostgresDSN is dsn with its address replaced by the proxy's.
func proxiedPostgresDSN(t *testing.T, dsn string, p *tcpproxy.Proxy) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = p.Addr()
		return u.String()
	}
	// key=value settings: later ones win.
	return fmt.Sprintf("%s host=127.0.0.1 port=%d", dsn, p.Port())
}

// proxiedMySQLDSN returns dsn's server address and a function that gives
// dsn with its address replaced.
func proxiedMySQLDSN(t *testing.T, dsn string) (string, func(addr string) string) {
	t.Helper()
	if strings.HasPrefix(dsn, "mysql://") || strings.HasPrefix(dsn, "mariadb://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		target := u.Host
		if u.Port() == "" {
			target = net.JoinHostPort(u.Hostname(), "3306")
		}
		return target, func(addr string) string { v := *u; v.Host = addr; return v.String() }
	}
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Net != "tcp" {
		t.Fatalf("the outage tests need MariaDB on TCP, not %s", cfg.Net)
	}
	return cfg.Addr, func(addr string) string { c := cfg.Clone(); c.Addr = addr; return c.FormatDSN() }
}

// steadyProducer writes small transactions to keys k0..k19 from one
// goroutine, so each key's commit order is its write order. Payloads count
// up per key among committed messages. A tenth of the transactions roll
// back.
type steadyProducer struct {
	ts testStore

	mu        sync.Mutex
	committed map[string]int // key → committed messages
	rolled    map[string]bool
	total     int
	stop      chan struct{}
	done      chan struct{}
}

func startSteadyProducer(t *testing.T, ts testStore) *steadyProducer {
	p := &steadyProducer{ts: ts, committed: map[string]int{}, rolled: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		ctx := context.Background()
		outbox := ferry.NewOutbox(ts)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			var msgs []ferry.Message
			next := map[string]int{}
			p.mu.Lock()
			for j := range 1 + rand.IntN(5) {
				key := fmt.Sprint("k", rand.IntN(20))
				n := p.committed[key] + next[key]
				next[key]++
				msgs = append(msgs, ferry.Message{ID: fmt.Sprintf("m%d-%d", i, j), Topic: "t", Key: key, Payload: []byte(strconv.Itoa(n))})
			}
			p.mu.Unlock()
			tx, err := ts.db.BeginTx(ctx, nil)
			if err != nil {
				t.Errorf("producer: %v", err)
				return
			}
			if err := outbox.Write(ctx, tx, msgs...); err != nil {
				tx.Rollback()
				t.Errorf("producer: %v", err)
				return
			}
			if rand.IntN(10) == 0 {
				if err := tx.Rollback(); err != nil {
					t.Errorf("producer: rollback: %v", err)
					return
				}
				p.mu.Lock()
				for _, m := range msgs {
					p.rolled[m.ID] = true
				}
				p.mu.Unlock()
				continue
			}
			if err := tx.Commit(); err != nil {
				t.Errorf("producer: commit: %v", err)
				return
			}
			p.mu.Lock()
			for k, n := range next {
				p.committed[k] += n
			}
			p.total += len(msgs)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(p.halt)
	return p
}

// halt stops the producer and waits for its last transaction.
func (p *steadyProducer) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *steadyProducer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// delivered reports whether every committed message reached rc.
func (p *steadyProducer) delivered(rc *recorder) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for k, n := range p.committed {
		if len(dedupFirst(rc.byKey[k])) < n {
			return false
		}
	}
	return true
}

// check checks that rc got every committed message, per key first in
// commit order, and nothing rolled back. It returns the duplicates.
func (p *steadyProducer) check(t *testing.T, rc *recorder) int {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, r := range rc.got {
		if p.rolled[r.ID] {
			t.Errorf("delivered %s, which was rolled back", r.ID)
		}
	}
	for k, n := range p.committed {
		got := dedupFirst(rc.byKey[k])
		for i, v := range got {
			if v != strconv.Itoa(i) {
				t.Errorf("key %s: first deliveries %v; want 0 to %d in order", k, got, n-1)
				break
			}
		}
		if len(got) != n {
			t.Errorf("key %s: %d messages delivered; %d committed", k, len(got), n)
		}
	}
	return len(rc.got) - p.total
}

// dedupFirst returns seq with repeats removed, keeping first occurrences.
func dedupFirst(seq []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range seq {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// checkAllDone waits until the outbox holds only DONE messages, want of
// them.
func checkAllDone(t *testing.T, ts testStore, want int) {
	t.Helper()
	var counts map[ferry.Status]int
	deadline := time.Now().Add(60 * time.Second)
	for {
		counts = statusCounts(t, ts)
		if len(counts) == 1 && counts[ferry.StatusDone] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("statuses %v; want only DONE, %d of them", counts, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDatabaseOutage cuts the relay's connections to the database while
// it delivers a steady stream, once for longer than the lease (the relay
// must stop delivering, then take its shards back) and once briefly. The
// producer writes directly to the database all along. Afterwards every
// committed message is delivered, each key in commit order, and nothing is
// FAILED or left WAITING.
func TestDatabaseOutage(t *testing.T) {
	for _, f := range outageFactories {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			db := f.open(t)
			rc := newRecorder()
			logs := &syncBuffer{}
			startRelay(t, relay.Options{Store: db.relayStore, Lanes: []relay.Lane{{Name: ferry.DefaultLane, Concurrency: 8}},
				Routes: []relay.Route{{Topic: "*", Destination: rc}}, LeaseTTL: 2 * time.Second,
				Logger: slog.New(slog.NewTextHandler(logs, nil))})
			prod := startSteadyProducer(t, db.ts)
			waitFor(t, "a steady stream", func() bool { return rc.count() >= 200 })

			for _, outage := range []time.Duration{3 * time.Second, 300 * time.Millisecond} {
				db.proxy.Cut()
				before := prod.count()
				time.Sleep(outage)
				if prod.count() == before {
					t.Fatalf("the producer wrote nothing during the outage")
				}
				if err := db.proxy.Restore(); err != nil {
					t.Fatal(err)
				}
				resumed := rc.count()
				waitFor(t, "deliveries after the outage", func() bool { return rc.count() >= resumed+200 })
			}
			prod.halt()
			waitFor(t, "every committed message", func() bool { return prod.delivered(rc) })
			checkAllDone(t, db.ts, prod.count())
			dups := prod.check(t, rc)
			if !strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("the relay logged no error while the database was away; logs:\n%s", logs)
			}
			t.Logf("%s: %d committed, %d deliveries, %d duplicates, %d connections through the proxy",
				f.name, prod.count(), rc.count(), dups, db.proxy.Accepted())
		})
	}
}

// TestDatabaseDownAtStart starts a relay while its database cannot be
// reached: Run keeps trying, neither returning nor panicking, says why in
// the log, and delivers what is waiting once the database is back.
func TestDatabaseDownAtStart(t *testing.T) {
	for _, f := range outageFactories {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			db := f.open(t)
			db.proxy.Cut()
			for i := range 50 {
				write(t, db.ts, ferry.Message{Topic: "t", Key: fmt.Sprint("k", i%5), Payload: []byte(strconv.Itoa(i / 5))})
			}
			rc := newRecorder()
			logs := &syncBuffer{}
			r, err := relay.New(relay.Options{Store: db.relayStore, Lanes: []relay.Lane{{Name: ferry.DefaultLane}},
				Routes: []relay.Route{{Topic: "*", Destination: rc}}, LeaseTTL: time.Second,
				RescanInterval: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()

			waitFor(t, "the relay to report the unreachable database", func() bool {
				return strings.Count(logs.String(), "cannot take shard leases") >= 3
			})
			select {
			case err := <-done:
				t.Fatalf("Run returned while the database was down: %v", err)
			default:
			}
			if rc.count() != 0 {
				t.Fatalf("delivered %d messages while the database was down", rc.count())
			}
			if err := db.proxy.Restore(); err != nil {
				t.Fatal(err)
			}
			for i := 50; i < 100; i++ {
				write(t, db.ts, ferry.Message{Topic: "t", Key: fmt.Sprint("k", i%5), Payload: []byte(strconv.Itoa(i / 5))})
			}
			waitFor(t, "the messages", func() bool { return rc.count() >= 100 })
			checkAllDone(t, db.ts, 100)
			rc.mu.Lock()
			for k, got := range rc.byKey {
				got = dedupFirst(got)
				for i, v := range got {
					if v != strconv.Itoa(i) {
						t.Errorf("key %s: first deliveries %v; want 0 to 19 in order", k, got)
						break
					}
				}
			}
			rc.mu.Unlock()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s of its context ending")
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// faultStore injects partial outages between a relay and its store: all
// calls fail while down; Complete (the relay's writes of outcomes) fails
// while writesDown; Lease fails while leasesDown. onRescanPage2, if set,
// runs once at the start of the first rescan fetch for a second page.
type faultStore struct {
	ferry.Store
	down, writesDown, leasesDown atomic.Bool
	rescans                      atomic.Int64 // rescan fetches that returned rows
	onRescanPage2                func()
	once                         sync.Once
}

var errInjected = errors.New("injected outage: the database does not answer")

func (s *faultStore) Fetch(ctx context.Context, q ferry.FetchQuery) ([]ferry.Record, error) {
	if s.down.Load() {
		return nil, errInjected
	}
	if q.UpToSeq > 0 && q.AfterSeq > 0 && s.onRescanPage2 != nil {
		s.once.Do(s.onRescanPage2)
	}
	rows, err := s.Store.Fetch(ctx, q)
	if q.UpToSeq > 0 && len(rows) > 0 {
		s.rescans.Add(1)
	}
	return rows, err
}

func (s *faultStore) WaitingKeys(ctx context.Context, lane string, keys []string, upTo int64, limit int) ([]ferry.KeySeq, error) {
	if s.down.Load() {
		return nil, errInjected
	}
	return s.Store.WaitingKeys(ctx, lane, keys, upTo, limit)
}

func (s *faultStore) HeldKeys(ctx context.Context, lane string) ([]string, error) {
	if s.down.Load() {
		return nil, errInjected
	}
	return s.Store.HeldKeys(ctx, lane)
}

func (s *faultStore) Paused(ctx context.Context) ([]string, error) {
	if s.down.Load() {
		return nil, errInjected
	}
	return s.Store.Paused(ctx)
}

func (s *faultStore) Complete(ctx context.Context, outcomes []ferry.Outcome) error {
	if s.down.Load() || s.writesDown.Load() {
		return errInjected
	}
	return s.Store.Complete(ctx, outcomes)
}

func (s *faultStore) Lease(ctx context.Context, node string, ttl time.Duration) (ferry.Lease, error) {
	if s.down.Load() || s.leasesDown.Load() {
		return ferry.Lease{}, errInjected
	}
	return s.Store.Lease(ctx, node, ttl)
}

// writeBacklog commits perKey messages for each of keys keys, payloads
// counting up per key, in one transaction.
func writeBacklog(t *testing.T, ts testStore, keys, perKey int) {
	t.Helper()
	var msgs []ferry.Message
	for i := range perKey {
		for k := range keys {
			msgs = append(msgs, ferry.Message{ID: fmt.Sprintf("k%d-%d", k, i), Topic: "t", Key: fmt.Sprint("k", k), Payload: []byte(strconv.Itoa(i))})
		}
	}
	write(t, ts, msgs...)
}

// checkBacklog waits until rc got every message of writeBacklog and checks
// that each key's first deliveries are in order.
func checkBacklog(t *testing.T, ts testStore, rc *recorder, keys, perKey int) {
	t.Helper()
	complete := func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for k := range keys {
			if len(dedupFirst(rc.byKey[fmt.Sprint("k", k)])) < perKey {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !complete() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	rc.mu.Lock()
	for k := range keys {
		got := dedupFirst(rc.byKey[fmt.Sprint("k", k)])
		for i, v := range got {
			if v != strconv.Itoa(i) {
				t.Errorf("key k%d: after %d messages in order it delivered %v; want %d next", k, i, got[i:min(i+3, len(got))], i)
				break
			}
		}
		if len(got) < perKey {
			t.Errorf("key k%d: %d of %d messages delivered within 60s; the key stopped after %v", k, len(got), perKey, got[max(0, len(got)-3):])
		}
	}
	rc.mu.Unlock()
	if !t.Failed() {
		checkAllDone(t, ts, keys*perKey)
	}
}

// TestOutcomesRecordedAfterRescan: the database answers reads and leases
// again before it accepts the relay's outcome updates (a lock on the
// table, a primary that comes back read-only first). Messages delivered
// while it was away are read again by a rescan before their DONE is
// recorded; recording it must not make the relay forget the copies it
// has just read, or their keys stop for good.
func TestOutcomesRecordedAfterRescan(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		const keys, perKey = 10, 100
		writeBacklog(t, ts, keys, perKey)
		fs := &faultStore{Store: ts}
		rc := newRecorder()
		rc.fail = func(*ferry.Record) error { time.Sleep(5 * time.Millisecond); return nil } // a broker's round trip
		startRelay(t, relay.Options{Store: fs, Lanes: []relay.Lane{{Name: ferry.DefaultLane, Concurrency: 4}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}, LeaseTTL: time.Second, RescanInterval: 100 * time.Millisecond})
		waitFor(t, "deliveries", func() bool { return rc.count() >= 50 })
		fs.writesDown.Store(true)
		fs.down.Store(true)
		// The relay delivers what it holds until its leases lapse, then
		// drops its state.
		time.Sleep(2500 * time.Millisecond)
		rescans := fs.rescans.Load()
		fs.down.Store(false)
		waitFor(t, "a rescan after the outage", func() bool { return fs.rescans.Load() > rescans })
		time.Sleep(300 * time.Millisecond)
		fs.writesDown.Store(false)
		checkBacklog(t, ts, rc, keys, perKey)
	})
}

// TestLeasesLapseDuringRescan: the relay's leases lapse and come back
// while a rescan pass is between two pages (lease renewals fail while the
// rescan's next query is slow). The relay drops what it held when the
// leases lapsed; the rest of the pass must not then deliver a key's later
// messages before the earlier ones it dropped.
func TestLeasesLapseDuringRescan(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		// One key with more messages than one rescan page (1000), so that a
		// pass has a second page.
		const keys, perKey = 1, 2500
		writeBacklog(t, ts, keys, perKey)
		fs := &faultStore{Store: ts}
		fs.onRescanPage2 = func() {
			fs.leasesDown.Store(true)
			time.Sleep(2500 * time.Millisecond) // the leases lapse: the relay drops its state
			fs.leasesDown.Store(false)
			time.Sleep(1500 * time.Millisecond) // the next renewal takes the same shards back
		}
		rc := newRecorder()
		rc.fail = func(*ferry.Record) error { time.Sleep(2 * time.Millisecond); return nil }
		startRelay(t, relay.Options{Store: fs, Lanes: []relay.Lane{{Name: ferry.DefaultLane, Concurrency: 4}},
			Routes: []relay.Route{{Topic: "*", Destination: rc}}, LeaseTTL: time.Second, RescanInterval: 100 * time.Millisecond})
		checkBacklog(t, ts, rc, keys, perKey)
	})
}
