package relay

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestFairGateSharesByWeight keeps two lanes' operations waiting for the
// one slot of a gate that neither lane's kept slot covers, and checks that
// grants follow the weights.
func TestFairGateSharesByWeight(t *testing.T) {
	g := newFairGate(3, map[string]int{"online": 3, "batch": 1})
	ctx := context.Background()
	var held []func()
	for _, lane := range []string{"online", "batch", "batch"} { // every slot taken
		release, err := g.acquire(ctx, lane, 1)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	start := func(lane string, n int) {
		for range n {
			wg.Go(func() {
				release, err := g.acquire(ctx, lane, 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, lane)
				mu.Unlock()
				release()
			})
		}
	}
	start("online", 30)
	start("batch", 30)
	waitQueued(g, 60)
	held[2]()
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
	held[0]()
	held[1]()
	if g.inUse != 0 || g.idle != 2 {
		t.Errorf("after every release: %d slots in use, %d lanes idle; want 0 and 2", g.inUse, g.idle)
	}
}

// TestFairGateKeepsASlotForAnIdleLane: a lane that floods the gate cannot
// take the slot kept for an idle lane, whose operation starts at once;
// when that lane is idle again, its slot is kept again.
func TestFairGateKeepsASlotForAnIdleLane(t *testing.T) {
	g := newFairGate(4, map[string]int{"online": 1, "batch": 1})
	ctx := context.Background()
	var batch []func()
	for range 3 {
		release, err := g.acquire(ctx, "batch", 1000)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, release)
	}
	queued := make(chan func())
	go func() {
		release, _ := g.acquire(ctx, "batch", 1000)
		queued <- release
	}()
	waitQueued(g, 1) // the fourth slot is online's

	for range 2 { // online comes back from idle twice
		got := make(chan func())
		go func() {
			release, _ := g.acquire(ctx, "online", 1)
			got <- release
		}()
		select {
		case release := <-got:
			release()
		case <-time.After(5 * time.Second):
			t.Fatal("the online lane's operation waited behind the batch lane's")
		}
	}
	select {
	case <-queued:
		t.Fatal("the batch lane got the slot kept for the online lane")
	default:
	}
	batch[0]()
	(<-queued)()
	batch[1]()
	batch[2]()
}

// TestFairGateCancel: an operation that gives up while waiting leaves the
// gate as it found it.
func TestFairGateCancel(t *testing.T) {
	g := newFairGate(1, map[string]int{"batch": 1})
	release, _ := g.acquire(context.Background(), "batch", 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := g.acquire(ctx, "batch", 1)
		done <- err
	}()
	waitQueued(g, 1)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled acquire returned no error")
	}
	release()
	if g.inUse != 0 || g.idle != 1 {
		t.Errorf("%d slots in use, %d lanes idle; want 0 and 1", g.inUse, g.idle)
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
		time.Sleep(time.Millisecond)
	}
}
