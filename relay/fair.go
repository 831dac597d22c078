package relay

import (
	"context"
	"sync"
)

// fairGate shares the relay's database work among lanes by weight. Each
// lane's fetches and outcome writes pass through it; while there is room
// they go through at once, and when lanes compete, the waiting operation
// of the lane that has used the least capacity per unit of weight goes
// next (weighted fair queueing). A flooding lane therefore cannot make an
// idle lane's next operation wait behind its queue: at worst behind one of
// its operations that is already running.
type fairGate struct {
	mu       sync.Mutex
	capacity int
	inUse    int
	lanes    map[string]*fairLane
}

type fairLane struct {
	weight  float64
	used    float64 // virtual time: cost granted divided by weight
	waiting []waiter
}

type waiter struct {
	ch   chan struct{}
	cost float64
}

// finish is the virtual time at which the lane's next operation would end:
// the waiter with the smallest goes next (self-clocked fair queueing).
func (l *fairLane) finish() float64 { return l.used + l.waiting[0].cost/l.weight }

func newFairGate(capacity int, weights map[string]int) *fairGate {
	g := &fairGate{capacity: capacity, lanes: map[string]*fairLane{}}
	for name, w := range weights {
		g.lanes[name] = &fairLane{weight: float64(w)}
	}
	return g
}

// acquire waits for a slot for lane; cost is the rows the operation
// touches. The caller must call release once when the operation is over.
func (g *fairGate) acquire(ctx context.Context, lane string, cost int) error {
	g.mu.Lock()
	l := g.lanes[lane]
	// A lane coming back from idle starts no lower than the lanes now
	// waiting, so it cannot bank credit while idle and then monopolize.
	if len(l.waiting) == 0 {
		l.used = max(l.used, g.minUsedLocked())
	}
	if g.inUse < g.capacity && !g.anyWaitingLocked() {
		g.inUse++
		l.used += float64(cost) / l.weight
		g.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	l.waiting = append(l.waiting, waiter{ch: ch, cost: float64(cost)})
	g.mu.Unlock()
	select {
	case <-ch:
		g.mu.Lock()
		l.used += float64(cost) / l.weight
		g.mu.Unlock()
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		for i, w := range l.waiting {
			if w.ch == ch {
				l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
				return ctx.Err()
			}
		}
		// Granted while giving up: pass the slot on.
		g.releaseLocked()
		return ctx.Err()
	}
}

func (g *fairGate) release() {
	g.mu.Lock()
	g.releaseLocked()
	g.mu.Unlock()
}

func (g *fairGate) releaseLocked() {
	var next *fairLane
	for _, l := range g.lanes {
		if len(l.waiting) > 0 && (next == nil || l.finish() < next.finish()) {
			next = l
		}
	}
	if next == nil {
		g.inUse--
		return
	}
	w := next.waiting[0]
	next.waiting = next.waiting[1:]
	close(w.ch) // the slot moves to the waiter; inUse is unchanged
}

func (g *fairGate) anyWaitingLocked() bool {
	for _, l := range g.lanes {
		if len(l.waiting) > 0 {
			return true
		}
	}
	return false
}

// minUsedLocked is the lowest virtual time among lanes with waiters, or 0.
func (g *fairGate) minUsedLocked() float64 {
	m, found := 0.0, false
	for _, l := range g.lanes {
		if len(l.waiting) > 0 && (!found || l.used < m) {
			m, found = l.used, true
		}
	}
	return m
}
