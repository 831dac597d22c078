package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ferry-dev/ferry/transport"
)

// releaseIdle is the idle time Close gives the entries it hands back: so
// long that every consumer of the group, whatever its ClaimIdle, claims
// them at its next XAUTOCLAIM.
const releaseIdle = 10 * 365 * 24 * time.Hour

// scriptChunk bounds the entry ids one script call is given.
const scriptChunk = 500

// streamSub is a subscription to a stream through a consumer group.
//
// Next hands out entries that a fetch read, one fetch at a time in its own
// goroutine, so that Next returns when its context ends while the fetch
// finishes its XREADGROUP (go-redis cannot interrupt one) and keeps what
// it read for the next call. The entries a subscription holds (fetched,
// handed out and not yet settled, or nacked and waiting for their delay)
// are refreshed in the background so that no other consumer claims them.
type streamSub struct {
	parent   *Subscriber
	client   *goredis.Client
	opts     *SubscriberOptions
	log      *slog.Logger
	stream   string
	group    string
	consumer string

	ctx    context.Context // ends at Close: stops fetching and refreshing
	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	fatal    error
	ready    []*transport.Delivery
	held     map[string]struct{}  // entries fetched and not yet settled
	nacked   map[string]time.Time // entries to deliver again, and when
	fetching chan struct{}        // closed when the fetch under way ends

	// Used by one fetch at a time.
	groupReady bool
	claimFrom  string
	nextClaim  time.Time
	retry      backoff
	failing    bool
}

func (s *Subscriber) subscribeStream(ctx context.Context, stream, group string) (*streamSub, error) {
	sctx, cancel := context.WithCancel(context.Background())
	sub := &streamSub{
		parent:    s,
		client:    s.client,
		opts:      &s.opts,
		stream:    stream,
		group:     group,
		consumer:  consumerName(),
		ctx:       sctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		held:      make(map[string]struct{}),
		nacked:    make(map[string]time.Time),
		claimFrom: "0-0",
	}
	sub.log = s.log.With("stream", stream, "group", group, "consumer", sub.consumer)
	// Create the group now, so that entries added once Subscribe returns
	// are the group's even with StartID "$", and a key of the wrong type
	// fails here. An unreachable server is left to Next.
	switch err := sub.createGroup(ctx); {
	case err == nil:
		sub.groupReady = true
	case isRedisError(err):
		cancel()
		return nil, err
	default:
		sub.log.Warn("redis: cannot create the consumer group yet; the subscription will retry", "err", err)
	}
	sub.wg.Go(sub.refreshLoop)
	return sub, nil
}

// createGroup creates the group (and the stream) unless it exists.
func (s *streamSub) createGroup(ctx context.Context) error {
	err := s.client.XGroupCreateMkStream(ctx, s.stream, s.group, s.opts.StartID).Err()
	switch {
	case err == nil:
		s.log.Debug("redis: created consumer group", "start", s.opts.StartID)
		return nil
	case goredis.HasErrorPrefix(err, "BUSYGROUP"):
		return nil
	case goredis.HasErrorPrefix(err, "WRONGTYPE"):
		return fmt.Errorf("redis: source %q is not a stream (%w): subscribe to another key, or delete the key if it is a leftover", s.stream, err)
	}
	return fmt.Errorf("redis: create consumer group %q on stream %q: %w", s.group, s.stream, err)
}

// Next returns the next entry: one nacked by this subscription whose delay
// is over, one another consumer of the group left idle for ClaimIdle, or
// a new one.
func (s *streamSub) Next(ctx context.Context) (*transport.Delivery, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, transport.ErrClosed
		}
		if len(s.ready) > 0 {
			d := s.ready[0]
			s.ready[0] = nil
			s.ready = s.ready[1:]
			s.mu.Unlock()
			return d, nil
		}
		if s.fatal != nil {
			err := s.fatal
			s.mu.Unlock()
			return nil, err
		}
		if s.fetching == nil {
			s.fetching = make(chan struct{})
			s.wg.Go(s.fetch)
		}
		fetching := s.fetching
		s.mu.Unlock()

		select {
		case <-fetching:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, transport.ErrClosed
		}
	}
}

