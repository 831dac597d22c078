package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

// Order is how a consumer orders the messages it handles in parallel.
type Order int

const (
	// KeyOrder handles the messages of one key strictly one after another,
	// in the order the broker delivered them, and different keys in
	// parallel: as parallel as the keys allow, whatever the number of
	// partitions. Messages without a key are each their own key. The
	// default.
	KeyOrder Order = iota
	// PartitionOrder handles the messages of one partition one after
	// another: the classic consumer, one goroutine per partition.
	PartitionOrder
	// Unordered handles messages in parallel with no order at all.
	Unordered
)

// String returns "key", "partition" or "unordered".
func (o Order) String() string {
	switch o {
	case PartitionOrder:
		return "partition"
	case Unordered:
		return "unordered"
	}
	return "key"
}

// ParseOrder parses "key", "partition" or "unordered".
func ParseOrder(s string) (Order, error) {
	switch s {
	case "", "key":
		return KeyOrder, nil
	case "partition":
		return PartitionOrder, nil
	case "unordered":
		return Unordered, nil
	}
	return 0, fmt.Errorf("consume: unknown order %q: use key, partition or unordered", s)
}

// ShutdownMode is how Run stops when its context ends.
type ShutdownMode int

const (
	// Drain stops reading, lets every message already received finish
	// (retries included, within the shutdown timeout) and acknowledges
	// them. The default.
	Drain ShutdownMode = iota
	// Immediate stops reading and cancels the handlers in progress; what
	// completed is acknowledged, the rest is given back to the broker.
	Immediate
)

// DeadLetterer takes the messages a consumer gives up on: after the retry
// budget, or at once for a permanent error. A nil error means the message
// is safe there, and the consumer acknowledges it; an error makes the
// consumer give the message back to the broker to try again later.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, m *Message, reason error) error
}

// Options configure a Consumer.
type Options struct {
	// Name names the consumer: it is the subscriptions' group (each
	// message goes to one instance of a consumer, and to every consumer),
	// and it scopes commands and dead letters. Required.
	Name string
	// Subscriber reads from the broker. Required.
	Subscriber transport.Subscriber
	// Handler handles each message, usually a *Router. Required.
	Handler Handler
	// Topics are the sources to read. Default: the Router's topics.
	Topics []string
	// Order is how messages are ordered while handled in parallel.
	// Default KeyOrder.
	Order Order
	// Concurrency is how many messages are handled at once. Default 64.
	// (PartitionOrder handles one message per partition at a time
	// whatever this says.)
	Concurrency int
	// MaxPerPartition, if positive, bounds the messages of one partition
	// handled at once, so that a hot partition cannot take every handler:
	// the goroutines per partition. Default: no bound beyond Concurrency.
	MaxPerPartition int
	// MaxInFlight bounds the messages received and not yet acknowledged,
	// waiting ones included: the consumer stops reading at the bound.
	// Default 16 × Concurrency.
	MaxInFlight int
	// MaxAttempts is how many times a message is tried before it goes to
	// the dead letters. Default 5.
	MaxAttempts int
	// Backoff spaces out the retries: attempt n waits a random time in
	// [d/2, d], d = InitialBackoff × 2^(n-1), capped at MaxBackoff.
	// Defaults 100ms and 30s.
	InitialBackoff, MaxBackoff time.Duration
	// DeadLetter takes the messages given up on. Nil: a message given up
	// on is logged and given back to the broker after MaxBackoff, so it is
	// never lost, but it comes again and again.
	DeadLetter DeadLetterer
	// Shutdown is Drain (default) or Immediate; ShutdownTimeout bounds it
	// (default 30s), after which handlers are cancelled.
	Shutdown        ShutdownMode
	ShutdownTimeout time.Duration
	// Logger receives the consumer's logs. Default slog.Default().
	Logger *slog.Logger
}

