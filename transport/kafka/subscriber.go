package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferry-dev/ferry/transport"
)

// SubscriberOptions configure a Subscriber. Only Brokers is required;
// every other field has the default its comment gives.
type SubscriberOptions struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string

	// StartOffset is where a group without a committed offset starts
	// reading a partition: StartEarliest (default) or StartLatest. It
	// also applies when the committed offset no longer exists (the
	// records were deleted by retention).
	StartOffset StartOffset
	// SessionTimeout is how long the group waits for a member that
	// stopped heartbeating (a crashed process, a lost network) before it
	// gives the member's partitions to the others, whose messages not yet
	// committed are then delivered again. Default 45s; the brokers bound
	// it (group.min.session.timeout.ms, 6s by default).
	SessionTimeout time.Duration
	// HeartbeatInterval is how often a member tells the group it is
	// alive and learns of rebalances. Default 3s, or a third of
	// SessionTimeout if that is less.
	HeartbeatInterval time.Duration
	// CommitInterval is the least time between two commits of the
	// acknowledged offsets; a commit goes out as soon as an
	// acknowledgement arrives after a quiet CommitInterval. What is
	// acknowledged but not yet committed when a process crashes is
	// delivered again. Default 1s.
	CommitInterval time.Duration
	// MaxInFlight bounds the messages a subscription holds: fetched and
	// not yet acknowledged, including those handed out by Next. Fetching
	// stops while the bound is reached. Default 1000.
	MaxInFlight int
	// CloseTimeout bounds how long Close spends committing and leaving
	// the group. Default 10s.
	CloseTimeout time.Duration

	// SASL authenticates the connection; nil means none.
	SASL *SASL
	// TLS encrypts the connection; nil means plain TCP.
	TLS *tls.Config
	// Dialer, if set, opens every connection to a broker; see
	// PublisherOptions.Dialer.
	Dialer DialFunc
	// ClientID is the client.id; default "ferry".
	ClientID string
	// Logger receives the subscriber's warnings and errors; default
	// slog.Default().
	Logger *slog.Logger
}

func (o *SubscriberOptions) setDefaults() error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SessionTimeout == 0 {
		o.SessionTimeout = 45 * time.Second
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = min(3*time.Second, o.SessionTimeout/3)
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = time.Second
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 1000
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 10 * time.Second
	}
	switch {
	case o.StartOffset != StartEarliest && o.StartOffset != StartLatest:
		return fmt.Errorf("kafka: SubscriberOptions.StartOffset %d is not StartEarliest or StartLatest", int(o.StartOffset))
	case o.SessionTimeout < 0:
		return fmt.Errorf("kafka: SubscriberOptions.SessionTimeout %v is negative", o.SessionTimeout)
	case o.HeartbeatInterval <= 0 || o.HeartbeatInterval >= o.SessionTimeout:
		return fmt.Errorf("kafka: SubscriberOptions.HeartbeatInterval %v must be positive and well under SessionTimeout %v (a third of it at most)", o.HeartbeatInterval, o.SessionTimeout)
	case o.CommitInterval < 0:
		return fmt.Errorf("kafka: SubscriberOptions.CommitInterval %v is negative", o.CommitInterval)
	case o.MaxInFlight < 0:
		return fmt.Errorf("kafka: SubscriberOptions.MaxInFlight %d is negative: use 0 for the default", o.MaxInFlight)
	case o.CloseTimeout < 0:
		return fmt.Errorf("kafka: SubscriberOptions.CloseTimeout %v is negative", o.CloseTimeout)
	}
	return nil
}

func (o *SubscriberOptions) conn() connOptions {
	return connOptions{brokers: o.Brokers, clientID: o.ClientID, sasl: o.SASL, tls: o.TLS, dial: o.Dialer, logger: o.Logger}
}

