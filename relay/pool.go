package relay

import "sync"

// pool counts the delivery slots of a Pool and decides which of its
// lanes gets the next free one. It never blocks: a lane's loop asks for
// a slot (acquire) each time it has a message ready, and when the answer
// is no it goes on with its other work until the pool signals its wake
// channel, then asks again.
//
// The pool only decides; each lane's loop does the waiting, so a lane
// that waits for a slot still reacts to everything else (results, shard
// changes, shutdown), and nothing is stuck in the pool when the relay
// stops.
//
// Order: among the lanes that want a slot, the one with the lowest
// priority value goes first, always; among equal priorities, the one with
// the smallest finish tag, its virtual time plus 1/weight (self-clocked
// fair queueing), so that under contention lanes start deliveries in
// proportion to their weights.
type pool struct {
	name     string
	mu       sync.Mutex
	capacity int
	used     int // slots held by deliveries, or by a lane about to reuse one
	members  []*poolMember
	// clock is, per priority, the start tag of the latest grant: where a
	// lane that comes back from idle resumes, so it cannot bank credit
	// while idle and then take every slot until the others catch up.
	clock map[int]float64
}

// poolMember is a lane's place in its pool.
type poolMember struct {
	name     string
	priority int
	weight   float64
	// wake is signalled when the lane may get a slot if it asks again.
	wake chan struct{}

	// Guarded by the pool's mu.
	wanting bool    // the lane has a message ready and room under its own Concurrency
	vt      float64 // virtual time: the finish tag of the lane's latest grant
}

func newPool(p Pool) *pool {
	return &pool{name: p.Name, capacity: p.Concurrency, clock: map[int]float64{}}
}

// join adds a lane to the pool.
func (p *pool) join(cfg Lane) *poolMember {
	m := &poolMember{name: cfg.Name, priority: cfg.Priority, weight: float64(cfg.Weight), wake: make(chan struct{}, 1)}
	p.mu.Lock()
	p.members = append(p.members, m)
	p.mu.Unlock()
	return m
}

// acquire asks for a slot for m, which has a message ready. held says
// that m already holds a slot it no longer uses (a delivery of it just
// ended): the slot is given back first, so that a lane ahead of m gets it.
// On false, m stays among the wanting lanes until it gets a slot or calls
// withdraw, and its wake channel is signalled when it should ask again.
func (p *pool) acquire(m *poolMember, held bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if held {
		p.used--
	}
	if !m.wanting {
		m.wanting = true
		m.vt = max(m.vt, p.clock[m.priority])
	}
	if p.used < p.capacity && !p.aheadLocked(m) {
		p.used++
		p.clock[m.priority] = max(p.clock[m.priority], m.vt)
		m.vt += 1 / m.weight
		return true
	}
	// A slot may be free for a lane ahead of m.
	p.kickLocked()
	return false
}

// release gives back n slots.
func (p *pool) release(n int) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	p.used -= n
	p.kickLocked()
	p.mu.Unlock()
}

// withdraw says that m wants no slot for now: it has no message ready, it
// reached its own Concurrency, it is paused, or it is stopping. A lane
// that stays among the wanting after that would hold back every lane
// behind it.
func (p *pool) withdraw(m *poolMember) {
	p.mu.Lock()
	if m.wanting {
		m.wanting = false
		p.kickLocked()
	}
	p.mu.Unlock()
}

// aheadLocked reports whether another wanting lane goes before m.
func (p *pool) aheadLocked(m *poolMember) bool {
	for _, o := range p.members {
		if o != m && o.wanting && o.before(m) {
			return true
		}
	}
	return false
}

// before reports whether m goes before o.
func (m *poolMember) before(o *poolMember) bool {
	if m.priority != o.priority {
		return m.priority < o.priority
	}
	return m.vt+1/m.weight < o.vt+1/o.weight
}

// kickLocked wakes the first wanting lane if a slot is free.
func (p *pool) kickLocked() {
	if p.used >= p.capacity {
		return
	}
	var next *poolMember
	for _, m := range p.members {
		if m.wanting && (next == nil || m.before(next)) {
			next = m
		}
	}
	if next != nil {
		signal(next.wake)
	}
}
