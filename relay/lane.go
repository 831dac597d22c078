package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry"
)

// perKeyCap bounds how many messages of one key a lane keeps in memory.
// Beyond it, the key's later messages stay in the database until its
// queue drains (a key stuck in retries cannot fill the lane's buffer and
// stall the other keys).
const perKeyCap = 64

// lane runs one lane: a fetcher that reads the outbox, a loop that owns
// all ordering state, workers that deliver, and an acker that records the
// outcomes in batches.
type lane struct {
	cfg      Lane
	r        *Relay
	capacity int // messages held in memory at most
	limiter  *rate.Limiter
	pool     *pool       // nil if the lane has workers of its own
	member   *poolMember // the lane in pool
	// paused is set while a person has paused the lane (ferry pause):
	// it starts no deliveries.
	paused atomic.Bool

	buffered atomic.Int64 // messages in memory, counted by the loop
	// drops counts dropShardState calls. A rescan pass that began before
	// the latest drop may have had rows skipped or forgotten, so its later
	// pages must not be admitted: another pass reads the shards again.
	drops atomic.Int64

	notices   notices              // commits notified since the fetcher last looked
	pollHeard atomic.Bool          // a relay announced that it polls the lane (see busyPoll)
	polling   atomic.Bool          // the lane is polled: commits to it are not notified
	noticedAt atomic.Int64         // when the latest notice with a Seq came, in Unix nanoseconds
	wakeCh    chan struct{}        // messages were committed
	rescanCh  chan struct{}        // the loop wants a rescan pass
	spaceCh   chan struct{}        // the loop freed buffer space
	pages     chan page            // fetcher → loop
	results   chan result          // workers → loop
	persisted chan []ferry.Outcome // acker → loop
	control   chan func(*laneState)
	leaseCh   chan struct{} // the leases changed
	pauseCh   chan struct{} // paused changed
	work      chan *entry   // loop → workers

	acker      *acker
	deliverCtx context.Context // parent of every delivery; outlives run's ctx during shutdown
}

// page is one fetch result.
type page struct {
	rows      []ferry.Record
	rescan    bool      // from a rescan pass (behind the cursor) rather than the fresh edge
	probe     bool      // from a probe: only look for a late message (see fetchLoop)
	startedAt time.Time // when the pass began
	first     bool      // first page of a pass: held is set
	last      bool      // last page of a pass
	held      []string  // keys held in the database when the pass began
	drops     int64     // the lane's drop count when the pass began (rescan pages)
	// older lists, per key of a fresh page, the WAITING messages behind
	// the cursor (see olderWaiting); olderComplete is false if the list
	// was cut short.
	older         map[string][]int64
	olderComplete bool
	// olderCap, if not 0, is how many older messages of each key were
	// read at most: a key with that many may have more.
	olderCap int
}

// result is the outcome of one delivery attempt.
type result struct {
	e   *entry
	err error
}

// entry is a message in memory.
type entry struct {
	rec      ferry.Record
	inflight bool
	// settled is set when this entry's final outcome went to the acker.
	// Only then may onPersisted retire it: after a drop, a rescan can
	// read the same message again (its outcome not yet recorded) into a
	// new entry, which must stay until it is delivered again.
	settled bool
	dueAt   time.Time          // for a retry: not before this
	ctx     context.Context    // the attempt in flight
	cancel  context.CancelFunc // cancels it (a lost lease)
}

// keyMode is what a lane does with newly seen messages of a key.
type keyMode int

const (
	// normal: queue them behind the key's messages in memory.
	normal keyMode = iota
	// evicted: the key has messages in the database that are not in
	// memory; drop newly seen ones until the queue drains and a rescan
	// brings them all back in order.
	evicted
	// recovering: waiting for a rescan pass that began after since; take
	// the key's messages from that pass only.
	recovering
	// held: a message of the key is FAILED and the lane's policy is Hold.
	held
)

type keyState struct {
	queue []*entry // head first; the head may be in flight or waiting to retry
	mode  keyMode
	since time.Time
	shard int
}

// laneState is owned by the loop goroutine.
type laneState struct {
	known    map[int64]*entry
	gone     map[int64]time.Time // final outcome recorded at; filters stale rescans
	keys     map[string]*keyState
	ready    []*entry
	retries  timerQueue
	inflight map[int]int // per shard
	nInFl    int
	// spare counts pool slots of deliveries that ended, not yet reused
	// or given back; dispatch settles them.
	spare    int
	nextDue  time.Time // earliest due time of a delayed message left in the database
	dueTimer *time.Timer
}