// Subscriber reads Kafka topics in consumer groups. It implements
// transport.Subscriber; each subscription is a group member of its own.
type Subscriber struct {
	opts SubscriberOptions

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

var _ transport.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a subscriber for the cluster o.Brokers names. It
// does not connect; subscriptions do, and retry while the cluster cannot
// be reached.
func NewSubscriber(o SubscriberOptions) (*Subscriber, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if err := o.conn().validate("SubscriberOptions"); err != nil {
		return nil, err
	}
	return &Subscriber{opts: o, subs: make(map[*subscription]struct{})}, nil
}

// Subscribe joins the consumer group group and reads the topic source.
// Partitions are shared among the group's members with the
// cooperative-sticky balancer: a member that joins or leaves moves only
// the partitions that must move.
//
// Subscribe does not wait for the group to be joined, nor for the
// cluster to be reachable; Next does. ctx is not used after Subscribe
// returns.
func (s *Subscriber) Subscribe(ctx context.Context, source, group string) (transport.Subscription, error) {
	if err := validTopic(source); err != nil {
		return nil, fmt.Errorf("kafka: subscribe: %w", err)
	}
	if group == "" {
		return nil, fmt.Errorf("kafka: subscribe to %q: the group is empty: name the consumer group (the service's name, usually)", source)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, transport.ErrClosed
	}
	sn, err := newSubscription(s, source, group)
	if err != nil {
		return nil, err
	}
	s.subs[sn] = struct{}{}
	return sn, nil
}

// Close closes every subscription the subscriber made.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	subs := make([]*subscription, 0, len(s.subs))
	for sn := range s.subs {
		subs = append(subs, sn)
	}
	s.mu.Unlock()
	var errs []error
	for _, sn := range subs {
		errs = append(errs, sn.Close())
	}
	return errors.Join(errs...)
}

func (s *Subscriber) forget(sn *subscription) {
	s.mu.Lock()
	delete(s.subs, sn)
	s.mu.Unlock()
}

// subscription is one group member reading one topic.
//
// Kafka keeps one committed offset per partition: everything before it is
// done. Deliveries are acknowledged in any order, so each partition keeps
// the records it handed out, in offset order, until every record before
// them is acknowledged too; the commit is the first record not yet
// acknowledged, and the acknowledged records above it travel in the
// commit's metadata (see encodeMeta) so that a restart skips them.
type subscription struct {
	s      *Subscriber
	opts   *SubscriberOptions
	topic  string
	group  string
	log    *slog.Logger
	cl     *kgo.Client
	ctx    context.Context // ends at Close: stops polling and committing
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	parts    map[int32]*partition
	queue    []*entry // ready for Next, in arrival order
	inFlight int      // entries fetched and not settled
	closed   bool
	err      error // why the subscription cannot go on

	ready chan struct{} // signalled when queue gets entries or err is set
	room  chan struct{} // signalled when inFlight goes down
	dirty chan struct{} // signalled when a commit is due
	done  chan struct{} // closed by Close

	commitMu   sync.Mutex // one commit request at a time; guards topicID
	topicID    [16]byte   // for OffsetCommit v10+, looked up once
	topicIDSet bool
}

// partition is what a subscription knows of a partition it owns.
type partition struct {
	id    int32
	owned bool // false once revoked or lost: its entries are dropped

	// pending holds the records handed out or skipped, in offset order,
	// from the first one not acknowledged; acknowledged records at the
	// front are removed as they become contiguous.
	pending []*entry
	next    int64 // offset after the last record removed from pending; -1 if none
	high    int64 // highest offset seen; records at or below are duplicates
	epoch   int32 // leader epoch of the last record, for the commit

	// From the commit this member found on assignment:
	skip          map[int64]bool // offsets done after it, to skip
	prevDelivered int64          // highest offset handed out before it

	committed     int64 // last commit that went through; -1 if none
	committedMeta string
}

// entry is one record of a partition; it settles its deliveries.
type entry struct {
	sn          *subscription
	p           *partition
	offset      int64
	d           *transport.Delivery // the latest delivery of the record
	acked       bool
	queued      bool        // in sn.queue, not yet handed out again
	timer       *time.Timer // a delayed redelivery after Nack
	redelivered int
}