// fetch runs one fetch and keeps what it got for Next.
func (s *streamSub) fetch() {
	ds, err := s.fetchOnce()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = append(s.ready, ds...)
	if err != nil {
		s.fatal = err
	}
	close(s.fetching)
	s.fetching = nil
}

// fetchOnce gets the next entries: those nacked whose delay is over, then
// those other consumers left idle, then new ones, waiting up to Block for
// them. It returns an error only when the subscription cannot go on; it
// logs connection trouble and returns nothing after a backoff.
func (s *streamSub) fetchOnce() ([]*transport.Delivery, error) {
	ctx := s.ctx
	if ctx.Err() != nil {
		return nil, nil
	}
	if !s.groupReady {
		if err := s.createGroup(ctx); err != nil {
			return nil, s.trouble(ctx, "create the consumer group", err)
		}
		s.groupReady = true
	}

	now := time.Now()
	if due := s.dueNacks(now); len(due) > 0 {
		ds, err := s.claim(ctx, due)
		if err != nil {
			return nil, s.trouble(ctx, "claim nacked entries", err)
		}
		s.mu.Lock()
		for _, id := range due {
			delete(s.nacked, id)
		}
		s.mu.Unlock()
		if len(ds) > 0 {
			s.recovered()
			return ds, nil
		}
	}

	if !now.Before(s.nextClaim) {
		ds, err := s.autoclaim(ctx)
		if err != nil {
			return nil, s.trouble(ctx, "claim idle entries", err)
		}
		if len(ds) > 0 {
			s.recovered()
			return ds, nil
		}
	}

	block := s.opts.Block
	if wait := time.Until(s.nextClaim); wait < block {
		block = wait
	}
	if at, ok := s.firstNack(); ok {
		block = min(block, time.Until(at))
	}
	// BLOCK 0 would wait forever.
	block = max(block, time.Millisecond)
	res, err := s.client.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group:    s.group,
		Consumer: s.consumer,
		Streams:  []string{s.stream, ">"},
		Count:    int64(s.opts.Count),
		Block:    block,
	}).Result()
	if errors.Is(err, goredis.Nil) {
		s.recovered()
		return nil, nil
	}
	if err != nil {
		return nil, s.trouble(ctx, "read", err)
	}
	s.recovered()
	var ds []*transport.Delivery
	for _, st := range res {
		for _, e := range st.Messages {
			ds = append(ds, s.delivery(e.ID, e.Values, 1))
		}
	}
	return ds, nil
}

// trouble handles a failed command: it returns the errors that end the
// subscription, and waits a backoff after the others.
func (s *streamSub) trouble(ctx context.Context, op string, err error) error {
	switch {
	case ctx.Err() != nil:
		return nil // closing
	case strings.Contains(err.Error(), "WRONGTYPE"): // also when a script relays it
		s.log.Error("redis: the source is not a stream", "op", op, "err", err)
		return fmt.Errorf("redis: source %q is not a stream any more (%w): subscribe to another key", s.stream, err)
	case strings.Contains(err.Error(), "NOGROUP") || goredis.HasErrorPrefix(err, "UNBLOCKED"):
		// The stream or the group was deleted, or Redis restarted
		// without persistence: create them again and go on.
		s.log.Warn("redis: the stream or the consumer group is gone; creating it again", "op", op, "err", err)
		s.groupReady = false
		return nil
	}
	wait := s.retry.next()
	if !s.failing {
		s.log.Warn("redis: cannot reach the server; retrying", "op", op, "err", err)
	} else {
		s.log.Debug("redis: still cannot reach the server", "op", op, "err", err, "retry_in", wait)
	}
	s.failing = true
	sleep(ctx, wait)
	return nil
}

// recovered notes a command that worked.
func (s *streamSub) recovered() {
	if s.failing {
		s.log.Info("redis: reading again")
	}
	s.failing = false
	s.retry.reset()
}

// dueNacks returns the nacked entries whose delay is over, oldest first.
func (s *streamSub) dueNacks(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []string
	for id, at := range s.nacked {
		if !at.After(now) {
			due = append(due, id)
		}
	}
	slices.SortFunc(due, compareIDs)
	if len(due) > s.opts.Count {
		due = due[:s.opts.Count]
	}
	return due
}