func newLane(r *Relay, cfg Lane) *lane {
	l := &lane{
		cfg:       cfg,
		r:         r,
		capacity:  max(4*cfg.BatchSize, 4*cfg.Concurrency),
		wakeCh:    make(chan struct{}, 1),
		rescanCh:  make(chan struct{}, 1),
		spaceCh:   make(chan struct{}, 1),
		pages:     make(chan page, 1),
		results:   make(chan result, cfg.Concurrency),
		persisted: make(chan []ferry.Outcome, 4),
		control:   make(chan func(*laneState)),
		leaseCh:   make(chan struct{}, 1),
		pauseCh:   make(chan struct{}, 1),
		work:      make(chan *entry, cfg.Concurrency),
	}
	if cfg.Rate > 0 {
		l.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)
	}
	if cfg.Pool != "" {
		l.pool = r.pools[cfg.Pool]
		l.member = l.pool.join(cfg)
	}
	l.acker = newAcker(l)
	return l
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wake tells the lane that messages were committed.
func (l *lane) wake() { signal(l.wakeCh) }

// notify tells the lane that a commit wrote messages to it, the lowest
// with Seq seq (0 if unknown), or with a negative seq that a relay
// announced polling it.
func (l *lane) notify(seq int64) {
	if seq < 0 {
		l.pollHeard.Store(true)
	}
	if seq > 0 {
		l.notices.add(seq)
		l.noticedAt.Store(time.Now().UnixNano())
	}
	signal(l.wakeCh)
}

// notified reports whether the lane was told of a commit with its Seq
// within the last RescanInterval and is not polled: whether the store's
// notifications name ids and arrive.
func (l *lane) notified() bool {
	if l.polling.Load() {
		return false
	}
	return time.Since(time.Unix(0, l.noticedAt.Load())) < l.r.opts.RescanInterval
}

// run runs the lane until ctx is done, then stops gracefully: it stops
// fetching, lets deliveries in flight finish for up to the shutdown
// timeout, records their outcomes and returns.
func (l *lane) run(ctx context.Context) {
	fetchCtx, stopFetch := context.WithCancel(ctx)
	// Deliveries get their own context so that shutdown can let them
	// finish after ctx is done.
	deliverCtx, stopDeliveries := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDeliveries()
	l.deliverCtx = deliverCtx

	var workers sync.WaitGroup
	for range l.cfg.Concurrency {
		workers.Go(l.deliverLoop)
	}
	ackDone := make(chan struct{})
	go func() { l.acker.run(); close(ackDone) }()
	fetchDone := make(chan struct{})
	go func() { l.fetchLoop(fetchCtx); close(fetchDone) }()

	st := &laneState{
		known:    map[int64]*entry{},
		gone:     map[int64]time.Time{},
		keys:     map[string]*keyState{},
		inflight: map[int]int{},
		dueTimer: time.NewTimer(time.Hour),
	}
	st.dueTimer.Stop()
	l.loop(ctx, st)

	// Shutdown: no new fetches, no new dispatches; wait for deliveries in
	// flight, then cancel what is left. The lane wants no more pool slots,
	// and gives back each one as its delivery ends.
	if l.pool != nil {
		l.pool.withdraw(l.member)
	}
	stopFetch()
	<-fetchDone
	deadline := time.NewTimer(l.r.opts.ShutdownTimeout)
	defer deadline.Stop()
	for st.nInFl > 0 {
		select {
		case res := <-l.results:
			l.finish(st, res)
			l.releaseSpare(st)
		case outs := <-l.persisted:
			l.onPersisted(st, outs)
		case <-deadline.C:
			l.r.log.Warn("shutdown timeout: cancelling deliveries in flight; they stay WAITING and will be delivered again",
				"lane", l.cfg.Name, "in_flight", st.nInFl)
			stopDeliveries()
			deadline.Reset(time.Hour)
		}
	}
	close(l.work)
	workers.Wait()
	l.acker.close()
	<-ackDone
}

