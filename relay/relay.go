package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry"
)

// Relay delivers the outbox's messages: it leases shards, runs each lane,
// and keeps the leases alive. Create it with New and start it with Run.
type Relay struct {
	opts Options
	node string
	log  *slog.Logger
	gate *fairGate
	// olderUnsupported is set when the store turned out not to fetch
	// with older messages after all (a wrapper): use Fetch and
	// WaitingKeys.
	olderUnsupported atomic.Bool
	pools            map[string]*pool
	lanes            map[string]*lane
	owned            atomic.Pointer[shardSet]

	routeMu sync.RWMutex
	routes  map[string]ferry.Destination // resolved per topic, nil for no route

	releasing atomic.Bool    // surplus shards are being drained and released
	async     sync.WaitGroup // that work, waited for by Run
}

// NoRouteError is the error of a message whose topic no route matches.
// The message becomes FAILED; add a route and retry it.
type NoRouteError struct{ Topic string }

func (e *NoRouteError) Error() string {
	return fmt.Sprintf("relay: no route for topic %q: add a route for it to the relay config, then retry the message", e.Topic)
}

// New checks opts and returns a Relay. It does not touch the database.
func New(opts Options) (*Relay, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Node == "" {
		o.Node = defaultNode()
	}
	r := &Relay{opts: o, node: o.Node, log: o.Logger.With("node", o.Node),
		pools: map[string]*pool{}, lanes: map[string]*lane{}, routes: map[string]ferry.Destination{}}
	weights := map[string]int{}
	for _, l := range o.Lanes {
		weights[l.Name] = l.Weight
	}
	r.gate = newFairGate(max(4, 2*len(o.Lanes)), weights)
	for _, p := range o.Pools {
		r.pools[p.Name] = newPool(p)
	}
	for _, l := range o.Lanes {
		r.lanes[l.Name] = newLane(r, l)
	}
	r.owned.Store(newShardSet(nil, time.Time{}))
	return r, nil
}

