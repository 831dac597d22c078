package bench

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// clock measures times as offsets from its start, on the monotonic
// clock, so they can be kept in atomics and compared across goroutines.
type clock struct{ start time.Time }

func newClock() clock { return clock{start: time.Now()} }

// now is the time since the clock started.
func (c clock) now() time.Duration { return time.Since(c.start) }

// at converts t to an offset.
func (c clock) at(t time.Time) time.Duration { return t.Sub(c.start) }

// tracker measures latency from commit to delivery, per message id. The
// producer records the commit when tx.Commit has returned, the destination
// records the delivery when it is called. A delivery can come before the
// producer has recorded the commit (the relay may see the row as soon as
// the commit is durable, before the client hears of it); that message's
// latency counts as zero.
type tracker struct {
	clock clock
	mu    sync.Mutex
	// commits and delivered hold the messages seen on one side only, by
	// id: the offset of their commit, or of their delivery.
	commits   map[string]time.Duration
	delivered map[string]time.Duration
	samples   []sample        // messages seen on both sides, in the order completed
	done      map[string]bool // the ids of samples
	// commitsByID keeps every commit, for latencies to other events
	// (see noticeTracker).
	commitsByID map[string]time.Duration
}

// sample is one message's commit and delivery.
type sample struct {
	commit, deliver time.Duration
}

// latency is the sample's commit-to-delivery time, never negative.
func (s sample) latency() time.Duration { return max(0, s.deliver-s.commit) }

func newTracker(c clock) *tracker {
	return &tracker{clock: c, commits: map[string]time.Duration{}, delivered: map[string]time.Duration{}, done: map[string]bool{},
		commitsByID: map[string]time.Duration{}}
}

// committed records that the messages with ids committed at t.
func (t *tracker) committed(ids []string, at time.Time) {
	off := t.clock.at(at)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		t.commitsByID[id] = off
		if d, ok := t.delivered[id]; ok {
			delete(t.delivered, id)
			t.done[id] = true
			t.samples = append(t.samples, sample{commit: off, deliver: d})
			continue
		}
		t.commits[id] = off
	}
}

// deliveredNow records that the message with id was delivered now. A
// second delivery of a message (at least once) is not counted again.
func (t *tracker) deliveredNow(id string) {
	off := t.clock.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done[id] {
		return
	}
	if c, ok := t.commits[id]; ok {
		delete(t.commits, id)
		t.done[id] = true
		t.samples = append(t.samples, sample{commit: c, deliver: off})
		return
	}
	if _, ok := t.delivered[id]; !ok {
		t.delivered[id] = off
	}
}

// window returns the latencies of the messages committed in [from, to)
// and, separately, how many of them are not delivered yet. For those, it
// adds a lower bound of their latency (until - commit) to lat if until is
// positive, so that a phase cut short cannot hide them.
func (t *tracker) window(from, to, until time.Duration) (lat []time.Duration, pending int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.samples {
		if s.commit >= from && s.commit < to {
			lat = append(lat, s.latency())
		}
	}
	for _, c := range t.commits {
		if c >= from && c < to {
			pending++
			if until > 0 {
				lat = append(lat, max(0, until-c))
			}
		}
	}
	return lat, pending
}

// deliveredIn returns the latencies of the messages delivered in
// [from, to): what a live display shows for the last second.
func (t *tracker) deliveredIn(from, to time.Duration) []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lat []time.Duration
	// Samples are appended in completion order, roughly delivery order:
	// walk back until well before from.
	for i := len(t.samples) - 1; i >= 0; i-- {
		s := t.samples[i]
		if s.deliver < from-time.Second {
			break
		}
		if s.deliver >= from && s.deliver < to {
			lat = append(lat, s.latency())
		}
	}
	return lat
}

// pendingBefore counts messages committed before to and not delivered.
func (t *tracker) pendingBefore(to time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.commits {
		if c < to {
			n++
		}
	}
	return n
}

// commitOf returns the offset at which the message with id committed.
func (t *tracker) commitOf(id string) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.commitsByID[id]
	return c, ok
}

// stats are the percentiles of a set of latencies.
type stats struct {
	n             int
	p50, p99, max time.Duration
}

// summarize sorts lat and returns its nearest-rank percentiles.
func summarize(lat []time.Duration) stats {
	if len(lat) == 0 {
		return stats{}
	}
	slices.Sort(lat)
	return stats{n: len(lat), p50: percentile(lat, 0.50), p99: percentile(lat, 0.99), max: lat[len(lat)-1]}
}

// percentile returns the nearest-rank q-th percentile of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	rank := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pace runs write at rate calls per second, spread over workers
// goroutines, until ctx is done. Calls are scheduled at fixed times from
// the start; a call that cannot keep up is made late rather than skipped,
// as a service's requests would be. It returns the number of calls made
// and the first error other than ctx's.
func pace(ctx context.Context, rate float64, workers int, write func(ctx context.Context, i int) error) (int, error) {
	if rate <= 0 {
		<-ctx.Done()
		return 0, nil
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	var (
		next  atomic.Int64
		made  atomic.Int64
		first error
		once  sync.Once
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(1, workers) {
		wg.Go(func() {
			timer := time.NewTimer(0)
			defer timer.Stop()
			<-timer.C
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
					timer.Reset(wait)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
				if err := write(ctx, i); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { first = err; cancel() })
					}
					return
				}
				made.Add(1)
			}
		})
	}
	wg.Wait()
	return int(made.Load()), first
}
