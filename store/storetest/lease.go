package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
)

var leaseCases = []testCase{
	{"FairShare", testLeaseFairShare},
	{"Renew", testLeaseRenew},
	{"Expiry", testLeaseExpiry},
	{"Release", testLeaseRelease},
	{"Concurrent", testLeaseConcurrent},
}

// lease calls s.Lease and fails t on error.
func lease(t *testing.T, s ferry.Store, node string, ttl time.Duration) ferry.Lease {
	t.Helper()
	l, err := s.Lease(t.Context(), node, ttl)
	if err != nil {
		t.Fatalf("Lease(%s, %v): %v", node, ttl, err)
	}
	if !slices.IsSorted(l.Shards) {
		t.Errorf("Lease(%s): want Shards ascending, got %v", node, l.Shards)
	}
	return l
}

// release calls s.Release and fails t on error.
func release(t *testing.T, s ferry.Store, node string, shards []int) {
	t.Helper()
	if err := s.Release(t.Context(), node, shards); err != nil {
		t.Fatalf("Release(%s, %v): %v", node, shards, err)
	}
}

// wantLease checks a Lease's result.
func wantLease(t *testing.T, what string, got ferry.Lease, shards []int, fair, nodes int) {
	t.Helper()
	if shards == nil {
		shards = []int{}
	}
	if !slices.Equal(got.Shards, shards) || got.Fair != fair || got.Nodes != nodes {
		t.Errorf("%s: want shards %s, Fair %d, Nodes %d; got shards %s, Fair %d, Nodes %d",
			what, shortList(shards), fair, nodes, shortList(got.Shards), got.Fair, got.Nodes)
	}
}

// disjoint checks that no shard is held by two nodes.
func disjoint(t *testing.T, what string, held map[string][]int) {
	t.Helper()
	owner := map[int]string{}
	for node, shards := range held {
		for _, sh := range shards {
			if other, ok := owner[sh]; ok {
				t.Errorf("%s: shard %d is held by both %s and %s", what, sh, other, node)
			}
			owner[sh] = node
		}
	}
}

// testLeaseFairShare: the first node takes every shard; a second node gets
// its share once the first releases its surplus, never before.
func testLeaseFairShare(t *testing.T, open factory) {
	e := newEnv(t, open)
	s1, s2 := e.s, e.again(t).s // two relay instances
	const ttl = time.Minute
	half := ferry.Shards / 2

	a := lease(t, s1, "node-a", ttl)
	wantLease(t, "first node's Lease", a, allShards(), ferry.Shards, 1)
	b := lease(t, s2, "node-b", ttl)
	wantLease(t, "second node's Lease while the first holds everything", b, nil, half, 2)
	a = lease(t, s1, "node-a", ttl)
	wantLease(t, "first node's renewal after the second arrived", a, allShards(), half, 2)
	if t.Failed() {
		return
	}

	surplus := a.Shards[a.Fair:]
	release(t, s1, "node-a", surplus)
	b = lease(t, s2, "node-b", ttl)
	wantLease(t, "second node's Lease after the first released its surplus", b, surplus, half, 2)
	a = lease(t, s1, "node-a", ttl)
	wantLease(t, "first node's renewal after releasing its surplus", a, allShards()[:half], half, 2)
	disjoint(t, "after rebalancing", map[string][]int{"node-a": a.Shards, "node-b": b.Shards})
	b = lease(t, s2, "node-b", ttl)
	wantLease(t, "second node's renewal", b, surplus, half, 2)
}

// testLeaseRenew: a node's Lease renews what it holds for another ttl,
// so its shards outlive the first lease while it keeps renewing.
func testLeaseRenew(t *testing.T, open factory) {
	e := newEnv(t, open)
	s1, s2 := e.s, e.again(t).s
	const ttl = 2 * time.Second

	a := lease(t, s1, "node-a", ttl)
	wantLease(t, "first node's Lease", a, allShards(), ferry.Shards, 1)
	time.Sleep(ttl * 3 / 5)
	a = lease(t, s1, "node-a", ttl)
	wantLease(t, "first node's renewal", a, allShards(), ferry.Shards, 1)
	time.Sleep(ttl * 3 / 5) // past the first lease's end, within the renewal
	b := lease(t, s2, "node-b", ttl)
	wantLease(t, "second node's Lease after the first lease's ttl, within the renewal", b, nil, ferry.Shards/2, 2)
	a = lease(t, s1, "node-a", ttl)
	wantLease(t, "first node's second renewal", a, allShards(), ferry.Shards/2, 2)
}