// firstNack returns when the next nacked entry is due.
func (s *streamSub) firstNack() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first time.Time
	for _, at := range s.nacked {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first, !first.IsZero()
}

// claim delivers ids again if this consumer still owns them.
func (s *streamSub) claim(ctx context.Context, ids []string) ([]*transport.Delivery, error) {
	v, err := s.owned(ctx, "claim", 0, ids)
	if err != nil {
		return nil, err
	}
	entries, err := parseEntries(v)
	if err != nil {
		return nil, err
	}
	ds := make([]*transport.Delivery, 0, len(entries))
	for _, e := range entries {
		ds = append(ds, s.delivery(e.id, e.values, e.deliveries))
	}
	return ds, nil
}

// autoclaim takes over entries of the group idle for ClaimIdle: those of
// consumers that died, or that Close gave back.
func (s *streamSub) autoclaim(ctx context.Context) ([]*transport.Delivery, error) {
	v, err := autoclaimScript.Run(ctx, s.client, []string{s.stream},
		s.group, s.consumer, s.opts.ClaimIdle.Milliseconds(), s.claimFrom, s.opts.Count).Result()
	if err != nil {
		return nil, err
	}
	reply, ok := v.([]any)
	if !ok || len(reply) != 2 {
		return nil, fmt.Errorf("redis: unexpected XAUTOCLAIM reply %v", v)
	}
	entries, err := parseEntries(reply[1])
	if err != nil {
		return nil, err
	}
	cursor, _ := reply[0].(string)
	if cursor == "" || cursor == "0-0" {
		// A full pass over the pending entries: wait before the next.
		s.claimFrom = "0-0"
		s.nextClaim = time.Now().Add(max(s.opts.ClaimIdle/2, 10*time.Millisecond))
	} else {
		s.claimFrom = cursor // more to look at: go on at the next fetch
	}
	ds := make([]*transport.Delivery, 0, len(entries))
	for _, e := range entries {
		ds = append(ds, s.delivery(e.id, e.values, e.deliveries))
		s.log.Debug("redis: claimed an idle entry", "entry", e.id, "deliveries", e.deliveries)
	}
	return ds, nil
}

// owned runs ownedScript on ids in chunks; for "claim" it returns the
// reply of one call (the caller passes at most one chunk).
func (s *streamSub) owned(ctx context.Context, mode string, idle time.Duration, ids []string) (any, error) {
	var reply any
	chunks := slices.Collect(slices.Chunk(ids, scriptChunk))
	if len(chunks) == 0 && mode == "release" {
		chunks = [][]string{nil} // still remove the consumer
	}
	for _, chunk := range chunks {
		args := make([]any, 0, 4+len(chunk))
		args = append(args, s.group, s.consumer, mode, idle.Milliseconds())
		for _, id := range chunk {
			args = append(args, id)
		}
		v, err := ownedScript.Run(ctx, s.client, []string{s.stream}, args...).Result()
		if err != nil {
			return nil, err
		}
		reply = v
	}
	return reply, nil
}

// delivery makes the delivery of an entry delivered deliveries times, and
// holds the entry until it is settled.
func (s *streamSub) delivery(id string, values map[string]any, deliveries int64) *transport.Delivery {
	s.mu.Lock()
	s.held[id] = struct{}{}
	s.mu.Unlock()
	offset := int64(-1)
	if ms, ok := entryMillis(id); ok {
		offset = ms
	}
	return transport.NewDelivery(decodeEntry(values), -1, offset, int(max(deliveries-1, 0)), &entryAcker{sub: s, id: id})
}

// entryAcker settles one entry: each delivery has its own, so that it
// knows its entry id, which Delivery has no field for.
type entryAcker struct {
	sub *streamSub
	id  string
}

