package relay

import (
	"context"
	"math"
	"time"

	"github.com/ferry-dev/ferry"
)

// Polling while commits come fast. On PostgreSQL every producer commit
// that notifies holds a server-wide lock until its commit is flushed, so
// concurrent producers commit one flush at a time: a busy lane's
// notifications cap its producers. When a lane's commits come about as
// often as a relay would poll anyway, the relay announces that it polls
// the lane every busyEvery (ferry.PollAnnouncer), producers' commits skip
// the notification, and the relays serving the lane, told by the
// announcement's own notification, poll it until the announcement lapses
// and busyGrace after. The relay that announced renews the announcement
// while its fetches keep finding messages; when they thin out it lapses
// and notifications resume.
const (
	// Commits noticed at Options.PollAbove per second over busyWindow make
	// a relay announce.
	busyWindow = 250 * time.Millisecond
	// busyEvery is how often a polling relay reads the lane: a message
	// waits half of it on average, about what a notification takes.
	busyEvery = 2 * time.Millisecond
	// busyHold is how long an announcement holds; it is renewed, or read
	// by the relays that did not make it, every half of it.
	busyHold = 2 * time.Second
	// busyGrace is how long relays go on polling after the announcement
	// lapses: a producer that read it just before then commits a little
	// later. One whose transaction ends later than that waits for the
	// lane's next poll (PollInterval) or notification.
	busyGrace = 2 * time.Second
	// busyLate is how long a polling lane reads again behind its cursor
	// from an id its fresh fetch skipped: without notifications naming
	// the ids of late commits, this is where they show up. Later ones
	// wait for a probe (see fetchLoop).
	busyLate = 25 * time.Millisecond
)

// busyPoll is a lane's state of polling while busy. It belongs to the
// lane's fetch loop.
type busyPoll struct {
	l     *lane
	store ferry.PollAnnouncer // nil if the store has no notifications to take off
	// enter is how many commits noticed within busyWindow start polling;
	// keep is how many messages read within half of busyHold keep the
	// announcement: a quarter of the rate. (A polled lane hears of no
	// commit, so it counts messages: a lane that gets its messages in big
	// transactions stays polled while they keep coming, at the cost of
	// the relay's polls.)
	enter, keep int
	on          bool
	until       time.Time // local time to poll until, grace included
	next        time.Time // when to renew or read the announcement next
	// Counts for entering and keeping.
	windowStart time.Time
	noticed     int
	found       int
	logged      bool
}

func newBusyPoll(l *lane) *busyPoll {
	above := l.r.opts.PollAbove
	b := &busyPoll{l: l, enter: max(1, int(above*busyWindow.Seconds())), keep: max(1, int(above*(busyHold/2).Seconds()/4))}
	if above <= 0 {
		// This relay never announces, but polls when others do: their
		// announcement takes the notifications off for it too.
		b.enter, b.keep = math.MaxInt, math.MaxInt
	}
	if _, notifies := l.r.opts.Store.(ferry.Notifier); notifies {
		b.store, _ = l.r.opts.Store.(ferry.PollAnnouncer)
	}
	return b
}

// step runs at every turn of the fetch loop: it counts the commits
// noticed and the messages read since the last turn, starts polling when a relay announced it
// or the commits come fast, renews or reads the announcement when due,
// and stops once it has lapsed. It reports whether polling just started.
func (b *busyPoll) step(ctx context.Context, noticed, read int) (started bool) {
	if b.store == nil {
		return false
	}
	was := b.on
	defer func() {
		b.l.polling.Store(b.on)
		started = b.on && !was
	}()
	now := time.Now()
	b.found += read
	if now.Sub(b.windowStart) > busyWindow {
		b.windowStart, b.noticed = now, 0
	}
	b.noticed += noticed
	heard := b.l.pollHeard.Swap(false)
	switch {
	case !b.on && b.noticed >= b.enter:
		b.announce(ctx, now, true)
	case !b.on && (heard || !now.Before(b.next)):
		// Told by another relay, or the periodic look for an
		// announcement this relay did not hear of (it started, or its
		// listening connection was away).
		b.read(ctx, now)
	case b.on && !now.Before(b.next):
		if b.found >= b.keep {
			b.announce(ctx, now, false)
		} else {
			b.read(ctx, now)
		}
	}
	if b.on && now.After(b.until) {
		b.on = false
		b.l.r.log.Debug("commits slowed down: the lane is woken by notifications again", "lane", b.l.cfg.Name)
	}
	return false // set by the deferred function
}

