package relay

import (
	"context"
	"sync"
)

// fairGate shares the relay's database work among lanes by weight. Each
// lane's fetches and outcome writes pass through it. One slot is kept for
// every lane that holds none, so a lane coming back from idle starts its
// next operation at once, however busy the others are: a flooding lane
// can take every slot but those. Beyond that, while there is room
// operations go through at once, and when lanes compete, the waiting
// operation of the lane that has used the least capacity per unit of
// weight goes next (weighted fair queueing).
type fairGate struct {
	mu       sync.Mutex
	capacity int
	inUse    int
	// idle counts the lanes holding no slot, one slot kept for each:
	// inUse+idle never exceeds capacity.
	idle  int
	lanes map[string]*fairLane
}

type fairLane struct {
	weight  float64
	used    float64 // virtual time: cost granted divided by weight
	held    int     // slots held
	waiting []waiter
}

type waiter struct {
	ch   chan struct{}
	cost float64
}

// finish is the virtual time at which the lane's next operation would end:
// the waiter with the smallest goes next (self-clocked fair queueing).
func (l *fairLane) finish() float64 { return l.used + l.waiting[0].cost/l.weight }

// newFairGate returns a gate with capacity slots, at least one per lane.
func newFairGate(capacity int, weights map[string]int) *fairGate {
	g := &fairGate{capacity: max(capacity, len(weights)), idle: len(weights), lanes: map[string]*fairLane{}}
	for name, w := range weights {
		g.lanes[name] = &fairLane{weight: float64(w)}
	}
	return g
}

// acquire waits for a slot for lane; cost is the rows the operation
// touches. The caller must call release once when the operation is over.
func (g *fairGate) acquire(ctx context.Context, lane string, cost int) (release func(), err error) {
	g.mu.Lock()
	l := g.lanes[lane]
	release = func() {
		g.mu.Lock()
		g.releaseLocked(l)
		g.mu.Unlock()
	}
	// A lane coming back from idle starts no lower than the lanes now
	// waiting, so it cannot bank credit while idle and then monopolize.
	if len(l.waiting) == 0 {
		l.used = max(l.used, g.minUsedLocked())
	}
	if l.held == 0 || (g.roomLocked() && !g.anyWaitingLocked()) {
		g.grantLocked(l)
		l.used += float64(cost) / l.weight
		g.mu.Unlock()
		return release, nil
	}
	ch := make(chan struct{})
	l.waiting = append(l.waiting, waiter{ch: ch, cost: float64(cost)})
	g.mu.Unlock()
	select {
	case <-ch:
		g.mu.Lock()
		l.used += float64(cost) / l.weight
		g.mu.Unlock()
		return release, nil
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		for i, w := range l.waiting {
			if w.ch == ch {
				l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
				return nil, ctx.Err()
			}
		}
		// Granted while giving up: pass the slot on.
		g.releaseLocked(l)
		return nil, ctx.Err()
	}
}

// roomLocked reports whether a lane that holds a slot may take another.
func (g *fairGate) roomLocked() bool { return g.inUse+g.idle < g.capacity }

func (g *fairGate) grantLocked(l *fairLane) {
	if l.held == 0 {
		g.idle-- // the lane takes the slot kept for it
	}
	l.held++
	g.inUse++
}

// releaseLocked gives l's slot back and hands free slots to waiters, the
// fairest first.
func (g *fairGate) releaseLocked(l *fairLane) {
	l.held--
	g.inUse--
	if l.held == 0 {
		g.idle++
	}
	for {
		var next *fairLane
		for _, l := range g.lanes {
			if len(l.waiting) > 0 && (l.held == 0 || g.roomLocked()) && (next == nil || l.finish() < next.finish()) {
				next = l
			}
		}
		if next == nil {
			return
		}
		w := next.waiting[0]
		next.waiting = next.waiting[1:]
		g.grantLocked(next)
		close(w.ch)
	}
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