func defaultNode() string {
	host, _ := os.Hostname()
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Node returns the name this relay holds leases under.
func (r *Relay) Node() string { return r.node }

// route returns the destination of topic, or nil.
func (r *Relay) route(topic string) ferry.Destination {
	r.routeMu.RLock()
	d, ok := r.routes[topic]
	r.routeMu.RUnlock()
	if ok {
		return d
	}
	for _, rt := range r.opts.Routes {
		if m, _ := path.Match(rt.Topic, topic); m {
			d = rt.Destination
			break
		}
	}
	r.routeMu.Lock()
	r.routes[topic] = d
	r.routeMu.Unlock()
	return d
}

// Run delivers messages until ctx is done, then stops: it stops fetching,
// waits up to the shutdown timeout for deliveries in flight, records
// their outcomes and releases its shards so another instance takes over
// at once. Messages it had read but not delivered stay WAITING. Run
// returns nil after a clean shutdown.
func (r *Relay) Run(ctx context.Context) error {
	r.log.Info("relay starting", "lanes", len(r.lanes), "lease_ttl", r.opts.LeaseTTL)
	if err := r.renew(ctx, true); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Before any delivery: a paused lane must not start one.
	r.firstPaused(ctx)
	if ctx.Err() != nil {
		r.releaseLeases(ctx)
		return nil
	}
	var wg sync.WaitGroup
	laneCtx, stopLanes := context.WithCancel(ctx)
	defer stopLanes()
	for _, l := range r.lanes {
		wg.Go(func() { l.run(laneCtx) })
	}
	bgCtx, stopBackground := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Go(func() { r.leaseLoop(bgCtx) })
	bg.Go(func() { r.cleanupLoop(bgCtx) })
	bg.Go(func() { r.pauseLoop(bgCtx) })
	if n, ok := r.opts.Store.(ferry.Notifier); ok {
		bg.Go(func() { r.listenLoop(bgCtx, n) })
	}
	<-ctx.Done()
	r.log.Info("relay stopping")
	wg.Wait()
	stopBackground()
	bg.Wait()
	r.async.Wait()
	r.releaseLeases(ctx)
	r.log.Info("relay stopped")
	return nil
}

// releaseLeases gives up every shard lease, after ctx is done, so that
// other instances take the shards over at once.
func (r *Relay) releaseLeases(ctx context.Context) {
	release, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.opts.Store.Release(release, r.node, nil); err != nil {
		r.log.Warn("could not release shard leases; other instances take them over when they expire", "error", err)
	}
}

// renew renews the leases once. At start (first) it retries until it
// holds its lease or ctx ends, so a database that is still starting does
// not stop the relay.
func (r *Relay) renew(ctx context.Context, first bool) error {
	pause := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		sent := time.Now()
		l, err := r.opts.Store.Lease(ctx, r.node, r.opts.LeaseTTL)
		if err == nil {
			r.apply(ctx, l, sent)
			return nil
		}
		if !first {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Error("cannot take shard leases; retrying", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// apply installs a fresh lease: the shards held beyond the fair share are
// drained and released so that other instances can take them.
func (r *Relay) apply(ctx context.Context, l ferry.Lease, sent time.Time) {
	// The database counts the lease from when it received the renewal,
	// which is after sent; a tenth of the TTL covers clock rate drift.
	until := sent.Add(r.opts.LeaseTTL - r.opts.LeaseTTL/10)
	keep := l.Shards
	var surplus []int
	if len(keep) > l.Fair {
		keep, surplus = keep[:l.Fair], slices.Clone(keep[l.Fair:])
	}
	prev := r.owned.Load()
	next := newShardSet(keep, until)
	r.owned.Store(next)
	for _, ln := range r.lanes {
		signal(ln.leaseCh) // dispatching may resume
		if next.gained(prev) {
			ln.wake()
		}
	}
	var lost []int
	for _, sh := range prev.list {
		if !next.has(sh) && !slices.Contains(surplus, sh) {
			lost = append(lost, sh)
		}
	}
	if len(lost) > 0 {
		r.log.Warn("shard leases lost", "shards", lost)
		r.drop(ctx, lost, true)
	}
	// Draining can take up to the shutdown timeout; it runs on its own so
	// that the lease loop keeps renewing the shards this relay keeps.
	if len(surplus) > 0 && r.releasing.CompareAndSwap(false, true) {
		r.async.Go(func() {
			defer r.releasing.Store(false)
			if !r.drop(ctx, surplus, false) {
				return
			}
			if err := r.opts.Store.Release(ctx, r.node, surplus); err != nil {
				r.log.Warn("could not release surplus shards", "shards", surplus, "error", err)
				return
			}
			r.log.Info("released shards to other instances", "shards", surplus, "fair_share", l.Fair, "nodes", l.Nodes)
		})
	}
}

// drop makes every lane forget the shards and reports whether none of
// their deliveries is still in flight.
func (r *Relay) drop(ctx context.Context, shards []int, cancelInFlight bool) bool {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ShutdownTimeout)
	defer cancel()
	ok := true
	for _, l := range r.lanes {
		if err := l.dropShards(ctx, shards, cancelInFlight); err != nil {
			ok = false
		}
	}
	return ok
}

// leaseLoop renews the leases every third of their TTL. When renewals
// fail past the local deadline, the lanes stop delivering: another
// instance may own the shards by then.
func (r *Relay) leaseLoop(ctx context.Context) {
	t := time.NewTicker(r.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.renew(ctx, false); err != nil && ctx.Err() == nil {
			cur := r.owned.Load()
			r.log.Error("cannot renew shard leases", "error", err, "valid_for", time.Until(cur.until).Round(time.Millisecond))
			if !cur.valid() && len(cur.list) > 0 {
				r.log.Error("shard leases expired: delivery paused until the database answers", "shards", len(cur.list))
				r.owned.Store(newShardSet(nil, time.Time{}))
				r.drop(ctx, cur.list, true)
			}
		}
	}
}

// cleanupLoop deletes DONE messages older than the retention, a small
// batch at a time so that no statement holds locks for long.
func (r *Relay) cleanupLoop(ctx context.Context) {
	const batch = 1000
	every := min(max(r.opts.Retention/10, time.Second), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		total := 0
		for ctx.Err() == nil {
			cutoff := time.Now().Add(-max(r.opts.Retention, 0))
			n, err := r.opts.Store.Cleanup(ctx, cutoff, batch)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("cleanup of DONE messages failed; will try again", "error", err)
				}
				break
			}
			total += n
			if n < batch {
				break
			}
			select { // let other work in between batches
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
		if total > 0 {
			r.log.Debug("deleted DONE messages past retention", "count", total)
		}
	}
}

// listenLoop wakes lanes when the store says messages were committed, and
// listens again after a failure; polling covers the gap.
func (r *Relay) listenLoop(ctx context.Context, n ferry.Notifier) {
	pause := 100 * time.Millisecond
	// A lane nobody serves is a typo in a producer or a relay config as
	// often as it is another relay's: say so once per lane.
	unserved := map[string]bool{}
	for ctx.Err() == nil {
		started := time.Now()
		err := n.Listen(ctx, func(name string, seq int64) {
			if l, ok := r.lanes[name]; ok {
				l.notify(seq)
				return
			}
			if seq >= 0 && !unserved[name] && len(unserved) < 100 {
				unserved[name] = true
				r.log.Warn("messages were committed to a lane this relay does not serve; unless another relay serves it, they wait: add the lane to the relay's lanes, or check the producer's lane name",
					"lane", name, "served", slices.Sorted(maps.Keys(r.lanes)))
			}
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			pause = 100 * time.Millisecond
		}
		r.log.Warn("notifications stopped; polling until they are back", "error", err, "retry_in", pause)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
}
