package relay_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
)

// startLog is a destination that records the lane of each delivery in
// the order they start, and the most deliveries it ever ran at once.
type startLog struct {
	delay time.Duration

	mu     sync.Mutex
	starts []string
	done   map[string]int

	running, maxRunning atomic.Int64
}

func newStartLog(delay time.Duration) *startLog {
	return &startLog{delay: delay, done: map[string]int{}}
}

func (s *startLog) Deliver(ctx context.Context, r *ferry.Record) error {
	n := s.running.Add(1)
	for m := s.maxRunning.Load(); n > m && !s.maxRunning.CompareAndSwap(m, n); m = s.maxRunning.Load() {
	}
	s.mu.Lock()
	s.starts = append(s.starts, r.Lane)
	s.mu.Unlock()
	time.Sleep(s.delay)
	s.running.Add(-1)
	s.mu.Lock()
	s.done[r.Lane]++
	s.mu.Unlock()
	return nil
}

func (s *startLog) delivered(lane string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done[lane]
}

// order returns the lanes of the deliveries started so far, in order.
func (s *startLog) order() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.starts...)
}

// backlog writes n unkeyed messages to lane.
func backlog(t *testing.T, ts testStore, lane string, n int) {
	t.Helper()
	msgs := make([]ferry.Message, n)
	for i := range msgs {
		msgs[i] = ferry.Message{Lane: lane, Topic: "t", Payload: []byte(fmt.Sprint(i))}
	}
	write(t, ts, msgs...)
}

