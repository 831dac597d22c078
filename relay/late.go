package relay

import (
	"context"
	"sync"

	"github.com/ferry-dev/ferry"
)

// maxNotices bounds the commit notices a lane keeps between two looks of
// its fetch loop; beyond it the loop probes instead.
const maxNotices = 256

// notices collects, for a lane, the Seqs named by commit notifications
// (ferry.Notifier): the lowest Seq each commit wrote to the lane.
type notices struct {
	mu       sync.Mutex
	seqs     []int64
	overflow bool
}

func (n *notices) add(seq int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.seqs) >= maxNotices {
		n.overflow = true
		return
	}
	n.seqs = append(n.seqs, seq)
}

// take returns the notices so far and forgets them; overflow reports
// that some were dropped.
func (n *notices) take() (seqs []int64, overflow bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	seqs, overflow = n.seqs, n.overflow
	n.seqs, n.overflow = nil, false
	return seqs, overflow
}

// recentSize is how many of the latest Seqs a fetch loop remembers.
const recentSize = 4096

// recentSeqs remembers the Seqs the fetch loop read last, so that a
// notice of a commit it has already read costs no query.
type recentSeqs struct {
	ring []int64
	next int
	set  map[int64]struct{}
}

func newRecentSeqs() *recentSeqs {
	return &recentSeqs{ring: make([]int64, 0, recentSize), set: make(map[int64]struct{}, recentSize)}
}

func (r *recentSeqs) add(rows []ferry.Record) {
	for _, row := range rows {
		if _, ok := r.set[row.Seq]; ok {
			continue
		}
		if len(r.ring) < recentSize {
			r.ring = append(r.ring, row.Seq)
		} else {
			delete(r.set, r.ring[r.next])
			r.ring[r.next] = row.Seq
			r.next = (r.next + 1) % recentSize
		}
		r.set[row.Seq] = struct{}{}
	}
}

func (r *recentSeqs) has(seq int64) bool {
	_, ok := r.set[seq]
	return ok
}

// lateFrom returns the Seq just below the lowest noticed commit that
// the loop has read past without seeing it: a transaction that committed
// after a fetch skipped its ids. ok is false if there is none.
func lateFrom(seqs []int64, cursor int64, recent *recentSeqs) (from int64, ok bool) {
	for _, s := range seqs {
		if s > 0 && s <= cursor && !recent.has(s) && (!ok || s-1 < from) {
			from, ok = s-1, true
		}
	}
	return from, ok
}

// catchUp reads the messages in (from, cursor]: a late commit's, and
// the ones the loop read before, which the lane skips. It hands them to
// the lane as fresh pages, with the older WAITING messages of their keys,
// so that a key with an even older message the lane has not seen is read
// back in order by a pass instead (see accept).
func (l *lane) catchUp(ctx context.Context, owned *shardSet, from, cursor int64, recent *recentSeqs) error {
	for after := from; after < cursor && len(owned.list) > 0; {
		rows, p, err := l.fetchFresh(ctx, ferry.FetchQuery{Lane: l.cfg.Name, Shards: owned.filter(), AfterSeq: after, UpToSeq: cursor, Limit: l.cfg.BatchSize})
		if err != nil || len(rows) == 0 {
			return err
		}
		after = rows[len(rows)-1].Seq
		recent.add(rows)
		p.rows = rows
		if !l.send(ctx, p) {
			return ctx.Err()
		}
		if len(rows) < l.cfg.BatchSize {
			return nil
		}
	}
	return nil
}
