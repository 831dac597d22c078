package relay

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/ferry-dev/ferry"
)

// maxSkipKeys bounds the held keys a rescan asks the database to leave
// out; beyond it the lane filters them itself.
const maxSkipKeys = 500

// rescanPage is the page size of a rescan pass.
const rescanPage = 1000

// fetchLoop reads the outbox for the lane. It keeps a cursor: the highest
// Seq it has read. Fresh fetches read past the cursor, the cheap common
// case. Rescan passes read behind it, for what a fresh fetch cannot see:
// transactions that committed after a later Seq was read, messages whose
// retry or delay fell due, messages a person retried, and the shards this
// relay just took over. Fetches and passes run one at a time, in order,
// so the loop sees messages in the order they became visible.
//
// A pass reads the lane's WAITING messages from the lowest id up, and its
// cost grows with what it steps over: the index entries of delivered
// messages stay until the table is vacuumed, hundreds of thousands of
// them on a busy lane, several milliseconds a pass. So full passes come
// every RescanInterval, or when the lane asks for one, and in between the
// loop only probes the ids above the cursor of the last full pass for a
// message that committed late (see nextProbe). A probe admits nothing: a
// late message it finds calls for a full pass, which reads the late
// transaction's messages in order, whatever their ids.
func (l *lane) fetchLoop(ctx context.Context) {
	var (
		cursor int64
		used   *shardSet // the shards of the last pass
		logged bool
		// passFloor is the cursor when the last full pass began: what
		// that pass could not see at or below it, the next one will.
		passFloor int64
		// lastGap is when a fresh fetch last skipped an id: a message of
		// another lane or shard, a rolled back one, or one whose
		// transaction has not committed yet and will be read behind the
		// cursor.
		lastGap time.Time
	)
	poll := time.NewTicker(l.r.opts.PollInterval)
	defer poll.Stop()
	rescan := time.NewTimer(l.r.opts.RescanInterval)
	defer rescan.Stop()
	probe := time.NewTimer(time.Hour)
	probe.Stop()
	defer probe.Stop()
	wantPass := true // the first pass loads the held keys before anything is delivered
	wantProbe := false
	recent := newRecentSeqs()
	busy := newBusyPoll(l)
	busyTimer := time.NewTimer(time.Hour)
	busyTimer.Stop()
	defer busyTimer.Stop()
	var gaps lateGaps

	for ctx.Err() == nil {
		// Under a backlog the fetches below run back to back without
		// waiting; passes and probes that are due must not starve behind
		// them.
		select {
		case <-l.rescanCh:
			wantPass = true
		case <-rescan.C:
			wantPass = true
		case <-probe.C:
			wantProbe = true
		default:
		}
		owned := l.r.owned.Load()
		if owned != used && owned.gained(used) {
			wantPass = true
		}
		if wantPass {
			floor := cursor
			startedAt := time.Now()
			rows, err := l.pass(ctx, owned, 0, cursor, false)
			if err != nil {
				l.fetchFailed(ctx, err, &logged)
				continue
			}
			rescan.Reset(l.r.opts.RescanInterval)
			used, wantPass, passFloor = owned, false, floor
			wantProbe = false
			l.scheduleProbe(probe, rows, time.Since(startedAt), lastGap)
		} else if wantProbe {
			startedAt := time.Now()
			rows, err := l.pass(ctx, owned, passFloor, cursor, true)
			if err != nil {
				l.fetchFailed(ctx, err, &logged)
				continue
			}
			wantProbe = false
			l.scheduleProbe(probe, rows, time.Since(startedAt), lastGap)
		}
		seqs, overflow := l.notices.take()
		noticed := len(seqs)
		if overflow {
			noticed += maxNotices
			wantProbe = true
		} else if from, late := lateFrom(seqs, cursor, recent); late {
			if err := l.catchUp(ctx, owned, from, cursor, recent); err != nil {
				l.fetchFailed(ctx, err, &logged)
				continue
			}
		}
		full, read := false, 0
		space := l.capacity - int(l.buffered.Load())
		// cramped: the lane holds too much to read now, and reads again
		// when deliveries free room. Otherwise freed room is no reason to
		// read: a read that came back short found all there was, and the
		// next commit announces itself (or the poll finds it).
		cramped := space < min(l.cfg.BatchSize, l.capacity/4)
		if !cramped && len(owned.list) > 0 {
			limit := min(l.cfg.BatchSize, space)
			// A polled lane hears of no late commit: it reads again from
			// where its fetches of the last busyLate skipped ids, which
			// is a catch-up (see catchUp) in the same statement.
			after := cursor
			if floor, ok := gaps.floor(time.Now()); ok && busy.on {
				after = min(floor, cursor)
			}
			rows, fresh, err := l.fetchFresh(ctx, ferry.FetchQuery{Lane: l.cfg.Name, Shards: owned.filter(), AfterSeq: after, Limit: limit})
			if err != nil {
				l.fetchFailed(ctx, err, &logged)
				continue
			}
			logged = false
			if len(rows) > 0 {
				past := rows[sort.Search(len(rows), func(i int) bool { return rows[i].Seq > cursor }):]
				read = len(past)
				if skipsIDs(cursor, past) {
					if time.Since(lastGap) > l.r.opts.RescanInterval && !l.notified() {
						probe.Reset(quickProbe) // the first skip after a quiet spell
					}
					lastGap = time.Now()
					if busy.on {
						gaps.record(lastGap, cursor, past)
					}
				}
				cursor = max(cursor, rows[len(rows)-1].Seq)
				recent.add(rows)
				fresh.rows = rows
				if !l.send(ctx, fresh) {
					return
				}
			}
			full = len(rows) == limit
			if full && rows[len(rows)-1].Seq <= cursor {
				// The re-read behind the cursor filled the page with
				// messages the lane has in hand: give it up rather than
				// read them again and again; probes look behind instead.
				gaps.reset()
			}
		}
		if busy.step(ctx, noticed, read) {
			probe.Reset(quickProbe) // late commits are no longer named
		}
		if full {
			continue // a backlog: read on while there is room
		}
		select {
		case <-ctx.Done():
		case <-busy.every(busyTimer):
		case <-l.wakeCh:
		case <-poll.C:
		case <-whenTrue(cramped, l.spaceCh):
		case <-l.rescanCh:
			wantPass = true
		case <-rescan.C:
			wantPass = true
		case <-probe.C:
			wantProbe = true
		}
	}
}