// span returns the positions of the first and last occurrence of lane in
// order, or -1, -1.
func span(order []string, lane string) (first, last int) {
	first, last = -1, -1
	for i, l := range order {
		if l == lane {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return first, last
}

// TestPoolPriority: two lanes share a pool of 4 workers, both with a
// backlog. While the high-priority lane has messages, the low-priority
// one starts none; once it is empty, the low one gets the pool and
// delivers its whole backlog; and the pool never runs more than 4
// deliveries at once.
func TestPoolPriority(t *testing.T) {
	for _, sf := range []storeFactory{{"sqlite", sqliteStore}, {"postgres", postgresStore}} {
		t.Run(sf.name, func(t *testing.T) {
			t.Parallel()
			ts := sf.open(t)
			const n, workers = 200, 4
			dest := newStartLog(2 * time.Millisecond)
			backlog(t, ts, "high", n)
			backlog(t, ts, "low", n)
			startRelay(t, relay.Options{Store: ts.Store, Routes: []relay.Route{{Topic: "*", Destination: dest}},
				Pools: []relay.Pool{{Name: "workers", Concurrency: workers}},
				Lanes: []relay.Lane{
					{Name: "low", Pool: "workers", Priority: 1},
					{Name: "high", Pool: "workers", Priority: 0},
				}})
			waitFor(t, "both backlogs", func() bool { return dest.delivered("high") == n && dest.delivered("low") == n })

			order := dest.order()
			first, last := span(order, "high")
			low := 0
			for _, l := range order[first:last] {
				if l == "low" {
					low++
				}
			}
			// The low lane may have filled the pool before the high lane's
			// messages were read; a delivery it dispatched then may start a
			// moment after the high lane's first. None beyond those: with
			// priorities ignored, it would get about half of the workers.
			t.Logf("low-priority deliveries started while the high lane had a backlog: %d; most at once: %d", low, dest.maxRunning.Load())
			if low >= workers {
				t.Errorf("the low-priority lane started %d deliveries between the high-priority lane's first and last (of %d); want fewer than %d, those it had dispatched before the high lane had messages\norder: %s",
					low, n, workers, strings.Join(order, " "))
			}
			if m := dest.maxRunning.Load(); m > workers {
				t.Errorf("%d deliveries ran at once in a pool of %d workers", m, workers)
			}
		})
	}
}

// TestPoolWeights: lanes of equal priority share a pool's workers by
// weight while both have a backlog.
func TestPoolWeights(t *testing.T) {
	ts := sqliteStore(t)
	const n = 400
	dest := newStartLog(2 * time.Millisecond)
	backlog(t, ts, "heavy", n)
	backlog(t, ts, "light", n)
	startRelay(t, relay.Options{Store: ts.Store, Routes: []relay.Route{{Topic: "*", Destination: dest}},
		Pools: []relay.Pool{{Name: "workers", Concurrency: 4}},
		Lanes: []relay.Lane{
			{Name: "heavy", Pool: "workers", Weight: 3},
			{Name: "light", Pool: "workers", Weight: 1},
		}})
	waitFor(t, "both backlogs", func() bool { return dest.delivered("heavy") == n && dest.delivered("light") == n })

	// Count from when both lanes were delivering to when the first of
	// them ran out of messages.
	order := dest.order()
	hFirst, hLast := span(order, "heavy")
	lFirst, lLast := span(order, "light")
	heavy, light := 0, 0
	for _, l := range order[max(hFirst, lFirst):min(hLast, lLast)] {
		if l == "heavy" {
			heavy++
		} else {
			light++
		}
	}
	if light == 0 || heavy < 100 {
		t.Fatalf("while both lanes had a backlog, heavy started %d deliveries and light %d; want both to share the pool\norder: %s",
			heavy, light, strings.Join(order, " "))
	}
	t.Logf("while both lanes had a backlog: heavy %d, light %d", heavy, light)
	if r := float64(heavy) / float64(light); r < 2 || r > 4.5 {
		t.Errorf("while both lanes had a backlog, heavy (weight 3) started %d deliveries and light (weight 1) %d: ratio %.2f, want about 3",
			heavy, light, r)
	}
	if m := dest.maxRunning.Load(); m > 4 {
		t.Errorf("%d deliveries ran at once in a pool of 4 workers", m)
	}
}

// TestPoolLaneConcurrency: a pooled lane's own Concurrency still caps it,
// and the pool's other lane gets the workers it leaves, whatever its
// priority.
func TestPoolLaneConcurrency(t *testing.T) {
	ts := sqliteStore(t)
	const n = 100
	var running, maxHigh atomic.Int64
	dest := ferry.DestinationFunc(func(ctx context.Context, r *ferry.Record) error {
		if r.Lane == "high" {
			k := running.Add(1)
			defer running.Add(-1)
			for m := maxHigh.Load(); k > m && !maxHigh.CompareAndSwap(m, k); m = maxHigh.Load() {
			}
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	log := newStartLog(0)
	backlog(t, ts, "high", n)
	backlog(t, ts, "low", n)
	startRelay(t, relay.Options{Store: ts.Store, Routes: []relay.Route{{Topic: "*", Destination: ferry.DestinationFunc(
		func(ctx context.Context, r *ferry.Record) error {
			log.Deliver(ctx, r)
			return dest(ctx, r)
		})}},
		Pools: []relay.Pool{{Name: "workers", Concurrency: 4}},
		Lanes: []relay.Lane{
			{Name: "high", Pool: "workers", Concurrency: 1},
			{Name: "low", Pool: "workers", Priority: 1},
		}})
	waitFor(t, "both backlogs", func() bool { return log.delivered("high") == n && log.delivered("low") == n })
	if m := maxHigh.Load(); m != 1 {
		t.Errorf("the lane with Concurrency 1 ran %d deliveries at once", m)
	}
	// With one worker of four used by the high lane, the low lane runs
	// beside it: it must not wait for the high lane's whole backlog.
	order := log.order()
	first, last := span(order, "high")
	low := 0
	for _, l := range order[first:last] {
		if l == "low" {
			low++
		}
	}
	t.Logf("low-priority deliveries started while the capped high lane had a backlog: %d", low)
	if low < n/2 {
		t.Errorf("the low-priority lane started %d of its %d deliveries while the high lane, capped at 1, had a backlog; want it to use the 3 workers the high lane leaves",
			low, n)
	}
}

// TestPoolShutdown: a lane waiting for a pool worker stops with the relay,
// and its messages stay WAITING for the next relay.
func TestPoolShutdown(t *testing.T) {
	ts := sqliteStore(t)
	started := make(chan struct{}, 1)
	var delivered atomic.Int64
	dest := ferry.DestinationFunc(func(ctx context.Context, r *ferry.Record) error {
		if r.Lane == "stuck" {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done() // holds the pool's only worker until shutdown cancels it
			return ctx.Err()
		}
		delivered.Add(1)
		return nil
	})
	backlog(t, ts, "stuck", 1)
	stop := startRelay(t, relay.Options{Store: ts.Store, Routes: []relay.Route{{Topic: "*", Destination: dest}},
		ShutdownTimeout: 200 * time.Millisecond,
		Pools:           []relay.Pool{{Name: "workers", Concurrency: 1}},
		Lanes:           []relay.Lane{{Name: "stuck", Pool: "workers"}, {Name: "waiting", Pool: "workers"}}})
	<-started
	backlog(t, ts, "waiting", 10)
	// Let the other lane read its messages and wait for the worker (a
	// state to reach, not a time to measure).
	time.Sleep(300 * time.Millisecond)
	stop() // fails the test if Run does not return
	recs, err := ts.List(context.Background(), ferry.Filter{Lane: "waiting", Status: ferry.StatusWaiting})
	if err != nil {
		t.Fatal(err)
	}
	if d := delivered.Load(); len(recs) != 10 || d != 0 {
		t.Errorf("after shutdown, the lane that waited for the only worker has %d messages WAITING and %d delivered; want all 10 WAITING",
			len(recs), d)
	}
}

func TestPoolBadOptions(t *testing.T) {
	_, err := relay.New(relay.Options{Store: sqliteStore(t),
		Pools: []relay.Pool{{Name: "p", Concurrency: 4}, {Name: "p", Concurrency: 2}, {Name: "zero"}},
		Lanes: []relay.Lane{{Name: "a", Pool: "nope"}, {Name: "b", Priority: 2}, {Name: "c", Pool: "p", Priority: -1}}})
	if err == nil {
		t.Fatal("New accepted bad pools")
	}
	for _, want := range []string{
		`pool "p" is configured twice`,
		`pool "zero": concurrency 0 must be at least 1`,
		`lane "a": pool "nope" is not configured (pools: p, zero)`,
		`lane "b": priority 2 has no effect without a pool`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), `lane "c"`) {
		t.Errorf("error %q complains about lane c, whose pool and negative priority are fine", err)
	}
}