func newSubscription(s *Subscriber, topic, group string) (*subscription, error) {
	o := &s.opts
	ctx, cancel := context.WithCancel(context.Background())
	sn := &subscription{
		s: s, opts: o, topic: topic, group: group,
		log:    o.Logger.With("topic", topic, "group", group),
		ctx:    ctx,
		cancel: cancel,
		parts:  make(map[int32]*partition),
		ready:  make(chan struct{}, 1),
		room:   make(chan struct{}, 1),
		dirty:  make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	start := kgo.NewOffset().AtStart()
	if o.StartOffset == StartLatest {
		start = kgo.NewOffset().AtEnd()
	}
	opts, _ := o.conn().kgoOpts()
	opts = append(opts,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(start),
		kgo.SessionTimeout(o.SessionTimeout),
		kgo.HeartbeatInterval(o.HeartbeatInterval),
		// A fetch waits this long for records before the broker answers
		// empty; partitions assigned meanwhile wait for that answer, so
		// kgo's 5s would delay a rebalance's partitions by as much.
		// 500ms is the Java consumer's fetch.max.wait.ms.
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsAssigned(sn.assigned),
		kgo.OnOffsetsFetched(sn.offsetsFetched),
		kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
			sn.revoke(ctx, m[topic], true)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
			sn.revoke(ctx, m[topic], false)
		}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("kafka: subscribe to %q: %w", topic, err)
	}
	sn.cl = cl
	sn.wg.Add(2)
	go sn.poll()
	go sn.commitLoop()
	return sn, nil
}

