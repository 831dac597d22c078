package relay

import "testing"

// woken reports whether m's wake channel was signalled, and clears it.
func woken(m *poolMember) bool {
	select {
	case <-m.wake:
		return true
	default:
		return false
	}
}

// TestPoolHandOver walks a pool of one slot through the hand-overs the
// lanes' loops rely on: a free slot goes to the lane of lowest priority
// that wants one, even against a lane that already held it; a lane that
// withdraws (its ready messages turned out stale) passes its turn on.
func TestPoolHandOver(t *testing.T) {
	p := newPool(Pool{Name: "p", Concurrency: 1})
	hi := p.join(Lane{Name: "hi", Priority: 0, Weight: 1})
	lo := p.join(Lane{Name: "lo", Priority: 1, Weight: 1})

	if !p.acquire(lo, false) {
		t.Fatal("lo: the only slot of an idle pool was refused")
	}
	if p.acquire(hi, false) {
		t.Fatal("hi: granted a slot while lo holds the only one")
	}
	// lo's delivery ends and lo has more: it must give the slot to hi.
	if p.acquire(lo, true) {
		t.Fatal("lo kept the slot while hi, of lower priority value, wanted it")
	}
	if !woken(hi) || woken(lo) {
		t.Fatal("the freed slot did not wake hi alone")
	}
	if p.acquire(lo, false) {
		t.Fatal("lo took the free slot ahead of hi, which was woken for it")
	}
	if !p.acquire(hi, false) {
		t.Fatal("hi: refused the slot it was woken for")
	}

	// hi wants another; when the slot frees, hi is woken but finds its
	// ready messages stale and withdraws: lo must be woken, and get it.
	if p.acquire(hi, false) {
		t.Fatal("hi: granted a second slot in a pool of one")
	}
	woken(lo)
	p.release(1)
	if !woken(hi) {
		t.Fatal("the freed slot did not wake hi")
	}
	if p.acquire(lo, false) {
		t.Fatal("lo took the slot while hi still wanted it")
	}
	p.withdraw(hi)
	if !woken(lo) {
		t.Fatal("hi withdrew and lo, still wanting, was not woken")
	}
	if !p.acquire(lo, false) {
		t.Fatal("lo: refused the slot after hi withdrew")
	}
	p.withdraw(lo)
	p.release(1)
	if p.used != 0 {
		t.Errorf("pool uses %d slots after every slot was released; want 0", p.used)
	}
}

// TestPoolIdleLaneBanksNoCredit: a lane that wanted nothing while another
// took many slots does not then get every slot until it catches up.
func TestPoolIdleLaneBanksNoCredit(t *testing.T) {
	p := newPool(Pool{Name: "p", Concurrency: 1})
	busy := p.join(Lane{Name: "busy", Weight: 1})
	idle := p.join(Lane{Name: "idle", Weight: 1})
	for range 100 {
		if !p.acquire(busy, false) {
			t.Fatal("busy: refused a slot of an idle pool")
		}
		p.release(1)
	}
	// Now both want the slot, held by busy; each time it frees, the lane
	// woken takes it. Grants must alternate, not go 20 times to idle.
	if !p.acquire(busy, false) {
		t.Fatal("busy: refused a slot of an idle pool")
	}
	p.acquire(idle, false)
	got := map[string]int{}
	for range 20 {
		woken(busy)
		woken(idle)
		p.release(1)
		switch {
		case woken(busy) && p.acquire(busy, false):
			got["busy"]++
		case woken(idle) && p.acquire(idle, false):
			got["idle"]++
		default:
			t.Fatal("a freed slot woke no lane that then got it")
		}
	}
	if got["idle"] > 12 || got["busy"] < 8 {
		t.Errorf("after busy took 100 slots alone, the two lanes competing got busy %d, idle %d; want about even", got["busy"], got["idle"])
	}
}
