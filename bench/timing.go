package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
)

// storeTimings measures the relay's store calls: how many, how long in
// total and how many rows, per method. It is a diagnostic for people
// working on ferry (--store-timings): it shows where a relay's time goes
// on the database side without a server-side extension.
type storeTimings struct {
	mu    sync.Mutex
	calls map[string]*callStats
}

type callStats struct {
	rows  int
	total time.Duration
	took  []time.Duration
}

func newStoreTimings() *storeTimings { return &storeTimings{calls: map[string]*callStats{}} }

func (t *storeTimings) track(method string, began time.Time, rows int) {
	d := time.Since(began)
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.calls[method]
	if c == nil {
		c = &callStats{}
		t.calls[method] = c
	}
	c.rows += rows
	c.total += d
	c.took = append(c.took, d)
}

// reset forgets what was measured so far.
func (t *storeTimings) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.calls)
}

// write prints a table of the calls measured over elapsed.
func (t *storeTimings) write(w io.Writer, title string, elapsed time.Duration) {
	if w == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.calls))
	for n := range t.calls {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return int(t.calls[b].total - t.calls[a].total) })
	fmt.Fprintf(w, "store calls during %s (%v; busy = total time in calls / elapsed, >100%% when calls overlap):\n", title, elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  %-20s %8s %10s %9s %9s %9s %9s %7s\n", "method lane", "calls", "rows", "avg", "p99", "max", "rows/call", "busy")
	for _, n := range names {
		c := t.calls[n]
		s := summarize(c.took)
		fmt.Fprintf(w, "  %-20s %8d %10d %9s %9s %9s %9.0f %6.0f%%\n", n, s.n, c.rows,
			(c.total / time.Duration(s.n)).Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.max.Round(10*time.Microsecond),
			float64(c.rows)/float64(s.n), 100*c.total.Seconds()/elapsed.Seconds())
	}
}

// timedStore is a ferry.Store that measures the relay's calls.
type timedStore struct {
	ferry.Store
	t *storeTimings
}

// timed wraps s so that t measures its relay-side calls. The result is a
// ferry.Notifier and a ferry.PollAnnouncer if s is, so the relay is woken
// as it would be.
func timed(s ferry.Store, t *storeTimings) ferry.Store {
	ts := timedStore{Store: s, t: t}
	n, ok := s.(ferry.Notifier)
	if !ok {
		return ts
	}
	tn := timedNotifier{timedStore: ts, n: n}
	if p, ok := s.(ferry.PollAnnouncer); ok {
		return timedPoller{timedNotifier: tn, PollAnnouncer: p}
	}
	return tn
}

func (s timedStore) Fetch(ctx context.Context, q ferry.FetchQuery) ([]ferry.Record, error) {
	began := time.Now()
	recs, err := s.Store.Fetch(ctx, q)
	name := "Fetch " + q.Lane
	if q.UpToSeq > 0 {
		name = "Fetch/rescan " + q.Lane
	}
	s.t.track(name, began, len(recs))
	return recs, err
}

// FetchWithOlder measures the store's FetchWithOlder, if it has one.
func (s timedStore) FetchWithOlder(ctx context.Context, q ferry.FetchQuery, perKey int) ([]ferry.Record, []ferry.KeySeq, error) {
	of, ok := s.Store.(ferry.OlderFetcher)
	if !ok {
		return nil, nil, fmt.Errorf("bench: %T fetches without older messages: %w", s.Store, errors.ErrUnsupported)
	}
	began := time.Now()
	recs, older, err := of.FetchWithOlder(ctx, q, perKey)
	name := "FetchWithOlder " + q.Lane
	if q.UpToSeq > 0 {
		name = "FetchWithOlder/catch-up " + q.Lane
	}
	s.t.track(name, began, len(recs))
	return recs, older, err
}

func (s timedStore) Complete(ctx context.Context, outcomes []ferry.Outcome) error {
	began := time.Now()
	err := s.Store.Complete(ctx, outcomes)
	s.t.track("Complete", began, len(outcomes))
	return err
}

func (s timedStore) WaitingKeys(ctx context.Context, lane string, keys []string, upToSeq int64, limit int) ([]ferry.KeySeq, error) {
	began := time.Now()
	out, err := s.Store.WaitingKeys(ctx, lane, keys, upToSeq, limit)
	s.t.track("WaitingKeys "+lane, began, len(keys))
	return out, err
}

func (s timedStore) HeldKeys(ctx context.Context, lane string) ([]string, error) {
	began := time.Now()
	out, err := s.Store.HeldKeys(ctx, lane)
	s.t.track("HeldKeys "+lane, began, len(out))
	return out, err
}

func (s timedStore) Lease(ctx context.Context, node string, ttl time.Duration) (ferry.Lease, error) {
	began := time.Now()
	l, err := s.Store.Lease(ctx, node, ttl)
	s.t.track("Lease", began, len(l.Shards))
	return l, err
}

func (s timedStore) Cleanup(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	began := time.Now()
	n, err := s.Store.Cleanup(ctx, cutoff, limit)
	s.t.track("Cleanup", began, n)
	return n, err
}

// timedNotifier is a timedStore of a store that notifies.
type timedNotifier struct {
	timedStore
	n ferry.Notifier
}

func (s timedNotifier) Listen(ctx context.Context, wake func(lane string, seq int64)) error {
	return s.n.Listen(ctx, wake)
}

// timedPoller is a timedNotifier of a store that can take its
// notifications off a busy lane.
type timedPoller struct {
	timedNotifier
	ferry.PollAnnouncer
}