// signal wakes whoever waits on c, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Next returns the next delivery. A partition's records come in offset
// order; records of different partitions interleave.
func (sn *subscription) Next(ctx context.Context) (*transport.Delivery, error) {
	for {
		sn.mu.Lock()
		if sn.closed {
			sn.mu.Unlock()
			return nil, transport.ErrClosed
		}
		for len(sn.queue) > 0 {
			e := sn.queue[0]
			sn.queue[0] = nil
			sn.queue = sn.queue[1:]
			e.queued = false
			if e.acked || !e.p.owned {
				continue
			}
			more := len(sn.queue) > 0
			d := e.d
			sn.mu.Unlock()
			if more {
				signal(sn.ready) // for another goroutine waiting in Next
			}
			return d, nil
		}
		err := sn.err
		sn.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-sn.ready:
		case <-sn.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Ack marks the record done. The partition's offset is committed in the
// background once every record before it is done too. Acknowledging a
// record of a partition that has moved to another member does nothing:
// that member delivers it again.
func (e *entry) Ack(_ context.Context, _ *transport.Delivery) error {
	sn := e.sn
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.closed {
		return transport.ErrClosed
	}
	if e.acked || !e.p.owned {
		return nil
	}
	e.acked = true
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	sn.inFlight--
	signal(sn.room)
	if len(e.p.pending) > 0 && e.p.pending[0] == e {
		e.p.advance()
	}
	signal(sn.dirty)
	return nil
}

// Nack hands the record out again after delay, with Redelivered one
// more. Kafka has no per-record redelivery: the subscription holds the
// record, and the partition's committed offset stays before it until it
// is acknowledged.
func (e *entry) Nack(_ context.Context, _ *transport.Delivery, delay time.Duration) error {
	sn := e.sn
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.closed {
		return transport.ErrClosed
	}
	if e.acked || !e.p.owned || e.queued || e.timer != nil {
		return nil // settled, given up, or already coming again
	}
	e.redelivered++
	d := e.d
	e.d = transport.NewDelivery(d.Message, d.Partition, d.Offset, e.redelivered, e)
	if delay <= 0 {
		sn.enqueue(e)
		return nil
	}
	e.timer = time.AfterFunc(delay, func() {
		sn.mu.Lock()
		defer sn.mu.Unlock()
		e.timer = nil
		if !sn.closed && !e.acked && e.p.owned {
			sn.enqueue(e)
		}
	})
	return nil
}

// enqueue makes e available to Next. sn.mu is held.
func (sn *subscription) enqueue(e *entry) {
	e.queued = true
	sn.queue = append(sn.queue, e)
	signal(sn.ready)
}

// advance removes the acknowledged records at the front of pending.
func (p *partition) advance() {
	i := 0
	for i < len(p.pending) && p.pending[i].acked {
		p.next = p.pending[i].offset + 1
		p.pending[i] = nil
		i++
	}
	p.pending = p.pending[i:]
}

// commitPoint returns the offset to commit for p and its metadata, and
// whether they differ from the last commit.
func (p *partition) commitPoint() (off int64, meta string, changed bool) {
	off = p.next
	if len(p.pending) > 0 {
		off = p.pending[0].offset
	}
	if off < 0 {
		return 0, "", false // nothing fetched yet
	}
	var done []int64
	for _, e := range p.pending {
		if e.acked {
			done = append(done, e.offset)
		}
	}
	// Offsets the previous owner finished that were not fetched again yet.
	if len(p.skip) > 0 {
		var later []int64
		for o := range p.skip {
			if o > p.high && o > off {
				later = append(later, o)
			}
		}
		if len(later) > 0 {
			done = append(done, later...)
			sortInt64(done)
		}
	}
	delivered := max(p.high, p.prevDelivered)
	meta = encodeMeta(off, delivered, done)
	return off, meta, off != p.committed || meta != p.committedMeta
}

func sortInt64(s []int64) {
	// Small slices, nearly sorted: insertion sort.
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// poll fetches records while there is room for them and queues them.
func (sn *subscription) poll() {
	defer sn.wg.Done()
	sn.warnIfMissing()
	for {
		n := sn.waitRoom()
		if n == 0 {
			return
		}
		fs := sn.cl.PollRecords(sn.ctx, n)
		if fs.IsClientClosed() || sn.ctx.Err() != nil {
			return
		}
		fs.EachError(sn.fetchError)
		recs := fs.Records()
		if len(recs) > 0 {
			sn.add(recs)
		}
	}
}

// waitRoom waits until the subscription may hold more records and returns
// how many, or 0 once it is closing.
func (sn *subscription) waitRoom() int {
	for {
		sn.mu.Lock()
		n := sn.opts.MaxInFlight - sn.inFlight
		sn.mu.Unlock()
		if n > 0 {
			return n
		}
		select {
		case <-sn.room:
		case <-sn.ctx.Done():
			return 0
		}
	}
}

// warnIfMissing logs when the topic does not exist: a consumer of a
// missing topic waits quietly for it otherwise.
func (sn *subscription) warnIfMissing() {
	ctx, cancel := context.WithTimeout(sn.ctx, 10*time.Second)
	defer cancel()
	if err := checkTopic(ctx, sn.cl, sn.topic); errors.Is(err, kerr.UnknownTopicOrPartition) {
		sn.log.Warn("kafka: the subscription's topic does not exist; waiting for it to be created")
	}
}

// fetchError handles an error the client could not retry itself.
func (sn *subscription) fetchError(topic string, partition int32, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return
	}
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) {
		sn.mu.Lock()
		if sn.err == nil {
			sn.err = fmt.Errorf("kafka: subscription to %q in group %q: %w: grant the client's principal READ on the topic and the group", topic, sn.group, err)
		}
		sn.mu.Unlock()
		signal(sn.ready)
		return
	}
	if errors.Is(err, kerr.InvalidSessionTimeout) {
		// The group cannot be joined at all: fail the subscription rather
		// than wait for ever for partitions that never come.
		sn.mu.Lock()
		if sn.err == nil {
			sn.err = fmt.Errorf("kafka: subscription to %q in group %q: %w: the broker does not accept SubscriberOptions.SessionTimeout; choose one within its group.min/max.session.timeout.ms", topic, sn.group, err)
		}
		sn.mu.Unlock()
		signal(sn.ready)
		return
	}
	sn.log.Warn("kafka: fetch failed", "partition", partition, "err", err)
}

// add queues fetched records, skipping those the commit says are done.
func (sn *subscription) add(recs []*kgo.Record) {
	// Decoding needs no lock.
	ds := make([]*transport.Delivery, len(recs))
	for i, r := range recs {
		ds[i] = transport.NewDelivery(decode(r), r.Partition, r.Offset, 0, nil)
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	queued := false
	for i, r := range recs {
		p := sn.parts[r.Partition]
		if p == nil || !p.owned || r.Offset <= p.high {
			continue // revoked meanwhile, or fetched twice
		}
		p.high = r.Offset
		p.epoch = r.LeaderEpoch
		if p.skip[r.Offset] {
			delete(p.skip, r.Offset)
			if len(p.pending) == 0 {
				p.next = r.Offset + 1
				signal(sn.dirty)
			} else {
				p.pending = append(p.pending, &entry{sn: sn, p: p, offset: r.Offset, acked: true})
			}
			continue
		}
		e := &entry{sn: sn, p: p, offset: r.Offset}
		if r.Offset <= p.prevDelivered {
			e.redelivered = 1 // handed out before the restart or rebalance
		}
		d := ds[i]
		e.d = transport.NewDelivery(d.Message, d.Partition, d.Offset, e.redelivered, e)
		p.pending = append(p.pending, e)
		sn.inFlight++
		e.queued = true
		sn.queue = append(sn.queue, e)
		queued = true
	}
	if queued {
		signal(sn.ready)
	}
}

// decode builds the message of a record. A record that did not come from
// ferry still makes a usable message: its topic and key are the record's,
// its time the record's timestamp, and its ID names its position
// (kafka:topic/partition/offset) so that consumers can deduplicate it.
func decode(r *kgo.Record) transport.Message {
	m := transport.Decode(CEPrefix, func(yield func(name, value string) bool) {
		for _, h := range r.Headers {
			if !yield(h.Key, string(h.Value)) {
				return
			}
		}
	})
	if m.ID == "" {
		m.ID = fmt.Sprintf("kafka:%s/%d/%d", r.Topic, r.Partition, r.Offset)
	}
	if m.Topic == "" {
		m.Topic = r.Topic
	}
	if m.Key == "" && len(r.Key) > 0 {
		m.Key = string(r.Key)
	}
	if m.OccurredAt.IsZero() {
		m.OccurredAt = r.Timestamp
	}
	m.Payload = r.Value
	return m
}

// assigned starts tracking newly assigned partitions.
func (sn *subscription) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for _, id := range m[sn.topic] {
		if p := sn.parts[id]; p != nil && p.owned {
			continue
		}
		sn.parts[id] = &partition{id: id, owned: true, next: -1, high: -1, prevDelivered: -1, committed: -1, epoch: -1}
	}
}

// offsetsFetched reads the committed offsets of newly assigned partitions
// and the metadata ferry commits with them.
func (sn *subscription) offsetsFetched(_ context.Context, _ *kgo.Client, resp *kmsgOffsetFetchResponse) error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	// One topic per subscription: every partition in the answer is ours.
	eachCommitted(resp, func(id int32, off int64, meta *string) {
		p := sn.parts[id]
		if p == nil || !p.owned || p.high >= 0 || off < 0 {
			return
		}
		p.committed = off
		if meta == nil {
			return
		}
		p.committedMeta = *meta
		delivered, done, ok := decodeMeta(off, *meta)
		if !ok {
			return
		}
		p.prevDelivered = delivered
		if len(done) > 0 {
			p.skip = make(map[int64]bool, len(done))
			for _, o := range done {
				p.skip[o] = true
			}
		}
	})
	return nil
}