// loop owns the lane's state and reacts to every event until ctx is done.
func (l *lane) loop(ctx context.Context, st *laneState) {
	var poolC <-chan struct{}
	if l.pool != nil {
		poolC = l.member.wake
	}
	for {
		l.dispatch(st)
		var retryC <-chan time.Time
		if t := st.retries.timer(); t != nil {
			retryC = t.C
		}
		select {
		case <-ctx.Done():
			st.retries.stop()
			return
		case p := <-l.pages:
			l.accept(st, p)
		case res := <-l.results:
			l.finish(st, res)
		case outs := <-l.persisted:
			l.onPersisted(st, outs)
		case <-retryC:
			st.retries.fired()
			now := time.Now()
			for _, e := range st.retries.due(now) {
				if st.known[e.rec.Seq] == e && !e.inflight {
					st.ready = append(st.ready, e)
				}
			}
		case <-st.dueTimer.C:
			st.nextDue = time.Time{}
			signal(l.rescanCh)
		case f := <-l.control:
			f(st)
		case <-l.leaseCh:
		case <-l.pauseCh:
		case <-poolC: // a pool slot may be free
		}
	}
}

// accept takes a fetched page into memory, keeping per-key order: a key's
// messages are queued in the order the lane first sees them, which is
// commit order (see the package documentation).
func (l *lane) accept(st *laneState, p page) {
	if p.probe {
		if l.lateCommit(st, p) {
			signal(l.rescanCh)
		}
		return
	}
	now := time.Now()
	if p.first {
		l.updateHolds(st, p)
	}
	if p.rescan && p.drops != l.drops.Load() {
		// Lane state was dropped since this pass began: an earlier page's
		// rows may be forgotten, so admitting this page could put a key's
		// later messages before its earlier ones. Read again.
		signal(l.rescanCh)
		return
	}
	owned := l.r.owned.Load()
	for i := range p.rows {
		rec := p.rows[i]
		if _, ok := st.known[rec.Seq]; ok {
			continue
		}
		if _, ok := st.gone[rec.Seq]; ok {
			continue
		}
		if !owned.has(rec.Shard) {
			continue
		}
		if rec.Attempts == 0 && rec.AvailableAt.After(now) {
			// A delayed message stays in the database until due; a rescan
			// then picks it up, ordered as if written when it fell due.
			if st.nextDue.IsZero() || rec.AvailableAt.Before(st.nextDue) {
				st.nextDue = rec.AvailableAt
				st.dueTimer.Reset(time.Until(rec.AvailableAt))
			}
			continue
		}
		e := &entry{rec: rec}
		if rec.Attempts > 0 && rec.AvailableAt.After(now) {
			e.dueAt = rec.AvailableAt // a retry recorded before a restart or takeover
		}
		if rec.Key == "" {
			l.admit(st, e)
			l.release(st, e, e.dueAt)
			continue
		}
		ks := st.keys[rec.Key]
		if ks == nil {
			ks = &keyState{shard: rec.Shard}
			st.keys[rec.Key] = ks
		}
		switch ks.mode {
		case held, evicted:
			continue
		case recovering:
			if !p.rescan || !p.startedAt.After(ks.since) {
				continue
			}
			if len(ks.queue) >= perKeyCap {
				ks.mode, ks.since = evicted, now
				continue
			}
		case normal:
			if len(ks.queue) >= perKeyCap || (!p.rescan && l.overlooked(st, p, rec.Key)) {
				// Too many in memory, or an earlier message of the key that
				// this lane has not seen: leave the key's messages in the
				// database and read them back, in order, once its queue
				// drains.
				ks.mode, ks.since = evicted, now
				if len(ks.queue) == 0 {
					ks.mode = recovering
					signal(l.rescanCh)
				}
				continue
			}
		}
		l.admit(st, e)
		ks.queue = append(ks.queue, e)
		if len(ks.queue) == 1 {
			l.release(st, e, e.dueAt)
		}
	}
	if p.last {
		for k, ks := range st.keys {
			if ks.mode == recovering && p.startedAt.After(ks.since) {
				ks.mode = normal
			}
			if ks.mode == normal && len(ks.queue) == 0 {
				delete(st.keys, k)
			}
		}
		for seq, at := range st.gone {
			if at.Before(p.startedAt) {
				delete(st.gone, seq)
			}
		}
	}
}