// Ack acknowledges the entry (XACK). Acknowledging an entry that is no
// longer pending (acknowledged already, or by another consumer that
// claimed it) does nothing.
func (a *entryAcker) Ack(ctx context.Context, _ *transport.Delivery) error {
	s := a.sub
	s.mu.Lock()
	// Whatever XACK answers, this subscription stops refreshing the
	// entry: if the acknowledgement was lost, the entry comes again after
	// ClaimIdle rather than never.
	delete(s.held, a.id)
	delete(s.nacked, a.id)
	s.mu.Unlock()
	if err := s.client.XAck(ctx, s.stream, s.group, a.id).Err(); err != nil {
		return fmt.Errorf("redis: acknowledge entry %s of stream %q: %w", a.id, s.stream, err)
	}
	return nil
}

// Nack delivers the entry again after delay, through this subscription:
// it stays pending for this consumer, refreshed so that nobody else takes
// it, until the delay is over. If the subscription closes first, Close
// gives it back to the group at once; if the process dies, another
// consumer claims it after ClaimIdle, whatever the delay.
func (a *entryAcker) Nack(ctx context.Context, _ *transport.Delivery, delay time.Duration) error {
	s := a.sub
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		if _, err := s.owned(ctx, "release", releaseIdle, []string{a.id}); err != nil {
			return fmt.Errorf("redis: give entry %s of stream %q back: %w", a.id, s.stream, err)
		}
		return nil
	}
	delete(s.held, a.id)
	s.nacked[a.id] = time.Now().Add(max(delay, 0))
	s.mu.Unlock()
	return nil
}

// refreshLoop keeps the entries this subscription holds from being
// claimed by others, and now and then removes consumers that dead
// processes left in the group.
func (s *streamSub) refreshLoop() {
	every := max(s.opts.ClaimIdle/3, 5*time.Millisecond)
	sweepEvery := max(s.opts.RemoveIdleConsumers/2, time.Second)
	var lastSweep time.Time
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if ids := s.holding(); len(ids) > 0 {
			if _, err := s.owned(s.ctx, "touch", 0, ids); err != nil && s.ctx.Err() == nil {
				s.log.Debug("redis: cannot refresh the entries held", "entries", len(ids), "err", err)
			}
		}
		if s.opts.RemoveIdleConsumers > 0 && time.Since(lastSweep) >= sweepEvery {
			lastSweep = time.Now()
			s.sweep()
		}
	}
}

// sweep removes consumers idle for RemoveIdleConsumers that hold nothing.
func (s *streamSub) sweep() {
	v, err := sweepScript.Run(s.ctx, s.client, []string{s.stream}, s.group, s.opts.RemoveIdleConsumers.Milliseconds()).StringSlice()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Debug("redis: cannot look for idle consumers", "err", err)
		}
		return
	}
	if len(v) > 0 {
		s.log.Info("redis: removed idle consumers that held no entries", "consumers", v)
	}
}

// holding returns the ids of the entries this subscription holds.
func (s *streamSub) holding() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.held)+len(s.nacked))
	for id := range s.held {
		ids = append(ids, id)
	}
	for id := range s.nacked {
		ids = append(ids, id)
	}
	return ids
}

// Close stops the subscription and gives the entries it holds (fetched
// and not acknowledged, or nacked and waiting) back to the group: they
// are made idle, so that the next XAUTOCLAIM of any consumer of the group
// takes them. It waits for a read in progress, at most Block. If Redis
// cannot be reached, the entries come back after ClaimIdle instead.
func (s *streamSub) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	defer s.parent.forget(s)

	ids := s.holding()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.owned(ctx, "release", releaseIdle, ids); err != nil {
		s.log.Warn("redis: cannot give the unacknowledged entries back; the group claims them after ClaimIdle", "entries", len(ids), "claim_idle", s.opts.ClaimIdle, "err", err)
		return nil
	}
	s.log.Debug("redis: subscription closed", "entries_given_back", len(ids))
	return nil
}

// compareIDs orders stream entry ids as Redis does.
func compareIDs(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if am != bm {
		if am < bm {
			return -1
		}
		return 1
	}
	switch {
	case as < bs:
		return -1
	case as > bs:
		return 1
	}
	return 0
}

func splitID(id string) (ms, seq uint64) {
	m, q, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(q, 10, 64)
	return ms, seq
}

// isRedisError reports whether err is the server's answer rather than a
// failure to reach it.
func isRedisError(err error) bool {
	var rerr goredis.Error
	return errors.As(err, &rerr)
}