// revoke stops tracking partitions that moved to another member or were
// lost, committing first what is done (commit false: the group no longer
// accepts this member's commits). Their records not acknowledged are
// dropped: the partitions' next owner delivers them again.
func (sn *subscription) revoke(ctx context.Context, ids []int32, commit bool) {
	sn.mu.Lock()
	var gone []*partition
	for _, id := range ids {
		p := sn.parts[id]
		if p == nil || !p.owned {
			continue
		}
		gone = append(gone, p)
	}
	sn.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if commit {
		ctx, cancel := context.WithTimeout(ctx, sn.opts.CloseTimeout)
		if err := sn.commit(ctx, gone); err != nil {
			sn.log.Warn("kafka: commit before giving partitions up failed; their records done since the last commit will be delivered again", "err", err)
		}
		cancel()
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for _, p := range gone {
		sn.drop(p)
	}
}

// drop forgets p. sn.mu is held.
func (sn *subscription) drop(p *partition) {
	if !p.owned {
		return
	}
	p.owned = false
	for _, e := range p.pending {
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
		if !e.acked && e.d != nil {
			sn.inFlight--
		}
	}
	p.pending = nil
	if sn.parts[p.id] == p {
		delete(sn.parts, p.id)
	}
	signal(sn.room)
}

// commitLoop commits soon after acknowledgements, at most once per
// CommitInterval.
func (sn *subscription) commitLoop() {
	defer sn.wg.Done()
	for {
		select {
		case <-sn.dirty:
		case <-sn.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(sn.ctx, sn.opts.CloseTimeout)
		err := sn.commit(ctx, nil)
		cancel()
		if err != nil && sn.ctx.Err() == nil {
			sn.log.Debug("kafka: commit failed; retrying", "err", err)
			signal(sn.dirty)
		}
		select {
		case <-time.After(sn.opts.CommitInterval):
		case <-sn.ctx.Done():
			return
		}
	}
}

// commit commits the offsets of parts (nil: every partition owned) that
// changed since their last commit.
func (sn *subscription) commit(ctx context.Context, parts []*partition) error {
	sn.commitMu.Lock()
	defer sn.commitMu.Unlock()

	type point struct {
		p     *partition
		off   int64
		epoch int32
		meta  string
	}
	var points []point
	sn.mu.Lock()
	if parts == nil {
		for _, p := range sn.parts {
			parts = append(parts, p)
		}
	}
	for _, p := range parts {
		if !p.owned {
			continue
		}
		if off, meta, changed := p.commitPoint(); changed {
			points = append(points, point{p, off, p.epoch, meta})
		}
	}
	sn.mu.Unlock()
	if len(points) == 0 {
		return nil
	}

	member, generation := sn.cl.GroupMetadata()
	if member == "" {
		return errors.New("not in the group (yet)")
	}
	if !sn.topicIDSet {
		id, err := topicID(ctx, sn.cl, sn.topic)
		if err != nil {
			return err
		}
		sn.topicID, sn.topicIDSet = id, true
	}
	offsets := make([]committedOffset, len(points))
	for i, pt := range points {
		offsets[i] = committedOffset{partition: pt.p.id, offset: pt.off, epoch: pt.epoch, meta: pt.meta}
	}
	failed, err := commitOffsets(ctx, sn.cl, sn.group, member, generation, sn.topic, sn.topicID, offsets)
	if err != nil {
		return err
	}
	sn.mu.Lock()
	for i, pt := range points {
		if failed[i] == nil {
			pt.p.committed, pt.p.committedMeta = pt.off, pt.meta
		}
	}
	sn.mu.Unlock()
	return errors.Join(failed...)
}

// Close commits what is done, leaves the group and stops. Records not
// acknowledged are not committed, so the group delivers them again.
func (sn *subscription) Close() error {
	sn.mu.Lock()
	if sn.closed {
		sn.mu.Unlock()
		return nil
	}
	sn.closed = true
	close(sn.done)
	sn.mu.Unlock()
	sn.cancel()
	sn.wg.Wait()
	defer sn.s.forget(sn)

	ctx, cancel := context.WithTimeout(context.Background(), sn.opts.CloseTimeout)
	defer cancel()
	err := sn.commit(ctx, nil)
	sn.mu.Lock()
	for _, p := range sn.parts {
		sn.drop(p)
	}
	sn.mu.Unlock()
	// Leave within the timeout, or Close would wait for an unreachable
	// cluster; the group then drops the member at its session timeout.
	sn.cl.LeaveGroupContext(ctx)
	sn.cl.Close()
	if err != nil {
		return fmt.Errorf("kafka: close subscription to %q: last commit: %w", sn.topic, err)
	}
	return nil
}
