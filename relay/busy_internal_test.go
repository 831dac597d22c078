package relay

import (
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
)

func recs(seqs ...int64) []ferry.Record {
	out := make([]ferry.Record, len(seqs))
	for i, s := range seqs {
		out[i].Seq = s
	}
	return out
}

// TestLateGaps: a polled lane reads again from just before the first id
// its fetches skipped within busyLate, the oldest such gap first, and
// forgets gaps older than that.
func TestLateGaps(t *testing.T) {
	var g lateGaps
	t0 := time.Now()
	if _, ok := g.floor(t0); ok {
		t.Fatal("a floor with no gaps")
	}
	g.record(t0, 10, recs(11, 12, 15)) // 13 and 14 skipped
	g.record(t0.Add(10*time.Millisecond), 15, recs(17))
	if f, ok := g.floor(t0.Add(20 * time.Millisecond)); !ok || f != 12 {
		t.Errorf("floor = %d, %v; want 12, the last id read before the first gap", f, ok)
	}
	if f, ok := g.floor(t0.Add(busyLate + 5*time.Millisecond)); !ok || f != 15 {
		t.Errorf("after the first gap aged out: floor = %d, %v; want 15", f, ok)
	}
	if _, ok := g.floor(t0.Add(busyLate + 20*time.Millisecond)); ok {
		t.Error("a floor after every gap aged out")
	}
	g.record(t0, 20, recs(22))
	g.reset()
	if _, ok := g.floor(t0); ok {
		t.Error("a floor after reset")
	}
}