// whenTrue returns ch if cond holds, and otherwise nil: a channel a
// select never receives from.
func whenTrue(cond bool, ch chan struct{}) chan struct{} {
	if cond {
		return ch
	}
	return nil
}

// Probe pacing: see scheduleProbe.
const (
	quickProbe  = 10 * time.Millisecond
	probePerRow = 50 * time.Microsecond
	// probeShare bounds the share of the lane's reading time that probes
	// take: a probe that took d is followed by at least (probeShare-1)·d
	// of fresh reading.
	probeShare = 5
)

// scheduleProbe sets the probe timer after a pass or probe that read rows
// in elapsed. Only a message whose id a fresh fetch skipped can commit
// behind the cursor: while fetches skip ids, such a late message waits
// for the next probe, so probes come quickly, as often as every 10ms,
// spaced out in proportion to what a probe reads and how long it took
// (its cost). A lane whose fetches skipped no id within the last
// RescanInterval (a lane of its own table whose writers commit in id
// order, say) is not probed: its full passes every RescanInterval find
// what commits late after a transaction that stayed open that long. Nor
// is a lane whose commits are notified with their ids: the notice of a
// late commit makes the loop catch up at once (see catchUp), and if
// notices stop, probes start again within RescanInterval.
func (l *lane) scheduleProbe(t *time.Timer, rows int, elapsed time.Duration, lastGap time.Time) {
	every := l.r.opts.RescanInterval
	if time.Since(lastGap) > every || l.notified() {
		t.Stop()
		return
	}
	t.Reset(min(max(time.Duration(rows)*probePerRow, probeShare*elapsed, quickProbe), every))
}

// skipsIDs reports whether rows, read past cursor in id order, leave out
// an id above it.
func skipsIDs(cursor int64, rows []ferry.Record) bool {
	next := cursor + 1
	for _, r := range rows {
		if r.Seq != next {
			return true
		}
		next = r.Seq + 1
	}
	return false
}