// Consumer reads messages from a broker and handles them in parallel in
// the chosen order, with retries and dead letters, acknowledging each
// message once its handler succeeded (or it is safe in the dead letters).
//
// Acknowledgements happen out of order; the transport turns them into
// the broker's terms (Kafka commits only the contiguous offsets, and keeps
// those acknowledged above them in the commit metadata, so a restart
// handles again only what was not finished).
type Consumer struct {
	opts Options
	log  *slog.Logger
}

// New checks opts and returns a consumer.
func New(opts Options) (*Consumer, error) {
	if opts.Name == "" || opts.Subscriber == nil || opts.Handler == nil {
		return nil, errors.New("consume: Options need a Name, a Subscriber and a Handler")
	}
	if len(opts.Topics) == 0 {
		if r, ok := opts.Handler.(*Router); ok {
			opts.Topics = r.Topics()
		}
		if len(opts.Topics) == 0 {
			return nil, errors.New("consume: no topics to read: register handlers on the Router, or set Options.Topics")
		}
	}
	setDefault(&opts.Concurrency, 64)
	setDefault(&opts.MaxInFlight, 16*opts.Concurrency)
	setDefault(&opts.MaxAttempts, 5)
	setDefault(&opts.InitialBackoff, 100*time.Millisecond)
	setDefault(&opts.MaxBackoff, 30*time.Second)
	setDefault(&opts.ShutdownTimeout, 30*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Concurrency < 0 || opts.MaxInFlight < opts.Concurrency || opts.MaxAttempts < 0 {
		return nil, fmt.Errorf("consume: Concurrency %d, MaxInFlight %d, MaxAttempts %d: want positive values and MaxInFlight at least Concurrency",
			opts.Concurrency, opts.MaxInFlight, opts.MaxAttempts)
	}
	return &Consumer{opts: opts, log: opts.Logger.With("consumer", opts.Name)}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Run reads and handles messages until ctx ends, then shuts down as
// Options.Shutdown says. It returns nil after a clean shutdown, or the
// error that stopped it.
func (c *Consumer) Run(ctx context.Context) error {
	// handling outlives ctx in a drain; it is cancelled at the shutdown
	// timeout, or at once in an immediate shutdown.
	handling, cancelHandling := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandling()
	s := &scheduler{
		c:        c,
		ctx:      handling,
		slots:    make(chan struct{}, c.opts.MaxInFlight),
		ready:    make(chan *job, c.opts.MaxInFlight),
		waiting:  map[string][]*job{},
		running:  map[string]int{},
		parked:   map[string][]*job{},
		finished: make(chan struct{}),
	}

	var subs []transport.Subscription
	defer func() {
		for _, sn := range subs {
			if err := sn.Close(); err != nil {
				c.log.Warn("consume: close subscription", "err", err)
			}
		}
	}()
	for _, topic := range c.opts.Topics {
		sn, err := c.opts.Subscriber.Subscribe(ctx, topic, c.opts.Name)
		if err != nil {
			return fmt.Errorf("consume: %s: subscribe to %q: %w", c.opts.Name, topic, err)
		}
		subs = append(subs, sn)
	}

	var workers sync.WaitGroup
	for range c.opts.Concurrency {
		workers.Go(s.work)
	}
	reading, stopRead := context.WithCancel(ctx)
	defer stopRead()
	readErr := make(chan error, len(subs))
	var readers sync.WaitGroup
	for i, sn := range subs {
		topic := c.opts.Topics[i]
		readers.Go(func() {
			if err := s.read(reading, sn, topic); err != nil {
				readErr <- err
			}
		})
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-readErr:
	}
	// Stop reading first: what is not received stays with the broker.
	stopRead()
	stopReading := make(chan struct{})
	go func() { readers.Wait(); close(stopReading) }()
	if err != nil {
		cancelHandling()
	}
	if c.opts.Shutdown == Immediate {
		cancelHandling()
	}
	timeout := time.NewTimer(c.opts.ShutdownTimeout)
	defer timeout.Stop()
	select {
	case <-stopReading:
	case <-timeout.C:
		cancelHandling()
		<-stopReading
	}
	s.close()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-timeout.C:
		c.log.Warn("consume: shutdown timeout: cancelling the handlers still running", "timeout", c.opts.ShutdownTimeout)
		cancelHandling()
		<-done
	}
	return err
}

// job is a received message on its way through the consumer.
type job struct {
	d   *transport.Delivery
	msg Message
	key string // the ordering key; "" for none
}

// scheduler hands jobs to workers, one at a time per ordering key.
type scheduler struct {
	c     *Consumer
	ctx   context.Context // the handlers' context
	slots chan struct{}   // one per message in flight: MaxInFlight
	ready chan *job       // jobs whose key is free, for the workers

	mu       sync.Mutex
	waiting  map[string][]*job // per busy key, the jobs behind the one in progress
	running  map[string]int    // per partition, the jobs handed to workers (MaxPerPartition)
	parked   map[string][]*job // per partition at its bound, the jobs whose key is free
	closing  bool
	pending  int // jobs received and not finished
	finished chan struct{}
}

// read receives deliveries from sn until ctx ends.
func (s *scheduler) read(ctx context.Context, sn transport.Subscription, source string) error {
	for {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		d, err := sn.Next(ctx)
		if err != nil {
			<-s.slots
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("consume: %s: read %q: %w", s.c.opts.Name, source, err)
		}
		j := &job{d: d, msg: Message{Message: d.Message, Source: source, Consumer: s.c.opts.Name, Partition: d.Partition, Offset: d.Offset, Redelivered: d.Redelivered}}
		j.key = s.keyOf(j)
		s.submit(j)
	}
}

func (s *scheduler) keyOf(j *job) string {
	switch s.c.opts.Order {
	case PartitionOrder:
		return fmt.Sprintf("%s\x00%d", j.msg.Source, j.msg.Partition)
	case KeyOrder:
		if j.msg.Key != "" {
			return j.msg.Source + "\x00" + j.msg.Key
		}
	}
	return ""
}

// submit queues j behind its key's job in progress, or hands it to the
// workers.
func (s *scheduler) submit(j *job) {
	s.mu.Lock()
	s.pending++
	if j.key != "" {
		if q, busy := s.waiting[j.key]; busy {
			s.waiting[j.key] = append(q, j)
			s.mu.Unlock()
			return
		}
		s.waiting[j.key] = nil
	}
	j = s.admit(j)
	s.mu.Unlock()
	if j != nil {
		s.ready <- j // never blocks: ready holds MaxInFlight
	}
}

// partitionOf names j's partition for MaxPerPartition.
func partitionOf(j *job) string {
	return j.msg.Source + "\x00" + strconv.Itoa(int(j.msg.Partition))
}

// admit returns j if its partition may have one more job handled, or
// parks it and returns nil. Callers hold mu.
func (s *scheduler) admit(j *job) *job {
	limit := s.c.opts.MaxPerPartition
	if limit <= 0 {
		return j
	}
	p := partitionOf(j)
	if s.running[p] >= limit {
		s.parked[p] = append(s.parked[p], j)
		return nil
	}
	s.running[p]++
	return j
}

// done releases j's key to the next job of the key.
func (s *scheduler) done(j *job) {
	s.mu.Lock()
	var ready []*job
	if s.c.opts.MaxPerPartition > 0 {
		p := partitionOf(j)
		s.running[p]--
		if q := s.parked[p]; len(q) > 0 {
			s.running[p]++
			ready, s.parked[p] = append(ready, q[0]), q[1:]
		}
		if s.running[p] == 0 && len(s.parked[p]) == 0 {
			delete(s.running, p)
			delete(s.parked, p)
		}
	}
	if j.key != "" {
		if q := s.waiting[j.key]; len(q) > 0 {
			var next *job
			next, s.waiting[j.key] = q[0], q[1:]
			if next = s.admit(next); next != nil {
				ready = append(ready, next)
			}
		} else {
			delete(s.waiting, j.key)
		}
	}
	s.pending--
	last := s.closing && s.pending == 0
	s.mu.Unlock()
	<-s.slots
	for _, r := range ready {
		s.ready <- r
	}
	if last {
		close(s.ready)
	}
}

// close lets the workers stop once the jobs received are finished.
func (s *scheduler) close() {
	s.mu.Lock()
	s.closing = true
	last := s.pending == 0
	s.mu.Unlock()
	if last {
		close(s.ready)
	}
}

// work handles jobs until the scheduler closes.
func (s *scheduler) work() {
	for j := range s.ready {
		s.handle(j)
		s.done(j)
	}
}

// handle runs j's handler with retries, then settles j with the broker.
func (s *scheduler) handle(j *job) {
	c := s.c
	ctx := s.ctx
	var err error
	for attempt := 1; ; attempt++ {
		j.msg.Attempt = attempt
		err = c.call(ctx, &j.msg)
		if err == nil || ctx.Err() != nil || IsPermanent(err) || attempt >= c.opts.MaxAttempts {
			break
		}
		c.log.Debug("consume: handler failed; retrying", "id", j.msg.ID, "source", j.msg.Source, "attempt", attempt, "err", err)
		if !sleep(ctx, backoff(c.opts.InitialBackoff, c.opts.MaxBackoff, attempt)) {
			break
		}
	}
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	switch {
	case err == nil:
		if aerr := j.d.Ack(settle); aerr != nil {
			c.log.Warn("consume: acknowledge", "id", j.msg.ID, "err", aerr)
		}
	case ctx.Err() != nil:
		// Shutting down: give it back to be handled again.
		if nerr := j.d.Nack(settle, 0); nerr != nil {
			c.log.Debug("consume: give back at shutdown", "id", j.msg.ID, "err", nerr)
		}
	default:
		s.giveUp(settle, j, err)
	}
}

// giveUp sends j to the dead letters and acknowledges it, or gives it back
// to the broker if that is not possible.
func (s *scheduler) giveUp(ctx context.Context, j *job, reason error) {
	c := s.c
	if c.opts.DeadLetter != nil {
		err := c.opts.DeadLetter.DeadLetter(ctx, &j.msg, reason)
		if err == nil {
			c.log.Warn("consume: message sent to the dead letters", "id", j.msg.ID, "source", j.msg.Source, "type", j.msg.Type, "attempts", j.msg.Attempt, "reason", reason)
			if aerr := j.d.Ack(ctx); aerr != nil {
				c.log.Warn("consume: acknowledge", "id", j.msg.ID, "err", aerr)
			}
			return
		}
		c.log.Error("consume: dead letters refused a message; giving it back to the broker", "id", j.msg.ID, "err", err, "reason", reason)
	} else {
		c.log.Error("consume: giving up on a message, and there are no dead letters: giving it back to the broker", "id", j.msg.ID, "source", j.msg.Source, "attempts", j.msg.Attempt, "reason", reason)
	}
	if err := j.d.Nack(ctx, c.opts.MaxBackoff); err != nil {
		c.log.Warn("consume: give back", "id", j.msg.ID, "err", err)
	}
}

// call runs the handler, turning a panic into an error so that one bad
// message cannot bring the consumer down.
func (c *Consumer) call(ctx context.Context, m *Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("consume: handler panicked on message %s: %v", m.ID, p)
		}
	}()
	return c.opts.Handler.Handle(ctx, m)
}

// backoff returns the wait before retry n (from 1): full jitter in
// [d/2, d], d = initial × 2^(n-1), capped at max.
func backoff(initial, max time.Duration, n int) time.Duration {
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