// lateCommit reports whether a probe shows a message the lane should
// have read: one it does not know, of a shard it holds, and of a key
// whose messages it takes as they come (a key held, evicted or
// recovering has its messages read back by passes anyway).
func (l *lane) lateCommit(st *laneState, p page) bool {
	owned := l.r.owned.Load()
	for _, rec := range p.rows {
		if _, ok := st.known[rec.Seq]; ok {
			continue
		}
		if _, ok := st.gone[rec.Seq]; ok {
			continue
		}
		if !owned.has(rec.Shard) {
			continue
		}
		if ks := st.keys[rec.Key]; rec.Key != "" && ks != nil && ks.mode != normal {
			continue
		}
		return true
	}
	return false
}

// overlooked reports whether a fresh page shows a WAITING message of key,
// behind the cursor, that the lane does not know: one that committed late.
func (l *lane) overlooked(st *laneState, p page, key string) bool {
	if p.older == nil {
		return false
	}
	if !p.olderComplete || (p.olderCap > 0 && len(p.older[key]) >= p.olderCap) {
		return true
	}
	for _, seq := range p.older[key] {
		if _, ok := st.known[seq]; ok {
			continue
		}
		if _, ok := st.gone[seq]; ok {
			continue
		}
		return true
	}
	return false
}

// updateHolds reconciles held keys with the database at the start of a
// rescan pass. A key is released only if the database says so in a pass
// that began after the lane held it, so a FAILED outcome still on its way
// to the database is not mistaken for a release.
func (l *lane) updateHolds(st *laneState, p page) {
	if l.cfg.OnFailed != Hold {
		return
	}
	inDB := make(map[string]bool, len(p.held))
	for _, k := range p.held {
		inDB[k] = true
		ks := st.keys[k]
		if ks == nil {
			st.keys[k] = &keyState{mode: held, since: p.startedAt, shard: ferry.ShardOf(k, "")}
			continue
		}
		if ks.mode != held {
			// Held by an earlier owner of the shard: messages of the key in
			// memory must wait too.
			l.dropQueue(st, ks, nil)
			ks.mode, ks.since = held, p.startedAt
		}
	}
	for k, ks := range st.keys {
		if ks.mode == held && !inDB[k] && p.startedAt.After(ks.since) {
			// Released by a person: this pass brings its messages back.
			ks.mode, ks.since = recovering, p.startedAt.Add(-time.Nanosecond)
		}
	}
}

func (l *lane) admit(st *laneState, e *entry) {
	st.known[e.rec.Seq] = e
	l.buffered.Add(1)
}

// release makes e ready now, or at dueAt.
func (l *lane) release(st *laneState, e *entry, dueAt time.Time) {
	if !dueAt.IsZero() && dueAt.After(time.Now()) {
		st.retries.add(e, dueAt)
		return
	}
	st.ready = append(st.ready, e)
}

// dispatch hands ready messages to idle workers. While the leases may
// have expired (renewals failing), it dispatches nothing: the messages
// wait in memory, and go on if the next renewal finds the shards still
// this relay's. A paused lane dispatches nothing either.
//
// A lane in a pool also needs one of the pool's slots per delivery. When
// the pool says no, the lane stays among the pool's wanting lanes and
// its loop goes on until the pool wakes it; when the lane stops wanting
// (nothing ready, its own Concurrency reached), it withdraws, so that it
// never holds back the lanes behind it.
func (l *lane) dispatch(st *laneState) {
	blocked := false // waiting for a pool slot
	defer l.settlePool(st, &blocked)
	owned := l.r.owned.Load()
	if !owned.valid() || l.paused.Load() {
		return
	}
	for st.nInFl < l.cfg.Concurrency {
		e := l.nextReady(st, owned)
		if e == nil {
			return
		}
		if !l.takeSlot(st) {
			blocked = true
			return
		}
		st.ready[0] = nil
		st.ready = st.ready[1:]
		e.ctx, e.cancel = context.WithCancel(l.deliverCtx)
		e.inflight = true
		st.nInFl++
		st.inflight[e.rec.Shard]++
		l.work <- e // never blocks: capacity equals Concurrency
	}
}

// nextReady returns the first ready message that can be delivered now,
// leaving it first in st.ready, or nil. It discards the entries before it
// that are stale: dropped, already running, of a shard no longer held, or
// of a key held since they became ready.
func (l *lane) nextReady(st *laneState, owned *shardSet) *entry {
	for len(st.ready) > 0 {
		e := st.ready[0]
		switch ks := st.keys[e.rec.Key]; {
		case st.known[e.rec.Seq] != e || e.inflight:
			// dropped or already running
		case !owned.has(e.rec.Shard):
			l.dropShardState(st, map[int]bool{e.rec.Shard: true})
		case e.rec.Key != "" && ks != nil && ks.mode == held:
			l.forget(st, e)
		default:
			return e
		}
		st.ready[0] = nil
		st.ready = st.ready[1:]
	}
	return nil
}

