package relay_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// twoHandles returns a migrated store for the relay and a second,
// independent handle on the same outbox, as another process (ferry pause)
// would have.
type twoHandles struct {
	name string
	open func(t *testing.T) (testStore, ferry.Store)
}

var pauseFactories = []twoHandles{
	{"sqlite", func(t *testing.T) (testStore, ferry.Store) {
		path := filepath.Join(t.TempDir(), "ferry.db")
		ts := testStore{table: sqlstore.DefaultTable}
		var stores [2]*sqlite.Store
		for i := range stores {
			s, err := sqlite.Open(t.Context(), path, sqlstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			stores[i] = s
		}
		if err := stores[0].Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		ts.Store, ts.db = stores[0], stores[0].DB
		return ts, stores[1]
	}},
	{"postgres", func(t *testing.T) (testStore, ferry.Store) {
		ts := postgresStore(t)
		other, err := postgres.Open(t.Context(), testdb.PostgresDSN(t), sqlstore.Options{Table: ts.table})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		return ts, other
	}},
}

// pacedLog counts deliveries per lane; each takes delay until fast is set.
type pacedLog struct {
	delay time.Duration
	fast  atomic.Bool
	mu    sync.Mutex
	n     map[string]int
}

func (p *pacedLog) Deliver(ctx context.Context, r *ferry.Record) error {
	if !p.fast.Load() {
		time.Sleep(p.delay)
	}
	p.mu.Lock()
	p.n[r.Lane]++
	p.mu.Unlock()
	return nil
}

func (p *pacedLog) count(lane string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[lane]
}

// quiet waits until lane's count has not changed for a second: the lane
// started nothing new in that time.
func (p *pacedLog) quiet(t *testing.T, lane string) {
	t.Helper()
	last, since := p.count(lane), time.Now()
	waitFor(t, "lane "+lane+" to stop delivering", func() bool {
		if n := p.count(lane); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) > time.Second
	})
}

// TestPauseLane pauses and resumes a lane from another store handle while
// the relay runs: the paused lane stops starting deliveries while the
// other lane goes on, and drains once resumed. A lane paused before the
// relay starts delivers nothing at all.
func TestPauseLane(t *testing.T) {
	for _, f := range pauseFactories {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			ts, other := f.open(t)
			const n = 2000
			dest := &pacedLog{delay: 5 * time.Millisecond, n: map[string]int{}}
			backlog(t, ts, "a", n)
			backlog(t, ts, "b", n)
			backlog(t, ts, "c", 20)
			if err := other.Pause(t.Context(), "c"); err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			startRelay(t, relay.Options{Store: ts.Store, Routes: []relay.Route{{Topic: "*", Destination: dest}},
				Logger: slog.New(slog.NewTextHandler(logs, nil)),
				Lanes:  []relay.Lane{{Name: "a", Concurrency: 1}, {Name: "b", Concurrency: 1}, {Name: "c"}}})

			waitFor(t, "lanes a and b to deliver", func() bool { return dest.count("a") > 10 && dest.count("b") > 10 })
			if err := other.Pause(t.Context(), "a"); err != nil {
				t.Fatal(err)
			}
			dest.quiet(t, "a")
			a, b := dest.count("a"), dest.count("b")
			waitFor(t, "lane b to go on while a is paused", func() bool { return dest.count("b") >= b+50 })
			if got := dest.count("a"); got != a || a >= n {
				t.Fatalf("paused lane a delivered %d more while lane b delivered 50 (a: %d of %d before); want it stopped, not drained", got-a, a, n)
			}
			if !strings.Contains(logs.String(), `msg="lane paused: it starts no new deliveries until resumed; deliveries in flight finish" node=`) ||
				!strings.Contains(logs.String(), "lane=a") {
				t.Errorf("no info log saying that lane a is paused:\n%s", logs)
			}

			dest.fast.Store(true)
			if err := other.Resume(t.Context(), "a"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "lane a to drain after resume", func() bool { return dest.count("a") == n })
			waitFor(t, "lane b to drain", func() bool { return dest.count("b") == n })
			if !strings.Contains(logs.String(), `msg="lane resumed"`) {
				t.Errorf("no info log saying that lane a was resumed:\n%s", logs)
			}
			// Lane c was paused before the relay started and never resumed.
			if got := dest.count("c"); got != 0 {
				t.Errorf("lane c, paused before the relay started, delivered %d messages; want none", got)
			}
			st, err := ts.Stats(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range st {
				if s.Lane == "c" && (s.Waiting != 20 || !s.Paused) {
					t.Errorf("Stats of paused lane c: %+v; want 20 WAITING, Paused", s)
				}
			}
		})
	}
}
