package relay

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
)

// maxAckBatch bounds the outcomes recorded in one Store.Complete call.
const maxAckBatch = 1000

// acker records delivery outcomes in batches. Outcomes pile up while a
// write is running and go together in the next one, so batches grow with
// load; a small batch waits a few milliseconds for company (ackLinger). It never drops an outcome:
// while the database is away it retries, and the messages stay in memory.
type acker struct {
	l       *lane
	mu      sync.Mutex
	pending []ferry.Outcome
	closed  bool
	signal  chan struct{}
	// ctx ends ShutdownTimeout after close: then the acker gives up on a
	// database that does not answer.
	ctx      context.Context
	giveUp   context.CancelFunc
	loopGone chan struct{} // closed when the loop no longer takes reports
}

func newAcker(l *lane) *acker {
	ctx, cancel := context.WithCancel(context.Background())
	return &acker{l: l, signal: make(chan struct{}, 1), ctx: ctx, giveUp: cancel, loopGone: make(chan struct{})}
}

func (a *acker) add(o ferry.Outcome) {
	a.mu.Lock()
	a.pending = append(a.pending, o)
	a.mu.Unlock()
	signal(a.signal)
}

// close makes run return once everything pending is recorded.
func (a *acker) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	time.AfterFunc(a.l.r.opts.ShutdownTimeout, a.giveUp)
	close(a.loopGone)
	signal(a.signal)
}

// ackWriters is how many outcome writes a lane keeps in flight: one
// batch is written while the next one gathers, so the database's time per
// write is not the lane's ceiling.
const ackWriters = 2

// ackLinger is how long a writer holding fewer than ackLingerBelow
// outcomes waits for more to share its write. A lane delivering a few
// hundred messages a second would otherwise write each outcome on its
// own, and a statement costs the database several times more to plan,
// run and commit than the row it changes. Only when the outcome is
// recorded is later than it could be; the delivery is not.
const (
	ackLinger      = 5 * time.Millisecond
	ackLingerBelow = 16
)

func (a *acker) run() {
	var wg sync.WaitGroup
	for range ackWriters {
		wg.Go(a.writeLoop)
	}
	wg.Wait()
	a.giveUp()
}

func (a *acker) writeLoop() {
	for {
		a.mu.Lock()
		batch := a.pending[:min(len(a.pending), maxAckBatch)]
		a.pending = a.pending[len(batch):]
		closed, more := a.closed, len(a.pending) > 0
		a.mu.Unlock()
		if len(batch) == 0 {
			if closed {
				return
			}
			select {
			case <-a.signal:
			case <-a.loopGone: // closed by close: drain what is left, then stop
			}
			continue
		}
		if len(batch) < ackLingerBelow && !closed {
			batch = a.linger(batch)
			more = a.hasPending()
		}
		if more {
			signal(a.signal) // more is waiting: let the other writer take it
		}
		a.write(batch)
	}
}

// linger waits up to ackLinger for outcomes to join batch, and returns
// the batch grown by them.
func (a *acker) linger(batch []ferry.Outcome) []ferry.Outcome {
	t := time.NewTimer(ackLinger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-a.loopGone: // shutting down: write at once
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := min(len(a.pending), maxAckBatch-len(batch))
	// Clipped: past its end, batch shares its array with what the other
	// writer may have taken meanwhile.
	batch = append(slices.Clip(batch), a.pending[:n]...)
	a.pending = a.pending[n:]
	return batch
}

func (a *acker) hasPending() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending) > 0
}

// write records batch, retrying until it succeeds; after shutdown it gives
// up after the shutdown timeout (the messages stay WAITING and are
// delivered again: at least once).
func (a *acker) write(batch []ferry.Outcome) {
	r, ctx := a.l.r, a.ctx
	pause := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := a.l.gated(ctx, len(batch), func() error { return r.opts.Store.Complete(ctx, batch) })
		if err == nil {
			select {
			case a.l.persisted <- batch:
			case <-a.loopGone:
			}
			return
		}
		if ctx.Err() != nil {
			r.log.Error("shutdown: could not record outcomes; those messages will be delivered again",
				"lane", a.l.cfg.Name, "outcomes", len(batch), "error", err)
			return
		}
		if attempt == 1 || attempt%20 == 0 {
			r.log.Error("cannot record delivery outcomes; retrying", "lane", a.l.cfg.Name,
				"outcomes", len(batch), "attempt", attempt, "error", err)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
		pause = min(2*pause, 2*time.Second)
	}
}