// takeSlot takes a pool slot for one delivery, reusing a spare one if the
// pool lets the lane keep it. A lane without a pool always may.
func (l *lane) takeSlot(st *laneState) bool {
	if l.pool == nil {
		return true
	}
	held := st.spare > 0
	if held {
		st.spare--
	}
	return l.pool.acquire(l.member, held)
}

// settlePool ends a dispatch in the pool: a lane that is not blocked
// waiting for a slot withdraws, and slots left spare go back.
func (l *lane) settlePool(st *laneState, blocked *bool) {
	if l.pool == nil {
		return
	}
	if !*blocked {
		l.pool.withdraw(l.member)
	}
	l.releaseSpare(st)
}

// releaseSpare gives back the pool slots of ended deliveries.
func (l *lane) releaseSpare(st *laneState) {
	if l.pool != nil && st.spare > 0 {
		l.pool.release(st.spare)
		st.spare = 0
	}
}

// deliverLoop is one worker.
func (l *lane) deliverLoop() {
	for e := range l.work {
		err := l.deliver(e.ctx, e)
		e.cancel()
		l.results <- result{e: e, err: err}
	}
}

func (l *lane) deliver(ctx context.Context, e *entry) error {
	if l.limiter != nil {
		if err := l.limiter.Wait(ctx); err != nil {
			return err
		}
	}
	dest := l.r.route(e.rec.Topic)
	if dest == nil {
		return ferry.Permanent(&NoRouteError{Topic: e.rec.Topic})
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	err := dest.Deliver(ctx, &e.rec)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // a destination that ignored its deadline
	}
	if o := l.r.opts.Observer; o != nil {
		o.Delivered(l.cfg.Name, &e.rec, err)
	}
	return err
}

// finish applies the outcome of a delivery attempt.
func (l *lane) finish(st *laneState, res result) {
	e := res.e
	e.inflight = false
	st.nInFl--
	if l.pool != nil {
		// The slot stays with the lane until dispatch, which reuses it
		// unless a lane ahead wants it, or gives it back.
		st.spare++
	}
	if st.inflight[e.rec.Shard]--; st.inflight[e.rec.Shard] == 0 {
		delete(st.inflight, e.rec.Shard)
	}
	if st.known[e.rec.Seq] != e {
		// Dropped while in flight (its shard was given up): record a
		// success, which is true, and nothing else.
		if res.err == nil {
			l.acker.add(ferry.Outcome{Seq: e.rec.Seq, Status: ferry.StatusDone, Delete: l.r.opts.Retention < 0})
		}
		return
	}
	if res.err == nil {
		e.settled = true
		l.acker.add(ferry.Outcome{Seq: e.rec.Seq, Status: ferry.StatusDone, Delete: l.r.opts.Retention < 0})
		l.next(st, e)
		return
	}
	var postponed *ferry.PostponedError
	if errors.As(res.err, &postponed) {
		// Not a failure: the attempt count and the retry budget stay.
		e.dueAt = time.Now().Add(postponed.After)
		l.acker.add(ferry.Outcome{Seq: e.rec.Seq, Status: ferry.StatusWaiting, Attempts: e.rec.Attempts,
			AvailableAt: e.dueAt, Error: res.err.Error()})
		st.retries.add(e, e.dueAt)
		return
	}
	e.rec.Attempts++
	msg := res.err.Error()
	if ferry.IsPermanent(res.err) || e.rec.Attempts >= l.cfg.MaxAttempts {
		l.r.log.Warn("message FAILED", "lane", l.cfg.Name, "seq", e.rec.Seq, "id", e.rec.ID,
			"topic", e.rec.Topic, "key", e.rec.Key, "attempts", e.rec.Attempts, "error", msg)
		e.settled = true
		l.acker.add(ferry.Outcome{Seq: e.rec.Seq, Status: ferry.StatusFailed, Attempts: e.rec.Attempts, Error: msg})
		if ks := st.keys[e.rec.Key]; ks != nil && l.cfg.OnFailed == Hold {
			l.dropQueue(st, ks, e)
			ks.mode, ks.since = held, time.Now()
			return
		}
		l.next(st, e)
		return
	}
	var delay time.Duration
	if l.cfg.RetryDelay != nil {
		delay = l.cfg.RetryDelay(&e.rec, res.err)
	} else {
		delay = l.cfg.Backoff.Delay(e.rec.Attempts)
		var later *ferry.RetryLaterError
		if errors.As(res.err, &later) && later.After > delay {
			delay = min(later.After, l.cfg.Backoff.Max)
		}
	}
	e.dueAt = time.Now().Add(delay)
	l.r.log.Debug("delivery failed; will retry", "lane", l.cfg.Name, "seq", e.rec.Seq, "attempts", e.rec.Attempts,
		"retry_in", delay, "error", msg)
	l.acker.add(ferry.Outcome{Seq: e.rec.Seq, Status: ferry.StatusWaiting, Attempts: e.rec.Attempts,
		AvailableAt: e.dueAt, Error: msg})
	st.retries.add(e, e.dueAt)
}

