package relay

import (
	"context"
	"strings"
	"time"
)

// pauseInterval is how often the relay reads which lanes are paused: a
// person's ferry pause or ferry resume takes effect within about this
// long.
const pauseInterval = time.Second

// firstPaused reads the paused lanes before the lanes start, retrying
// until it succeeds or ctx ends, so that a paused lane delivers nothing
// even in its first moments.
func (r *Relay) firstPaused(ctx context.Context) {
	pause := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := r.loadPaused(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		r.log.Error("cannot read which lanes are paused; retrying (if the table is missing, upgrade the schema with ferry migrate)",
			"attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// pauseLoop reads the paused lanes every pauseInterval. While the
// database does not answer, the lanes keep the state last read.
func (r *Relay) pauseLoop(ctx context.Context) {
	t := time.NewTicker(pauseInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.loadPaused(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			r.log.Warn("cannot read which lanes are paused; the lanes keep their last known state until the database answers", "error", err)
			failing = true
		case err == nil && failing:
			r.log.Info("reading which lanes are paused again")
			failing = false
		}
	}
}

// loadPaused reads the paused lanes from the store and tells the lanes
// whose state changed.
func (r *Relay) loadPaused(ctx context.Context) error {
	names, err := r.opts.Store.Paused(ctx)
	if err != nil {
		return err
	}
	paused := make(map[string]bool, len(names))
	for _, n := range names {
		paused[n] = true
	}
	for name, l := range r.lanes {
		p := pausedLane(paused, name)
		if l.paused.Swap(p) == p {
			continue
		}
		if p {
			r.log.Info("lane paused: it starts no new deliveries until resumed; deliveries in flight finish", "lane", name)
		} else {
			r.log.Info("lane resumed", "lane", name)
		}
		signal(l.pauseCh)
	}
	return nil
}

// pausedLane reports whether lane is paused: itself or, for a sub-lane
// named "parent/sub", its parent. A job queue's priority levels are such
// sub-lanes, so pausing the queue pauses them all.
func pausedLane(paused map[string]bool, lane string) bool {
	for {
		if paused[lane] {
			return true
		}
		i := strings.LastIndexByte(lane, '/')
		if i < 0 {
			return false
		}
		lane = lane[:i]
	}
}