// pass reads everything due in (from, cursor], in pages, and returns how
// many rows it read. A full pass reads from 0; a probe (from above 0)
// reads to detect a late message, and its pages are marked so that the
// loop only looks.
func (l *lane) pass(ctx context.Context, owned *shardSet, from, cursor int64, probe bool) (int, error) {
	startedAt := time.Now()
	drops := l.drops.Load()
	var heldKeys []string
	if l.cfg.OnFailed == Hold && !probe {
		err := l.gated(ctx, 1, func() (err error) {
			heldKeys, err = l.r.opts.Store.HeldKeys(ctx, l.cfg.Name)
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	skip := heldKeys
	if len(skip) > maxSkipKeys {
		skip = skip[:maxSkipKeys]
	}
	first, total := true, 0
	after := from
	for {
		var rows []ferry.Record
		if cursor > after && len(owned.list) > 0 {
			var err error
			rows, err = l.fetch(ctx, ferry.FetchQuery{Lane: l.cfg.Name, Shards: owned.filter(), AfterSeq: after,
				UpToSeq: cursor, SkipDelayed: true, SkipKeys: skip, Limit: rescanPage})
			if err != nil {
				return 0, err
			}
		}
		last := len(rows) < rescanPage
		if !probe || len(rows) > 0 {
			if !l.send(ctx, page{rows: rows, rescan: true, probe: probe, startedAt: startedAt, first: first, last: last, held: heldKeys, drops: drops}) {
				return 0, ctx.Err()
			}
		}
		total += len(rows)
		if last {
			return total, nil
		}
		first, after = false, rows[len(rows)-1].Seq
	}
}

// fetchFresh reads the messages past q.AfterSeq and the older WAITING
// messages of their keys, at or below q.AfterSeq (see olderWaiting): in
// one statement if the store can. It returns the rows and a page with
// the older messages filled in.
func (l *lane) fetchFresh(ctx context.Context, q ferry.FetchQuery) ([]ferry.Record, page, error) {
	if of, ok := l.r.opts.Store.(ferry.OlderFetcher); ok && q.AfterSeq > 0 && !l.r.olderUnsupported.Load() {
		var rows []ferry.Record
		var found []ferry.KeySeq
		err := l.gated(ctx, q.Limit, func() (err error) {
			rows, found, err = of.FetchWithOlder(ctx, q, perKeyCap+1)
			return err
		})
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			l.r.olderUnsupported.Store(true)
		case err != nil:
			return nil, page{}, err
		default:
			return rows, page{older: olderByKey(found), olderComplete: true, olderCap: perKeyCap + 1}, nil
		}
	}
	rows, err := l.fetch(ctx, q)
	if err != nil || len(rows) == 0 {
		return rows, page{}, err
	}
	older, complete, err := l.olderWaiting(ctx, rows, q.AfterSeq)
	return rows, page{older: older, olderComplete: complete}, err
}

// olderByKey groups found by key.
func olderByKey(found []ferry.KeySeq) map[string][]int64 {
	older := make(map[string][]int64, len(found))
	for _, ks := range found {
		older[ks.Key] = append(older[ks.Key], ks.Seq)
	}
	return older
}

// olderWaiting reads, for the keys among rows, the WAITING messages at or
// below the cursor the rows were read past. The loop compares them with
// what it knows: a message there that it has never seen committed after
// the cursor passed its id, but before these rows were read, so it must
// be delivered first. It runs after the fetch, so that anything visible to
// the fetch is visible here too.
func (l *lane) olderWaiting(ctx context.Context, rows []ferry.Record, cursor int64) (map[string][]int64, bool, error) {
	if cursor == 0 {
		return nil, true, nil
	}
	seen := map[string]bool{}
	var keys []string
	for _, r := range rows {
		if r.Key != "" && !seen[r.Key] {
			seen[r.Key] = true
			keys = append(keys, r.Key)
		}
	}
	if len(keys) == 0 {
		return nil, true, nil
	}
	limit := 2 * l.capacity
	var found []ferry.KeySeq
	err := l.gated(ctx, len(keys), func() (err error) {
		found, err = l.r.opts.Store.WaitingKeys(ctx, l.cfg.Name, keys, cursor, limit)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return olderByKey(found), len(found) < limit, nil
}

func (l *lane) fetch(ctx context.Context, q ferry.FetchQuery) (rows []ferry.Record, err error) {
	err = l.gated(ctx, q.Limit, func() (err error) {
		rows, err = l.r.opts.Store.Fetch(ctx, q)
		return err
	})
	return rows, err
}

// gated runs f, a database operation touching about cost rows, with a
// slot of the relay's fair gate.
func (l *lane) gated(ctx context.Context, cost int, f func() error) error {
	release, err := l.r.gate.acquire(ctx, l.cfg.Name, cost)
	if err != nil {
		return err
	}
	defer release()
	return f()
}

func (l *lane) send(ctx context.Context, p page) bool {
	select {
	case l.pages <- p:
		return true
	case <-ctx.Done():
		return false
	}
}

// fetchFailed logs a failed fetch (once per outage) and pauses: the
// database may be restarting; nothing is lost while it is away.
func (l *lane) fetchFailed(ctx context.Context, err error, logged *bool) {
	if ctx.Err() != nil {
		return
	}
	if !*logged {
		l.r.log.Error("cannot read the outbox; retrying", "lane", l.cfg.Name, "error", err)
		*logged = true
	}
	select {
	case <-ctx.Done():
	case <-time.After(l.r.opts.PollInterval + 250*time.Millisecond):
	}
}

// shardSet is the shards this relay holds, valid until a local deadline
// that falls before the database lets another node take them.
type shardSet struct {
	list  []int
	has_  [ferry.Shards]bool
	until time.Time
}

func newShardSet(list []int, until time.Time) *shardSet {
	s := &shardSet{list: slices.Clone(list), until: until}
	for _, sh := range list {
		s.has_[sh] = true
	}
	return s
}

func (s *shardSet) has(shard int) bool { return shard >= 0 && shard < ferry.Shards && s.has_[shard] }

func (s *shardSet) valid() bool { return time.Now().Before(s.until) }

// filter returns the shards for FetchQuery: nil when all are held, so the
// query needs no shard condition.
func (s *shardSet) filter() []int {
	if len(s.list) == ferry.Shards {
		return nil
	}
	return s.list
}

// gained reports whether s holds a shard that prev did not.
func (s *shardSet) gained(prev *shardSet) bool {
	for _, sh := range s.list {
		if prev == nil || !prev.has(sh) {
			return true
		}
	}
	return false
}