// testLeaseExpiry: a node that stops renewing loses its shards once its
// lease has lapsed by the database's clock, and cannot take them back.
func testLeaseExpiry(t *testing.T, open factory) {
	e := newEnv(t, open)
	s1, s2 := e.s, e.again(t).s
	const ttl = time.Second

	a := lease(t, s1, "node-a", ttl)
	wantLease(t, "first node's Lease", a, allShards(), ferry.Shards, 1)
	b := lease(t, s2, "node-b", ttl)
	wantLease(t, "second node's Lease while the first's lease is live", b, nil, ferry.Shards/2, 2)

	time.Sleep(ttl + ttl/2) // node-a stops renewing; its lease lapses
	b = lease(t, s2, "node-b", ttl)
	wantLease(t, "second node's Lease after the first's lapsed", b, allShards(), ferry.Shards, 1)
	a = lease(t, s1, "node-a", ttl)
	if len(a.Shards) != 0 {
		t.Errorf("first node's Lease after the second took its lapsed shards: want none (they are live elsewhere), got %s", shortList(a.Shards))
	}
	disjoint(t, "after the takeover", map[string][]int{"node-a": a.Shards, "node-b": b.Shards})
}

// testLeaseRelease: Release gives up only the node's own leases; with nil
// it gives up all of them and forgets the node.
func testLeaseRelease(t *testing.T, open factory) {
	e := newEnv(t, open)
	s1, s2 := e.s, e.again(t).s
	const ttl = time.Minute

	lease(t, s1, "node-a", ttl)
	lease(t, s2, "node-b", ttl)
	release(t, s2, "node-b", []int{0, 1, 2}) // shards node-b does not hold
	b := lease(t, s2, "node-b", ttl)
	wantLease(t, "second node's Lease after it released shards of the first", b, nil, ferry.Shards/2, 2)

	release(t, s1, "node-a", []int{})
	a := lease(t, s1, "node-a", ttl)
	wantLease(t, "Lease after Release of an empty, non-nil list", a, allShards(), ferry.Shards/2, 2)

	release(t, s1, "node-a", nil)
	b = lease(t, s2, "node-b", ttl)
	wantLease(t, "second node's Lease after the first released all (nil) and was forgotten", b, allShards(), ferry.Shards, 1)

	release(t, s2, "node-b", []int{5, 7})
	b = lease(t, s2, "node-b", ttl)
	wantLease(t, "Lease after releasing shards 5 and 7 and leasing again (they are free)", b, allShards(), ferry.Shards, 1)
}

// testLeaseConcurrent: nodes leasing at once never hold one shard
// together, and settle on equal shares when each releases its surplus.
func testLeaseConcurrent(t *testing.T, open factory) {
	e := newEnv(t, open)
	stores := []ferry.Store{e.s, e.again(t).s}
	const nodes, ttl = 4, time.Minute
	fair := (ferry.Shards + nodes - 1) / nodes
	held := map[string][]int{}
	var mu sync.Mutex
	// step leases for node and releases what it holds beyond its share, as
	// a relay does, and records what it then holds.
	step := func(i int) error {
		node := fmt.Sprintf("node-%d", i)
		s := stores[i%len(stores)]
		l, err := s.Lease(t.Context(), node, ttl)
		if err != nil {
			return fmt.Errorf("Lease(%s): %w", node, err)
		}
		if len(l.Shards) > l.Fair {
			if err := s.Release(t.Context(), node, l.Shards[l.Fair:]); err != nil {
				return fmt.Errorf("Release(%s): %w", node, err)
			}
			l.Shards = l.Shards[:l.Fair]
		}
		mu.Lock()
		held[node] = l.Shards
		mu.Unlock()
		return nil
	}
	for round := range 5 {
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				if err := step(i); err != nil {
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		disjoint(t, fmt.Sprintf("round %d of concurrent leases", round), held)
	}
	// Settle without races, then every node holds its fair share.
	for range 2 {
		for i := range nodes {
			if err := step(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	var all []int
	for i := range nodes {
		node := fmt.Sprintf("node-%d", i)
		if len(held[node]) != fair {
			t.Errorf("after settling: want %s to hold %d shards (its fair share of %d among %d nodes), got %s", node, fair, ferry.Shards, nodes, shortList(held[node]))
		}
		all = append(all, held[node]...)
	}
	slices.Sort(all)
	if !slices.Equal(all, allShards()) {
		t.Errorf("after settling: want every shard held exactly once, got %s", shortList(all))
	}
}
