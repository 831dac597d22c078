package relay

import (
	"context"
	"slices"
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
func (l *lane) fetchLoop(ctx context.Context) {
	var (
		cursor int64
		used   *shardSet // the shards of the last pass
		logged bool
	)
	poll := time.NewTicker(l.r.opts.PollInterval)
	defer poll.Stop()
	rescan := time.NewTimer(l.r.opts.RescanInterval)
	defer rescan.Stop()
	var lastFresh time.Time // when a fresh fetch last found messages
	wantPass := true        // the first pass loads the held keys before anything is delivered

	for ctx.Err() == nil {
		// Under a backlog the fetches below run back to back without
		// waiting; passes that are due must not starve behind them.
		select {
		case <-l.rescanCh:
			wantPass = true
		case <-rescan.C:
			wantPass = true
		default:
		}
		owned := l.r.owned.Load()
		if owned != used && owned.gained(used) {
			wantPass = true
		}
		if wantPass {
			rows, err := l.pass(ctx, owned, cursor)
			if err != nil {
				l.fetchFailed(ctx, err, &logged)
				continue
			}
			rescan.Reset(l.nextPass(rows, lastFresh))
			used, wantPass = owned, false
		}
		full := false
		if space := l.capacity - int(l.buffered.Load()); space >= min(l.cfg.BatchSize, l.capacity/4) && len(owned.list) > 0 {
			limit := min(l.cfg.BatchSize, space)
			rows, err := l.fetch(ctx, ferry.FetchQuery{Lane: l.cfg.Name, Shards: owned.filter(), AfterSeq: cursor, Limit: limit})
			if err != nil {
				l.fetchFailed(ctx, err, &logged)
				continue
			}
			logged = false
			if len(rows) > 0 {
				lastFresh = time.Now()
				older, complete, err := l.olderWaiting(ctx, rows, cursor)
				if err != nil {
					l.fetchFailed(ctx, err, &logged)
					continue
				}
				cursor = rows[len(rows)-1].Seq
				if !l.send(ctx, page{rows: rows, older: older, olderComplete: complete}) {
					return
				}
			}
			full = len(rows) == limit
		}
		if full {
			continue // a backlog: read on while there is room
		}
		select {
		case <-ctx.Done():
		case <-l.wakeCh:
		case <-poll.C:
		case <-l.spaceCh:
		case <-l.rescanCh:
			wantPass = true
		case <-rescan.C:
			wantPass = true
		}
	}
}

// Rescan pacing: see nextPass.
const (
	quickPass  = 10 * time.Millisecond
	passPerRow = 50 * time.Microsecond
)

// nextPass says when to rescan after a pass that read rows. While fresh
// messages are arriving, transactions that commit out of id order are
// likely, and a late message waits for the next pass: so passes come
// quickly, as often as every 10ms, spaced out in proportion to what a
// pass reads (its cost), up to RescanInterval. A quiet lane rescans every
// RescanInterval, for what commits late after a long transaction.
func (l *lane) nextPass(rows int, lastFresh time.Time) time.Duration {
	every := l.r.opts.RescanInterval
	if time.Since(lastFresh) > every {
		return every
	}
	return min(max(time.Duration(rows)*passPerRow, quickPass), every)
}

// pass reads everything due behind the cursor, in pages, and returns how
// many rows it read.
func (l *lane) pass(ctx context.Context, owned *shardSet, cursor int64) (int, error) {
	startedAt := time.Now()
	drops := l.drops.Load()
	var heldKeys []string
	if l.cfg.OnFailed == Hold {
		var err error
		if err = l.r.gate.acquire(ctx, l.cfg.Name, 1); err != nil {
			return 0, err
		}
		heldKeys, err = l.r.opts.Store.HeldKeys(ctx, l.cfg.Name)
		l.r.gate.release()
		if err != nil {
			return 0, err
		}
	}
	skip := heldKeys
	if len(skip) > maxSkipKeys {
		skip = skip[:maxSkipKeys]
	}
	first, total := true, 0
	after := int64(0)
	for {
		var rows []ferry.Record
		if cursor > 0 && len(owned.list) > 0 {
			var err error
			rows, err = l.fetch(ctx, ferry.FetchQuery{Lane: l.cfg.Name, Shards: owned.filter(), AfterSeq: after,
				UpToSeq: cursor, SkipDelayed: true, SkipKeys: skip, Limit: rescanPage})
			if err != nil {
				return 0, err
			}
		}
		last := len(rows) < rescanPage
		if !l.send(ctx, page{rows: rows, rescan: true, startedAt: startedAt, first: first, last: last, held: heldKeys, drops: drops}) {
			return 0, ctx.Err()
		}
		total += len(rows)
		if last {
			return total, nil
		}
		first, after = false, rows[len(rows)-1].Seq
	}
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
	if err := l.r.gate.acquire(ctx, l.cfg.Name, len(keys)); err != nil {
		return nil, false, err
	}
	found, err := l.r.opts.Store.WaitingKeys(ctx, l.cfg.Name, keys, cursor, limit)
	l.r.gate.release()
	if err != nil {
		return nil, false, err
	}
	older := make(map[string][]int64, len(found))
	for _, ks := range found {
		older[ks.Key] = append(older[ks.Key], ks.Seq)
	}
	return older, len(found) < limit, nil
}

func (l *lane) fetch(ctx context.Context, q ferry.FetchQuery) ([]ferry.Record, error) {
	if err := l.r.gate.acquire(ctx, l.cfg.Name, q.Limit); err != nil {
		return nil, err
	}
	defer l.r.gate.release()
	return l.r.opts.Store.Fetch(ctx, q)
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