// next removes e, whose outcome is final, from its key's queue and
// releases the key's next message. e stays known until its outcome is in
// the database.
func (l *lane) next(st *laneState, e *entry) {
	if e.rec.Key == "" {
		return
	}
	ks := st.keys[e.rec.Key]
	if ks == nil {
		return
	}
	if len(ks.queue) > 0 && ks.queue[0] == e {
		ks.queue[0] = nil
		ks.queue = ks.queue[1:]
	}
	if len(ks.queue) > 0 {
		l.release(st, ks.queue[0], ks.queue[0].dueAt)
		return
	}
	if ks.mode == evicted {
		ks.mode, ks.since = recovering, time.Now()
		signal(l.rescanCh)
	}
}

// dropQueue empties a key's queue. The messages stay WAITING in the
// database and are forgotten, except failed, whose outcome is on its way
// to the database, and those in flight, whose results will say.
func (l *lane) dropQueue(st *laneState, ks *keyState, failed *entry) {
	for _, e := range ks.queue {
		if e != failed && !e.inflight {
			l.forget(st, e)
		}
	}
	ks.queue = nil
}

// forget drops a message from memory without recording anything.
func (l *lane) forget(st *laneState, e *entry) {
	if st.known[e.rec.Seq] == e {
		delete(st.known, e.rec.Seq)
		l.buffered.Add(-1)
		signal(l.spaceCh)
	}
}

// dropShardState forgets the messages and key states of shards this relay
// no longer holds. Entries in flight are forgotten too: their results then
// only record the delivery (see finish). When the relay holds the shards
// again, a rescan pass reads them back in order, held keys included.
func (l *lane) dropShardState(st *laneState, drop map[int]bool) {
	l.drops.Add(1)
	signal(l.rescanCh) // read the shards' messages again once they are held again
	for _, e := range st.known {
		if drop[e.rec.Shard] {
			l.forget(st, e)
		}
	}
	for k, ks := range st.keys {
		if drop[ks.shard] {
			delete(st.keys, k)
		}
	}
}

// onPersisted retires messages whose final outcome is in the database.
func (l *lane) onPersisted(st *laneState, outs []ferry.Outcome) {
	now := time.Now()
	for _, o := range outs {
		if o.Status == ferry.StatusWaiting {
			continue // a retry: the message stays in memory
		}
		if e, ok := st.known[o.Seq]; ok && e.settled && !e.inflight {
			delete(st.known, o.Seq)
			l.buffered.Add(-1)
		}
		st.gone[o.Seq] = now
	}
	signal(l.spaceCh)
}

// dropShards forgets the messages of the given shards. With cancel, the
// deliveries in flight are cancelled too (the lease is lost); otherwise
// they finish. It returns when none of them is in flight.
func (l *lane) dropShards(ctx context.Context, shards []int, cancelInFlight bool) error {
	drop := make(map[int]bool, len(shards))
	for _, s := range shards {
		drop[s] = true
	}
	for {
		busy := make(chan bool, 1)
		f := func(st *laneState) {
			if cancelInFlight {
				for _, e := range st.known {
					if e.inflight && drop[e.rec.Shard] {
						e.cancel()
					}
				}
			}
			l.dropShardState(st, drop)
			n := 0
			for s := range drop {
				n += st.inflight[s]
			}
			busy <- n > 0
		}
		select {
		case l.control <- f:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !<-busy {
			return nil
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
