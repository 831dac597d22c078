package relay

import (
	"container/heap"
	"time"
)

// timerQueue holds entries waiting for a retry, earliest first, behind a
// single timer.
type timerQueue struct {
	h     timerHeap
	t     *time.Timer
	armed time.Time // when t fires; zero if stopped
}

type timed struct {
	at time.Time
	e  *entry
}

type timerHeap []timed

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timed)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (q *timerQueue) add(e *entry, at time.Time) {
	heap.Push(&q.h, timed{at: at, e: e})
	q.arm()
}

// arm sets the timer for the earliest entry.
func (q *timerQueue) arm() {
	if len(q.h) == 0 {
		return
	}
	at := q.h[0].at
	if !q.armed.IsZero() && !at.Before(q.armed) {
		return
	}
	if q.t == nil {
		q.t = time.NewTimer(time.Until(at))
	} else {
		q.t.Reset(time.Until(at))
	}
	q.armed = at
}

// timer returns the timer to wait on, or nil if nothing waits.
func (q *timerQueue) timer() *time.Timer {
	if q.armed.IsZero() {
		return nil
	}
	return q.t
}

// fired notes that the timer went off.
func (q *timerQueue) fired() { q.armed = time.Time{} }

// due pops the entries due at now and re-arms for the rest.
func (q *timerQueue) due(now time.Time) []*entry {
	var out []*entry
	for len(q.h) > 0 && !q.h[0].at.After(now) {
		out = append(out, heap.Pop(&q.h).(timed).e)
	}
	q.arm()
	return out
}

func (q *timerQueue) stop() {
	if q.t != nil {
		q.t.Stop()
	}
	q.armed = time.Time{}
}
