package relay

import (
	"context"
	"sync"
	"testing"
)

// TestFairGateSharesByWeight keeps two lanes' operations waiting on a gate
// with room for one and checks that grants follow the weights.
func TestFairGateSharesByWeight(t *testing.T) {
	g := newFairGate(1, map[string]int{"online": 3, "batch": 1})
	ctx := context.Background()
	if err := g.acquire(ctx, "batch", 1); err != nil { // hold the only slot
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	start := func(lane string, n int) {
		for range n {
			wg.Go(func() {
				if err := g.acquire(ctx, lane, 1); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, lane)
				mu.Unlock()
				g.release()
			})
		}
	}
	start("online", 30)
	start("batch", 30)
	waitQueued(g, 60)
	g.release()
	wg.Wait()
	// While both lanes were waiting (the first 40 grants), online must get
	// about three of every four.
	online := 0
	for _, l := range order[:40] {
		if l == "online" {
			online++
		}
	}
	if online < 28 || online > 32 {
		t.Errorf("online got %d of the first 40 grants with weights 3:1; want about 30 (order %v)", online, order)
	}
}

// TestFairGateIdleLaneGoesFirst: a lane that was idle does not wait behind
// a busy lane's queue.
func TestFairGateIdleLaneGoesFirst(t *testing.T) {
	g := newFairGate(1, map[string]int{"online": 1, "batch": 1})
	ctx := context.Background()
	g.acquire(ctx, "batch", 1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var order []string
	grant := func(lane string, cost int) {
		defer wg.Done()
		g.acquire(ctx, lane, cost)
		mu.Lock()
		order = append(order, lane)
		mu.Unlock()
		g.release()
	}
	wg.Add(10)
	for range 10 {
		go grant("batch", 1000)
	}
	waitQueued(g, 10)
	wg.Add(1)
	go grant("online", 1)
	waitQueued(g, 11)
	g.release()
	wg.Wait()
	if order[0] != "online" {
		t.Errorf("grant order %v; the online lane's single operation should go before the queued batch ones", order)
	}
}

func waitQueued(g *fairGate, n int) {
	for {
		g.mu.Lock()
		q := 0
		for _, l := range g.lanes {
			q += len(l.waiting)
		}
		g.mu.Unlock()
		if q >= n {
			return
		}
	}
}