// announce announces polling for busyHold, telling the other relays if
// tell, and polls until the announcement lapses.
func (b *busyPoll) announce(ctx context.Context, now time.Time, tell bool) {
	var left time.Duration
	err := b.l.gated(ctx, 1, func() (err error) {
		left, err = b.store.AnnouncePolling(ctx, b.l.cfg.Name, busyHold, tell)
		return err
	})
	b.found, b.noticed = 0, 0
	if err != nil {
		b.failed(ctx, now, err)
		return
	}
	if !b.on {
		b.l.r.log.Debug("commits come fast: the lane is polled, producers stop notifying", "lane", b.l.cfg.Name, "every", busyEvery)
	}
	b.poll(now, left)
}

// read reads how long the lane's announcement holds, and polls until it
// lapses if it does.
func (b *busyPoll) read(ctx context.Context, now time.Time) {
	var left time.Duration
	err := b.l.gated(ctx, 1, func() (err error) {
		left, err = b.store.Polled(ctx, b.l.cfg.Name)
		return err
	})
	b.found = 0
	if err != nil {
		b.failed(ctx, now, err)
		return
	}
	if left > 0 || b.on {
		if !b.on {
			b.l.r.log.Debug("relays poll the lane, as another announced: polling it too", "lane", b.l.cfg.Name, "for", left.Round(time.Millisecond))
		}
		b.poll(now, left)
		return
	}
	b.next = now.Add(b.l.r.opts.PollInterval)
}

func (b *busyPoll) poll(now time.Time, left time.Duration) {
	b.on = true
	b.until = now.Add(left + busyGrace)
	b.next = now.Add(busyHold / 2)
	b.logged = false
}

// failed keeps polling if it was (the announcement may hold: polling is
// the side that cannot miss a message) and tries again later.
func (b *busyPoll) failed(ctx context.Context, now time.Time, err error) {
	if ctx.Err() != nil {
		return
	}
	if !b.logged {
		b.l.r.log.Warn("cannot announce or read the polling of a lane; trying again", "lane", b.l.cfg.Name, "error", err)
		b.logged = true
	}
	if b.on {
		b.until = now.Add(busyHold + busyGrace)
	}
	b.next = now.Add(max(b.l.r.opts.PollInterval, busyHold/2))
}

// every returns a channel that fires when the polling lane should read
// again, nil when it is not polling.
func (b *busyPoll) every(t *time.Timer) <-chan time.Time {
	if !b.on {
		return nil
	}
	t.Reset(busyEvery)
	return t.C
}

// lateGaps remembers, for a polling lane, where its fresh fetches skipped
// ids within the last busyLate: the lowest is where the next fetch reads
// from.
type lateGaps struct {
	gaps []lateGap
}

type lateGap struct {
	at    time.Time
	floor int64 // the highest Seq read before the skipped ids
}

// record notes that a fetch of rows past cursor, read now, skipped ids.
func (g *lateGaps) record(now time.Time, cursor int64, rows []ferry.Record) {
	floor := cursor
	for _, r := range rows {
		if r.Seq != floor+1 {
			break
		}
		floor = r.Seq
	}
	g.gaps = append(g.gaps, lateGap{at: now, floor: floor})
}

// reset forgets the gaps.
func (g *lateGaps) reset() { g.gaps = g.gaps[:0] }

// floor returns the lowest Seq below which a gap of the last busyLate
// starts, if any.
func (g *lateGaps) floor(now time.Time) (int64, bool) {
	i := 0
	for i < len(g.gaps) && now.Sub(g.gaps[i].at) > busyLate {
		i++
	}
	g.gaps = g.gaps[i:]
	if len(g.gaps) == 0 {
		return 0, false
	}
	return g.gaps[0].floor, true // cursors only grow: the oldest is lowest
}
