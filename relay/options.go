package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
)

// Options configure a Relay.
type Options struct {
	// Store holds the outbox. Required.
	Store ferry.Store
	// Lanes are the lanes this relay serves. At least one is required;
	// messages of other lanes are left for relays that serve them.
	Lanes []Lane
	// Pools are sets of delivery workers that lanes share (Lane.Pool).
	// A lane outside every pool has workers of its own.
	Pools []Pool
	// Routes map topics to destinations; the first route whose pattern
	// matches a message's topic wins. A message no route matches becomes
	// FAILED with an error naming its topic, so nothing is dropped
	// silently; fix the routes and retry it.
	Routes []Route
	// Node names this relay instance in the shard leases. Default: host
	// name, process id and a random suffix.
	Node string
	// LeaseTTL is how long a shard lease lasts without renewal; a crashed
	// relay's shards move to another instance after at most this long.
	// Default 10s. Leases are renewed every LeaseTTL/3.
	LeaseTTL time.Duration
	// PollInterval is how often each lane looks for new messages when
	// nothing wakes it. Default 1s with a store that notifies (PostgreSQL),
	// 50ms without.
	PollInterval time.Duration
	// PollAbove, if positive, is the rate of commits to a lane, per
	// second, above which the relay polls the lane every 2ms and has
	// producers skip the notification that wakes it (ferry.PollAnnouncer:
	// PostgreSQL, where every notifying commit holds a server-wide lock
	// until it is flushed, so notifying producers cannot share a flush of
	// the write-ahead log). Its producers then commit up to twice as fast;
	// its deliveries come a few milliseconds later (see the package
	// documentation). It goes back to notifications when the commits
	// slow to a quarter of the rate. Off (0) by default; a relay with it
	// off still polls a lane while another relay's announcement holds,
	// since that takes the notifications off for every relay.
	PollAbove float64
	// RescanInterval is how often a lane looks behind its position for
	// messages it could not see before: transactions that committed late,
	// retries that fell due, messages a person retried. Default 1s.
	RescanInterval time.Duration
	// Retention is how long DONE messages are kept before they are deleted
	// in small batches. Default 24h. Negative keeps no history: a message
	// is deleted as soon as it is delivered, which is also the cheapest
	// way to record a delivery.
	Retention time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight deliveries
	// after its context ends. Default 10s.
	ShutdownTimeout time.Duration
	// Logger receives the relay's logs. Default slog.Default().
	Logger *slog.Logger
	// Observer, if set, is told about each delivery, for metrics and
	// benchmarks.
	Observer Observer
}

// Pool is a set of delivery workers shared by the lanes that name it.
// Lanes of one pool compete for its workers by priority, and by weight
// among equal priorities: a job queue's priorities, or strict and
// weighted choice between queues, are lanes of one pool. Lanes outside a
// pool never compete for workers; they only share the database.
type Pool struct {
	// Name is what Lane.Pool refers to.
	Name string
	// Concurrency is how many deliveries of the pool's lanes, all lanes
	// together, run at once. At least 1.
	Concurrency int
}

// Lane configures one lane: its share of the relay and its failure rules.
type Lane struct {
	Name string
	// Weight is the lane's share of the database work the relay does when
	// lanes compete for it, and, in a pool, its share of the pool's
	// workers among lanes of equal Priority that have messages ready.
	// Default 1.
	Weight int
	// Concurrency is how many deliveries of this lane run at once.
	// Default 16, or in a pool the pool's Concurrency.
	Concurrency int
	// Pool names the Pool whose workers the lane shares with the pool's
	// other lanes; empty gives the lane workers of its own. A pooled
	// lane's deliveries count against both its own Concurrency and the
	// pool's. A delivery holds its worker while it waits for the lane's
	// Rate, so give a rate-limited lane a Concurrency below the pool's.
	Pool string
	// Priority orders the lanes of a pool: a free worker goes to the lane
	// with the lowest Priority among those with messages ready, so a lane
	// gets workers only while every lane of lower Priority has nothing
	// ready (or has reached its own Concurrency). Default 0; negative
	// values go ahead of the default. It must be 0 on a lane without a
	// Pool, which competes with no one.
	Priority int
	// Rate limits deliveries per second (token bucket with Burst); 0 means
	// no limit.
	Rate  float64
	Burst int
	// BatchSize is how many messages one fetch reads. Default 500.
	BatchSize int
	// Timeout bounds one delivery attempt. Default 30s.
	Timeout time.Duration
	// MaxAttempts is the retry budget: after this many failed attempts a
	// message becomes FAILED. Default 10.
	MaxAttempts int
	// Backoff spaces out retries. Default: 1s doubling to 5m, with jitter.
	Backoff Backoff
	// RetryDelay, if set, replaces Backoff (and a ferry.RetryLater's
	// wait): it returns how long a message that failed with err waits
	// before its next attempt; r.Attempts counts the failures, this one
	// included. For destinations with retry policies of their own, such as
	// the job queue's per-kind policies.
	RetryDelay func(r *ferry.Record, err error) time.Duration
	// OnFailed says what happens to the later messages of a key whose
	// message became FAILED. Default Hold.
	OnFailed FailedPolicy
}

// FailedPolicy is what a lane does with the later messages of a key once
// one of its messages is FAILED.
type FailedPolicy string

const (
	// Hold keeps the key's later messages WAITING until a person retries
	// or excludes the FAILED one: order is never broken.
	Hold FailedPolicy = "hold"
	// Skip delivers the key's later messages as if the FAILED one were not
	// there: the key keeps flowing, the FAILED message is out of order if
	// it is retried later.
	Skip FailedPolicy = "skip"
)

// Backoff is exponential backoff with full jitter: attempt n waits a
// random time in [d/2, d] where d = Initial * 2^(n-1), capped at Max.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// Route sends messages whose topic matches Topic to Destination.
type Route struct {
	// Topic is a pattern in path.Match syntax: "orders", "orders.*", "*".
	Topic       string
	Destination ferry.Destination
}

// Observer is told about deliveries. Its methods must be fast and safe for
// concurrent use.
type Observer interface {
	// Delivered is called after each delivery attempt with its error (nil
	// on success).
	Delivered(lane string, r *ferry.Record, err error)
}

// withDefaults returns o with defaults filled in, or an error naming every
// problem.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("relay: Options.Store is required"))
	}
	if len(o.Lanes) == 0 {
		errs = append(errs, errors.New("relay: at least one lane is required"))
	}
	pools := map[string]Pool{}
	var poolNames []string
	for i, p := range o.Pools {
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("relay: pool %d has no name", i))
		case pools[p.Name].Name != "":
			errs = append(errs, fmt.Errorf("relay: pool %q is configured twice", p.Name))
		default:
			pools[p.Name] = p
			poolNames = append(poolNames, p.Name)
		}
		if p.Concurrency < 1 {
			errs = append(errs, fmt.Errorf("relay: pool %q: concurrency %d must be at least 1", p.Name, p.Concurrency))
		}
	}
	seen := map[string]bool{}
	lanes := make([]Lane, len(o.Lanes))
	for i, l := range o.Lanes {
		if l.Name == "" {
			errs = append(errs, fmt.Errorf("relay: lane %d has no name", i))
		}
		if seen[l.Name] {
			errs = append(errs, fmt.Errorf("relay: lane %q is configured twice", l.Name))
		}
		seen[l.Name] = true
		switch p, ok := pools[l.Pool]; {
		case l.Pool == "" && l.Priority != 0:
			// A priority without a pool would silently do nothing: the
			// lane has workers of its own and competes with no one, which
			// is surely not what whoever set it expected.
			errs = append(errs, fmt.Errorf("relay: lane %q: priority %d has no effect without a pool; set the lane's Pool to the pool whose workers it shares, or leave Priority 0", l.Name, l.Priority))
		case l.Pool != "" && !ok:
			errs = append(errs, fmt.Errorf("relay: lane %q: pool %q is not configured (pools: %s); add it to Options.Pools or fix the name", l.Name, l.Pool, names(poolNames)))
		case l.Pool != "" && l.Concurrency == 0:
			l.Concurrency = max(p.Concurrency, 1)
		}
		l, err := l.withDefaults()
		errs = append(errs, err)
		lanes[i] = l
	}
	o.Lanes = lanes
	for i, r := range o.Routes {
		if _, err := path.Match(r.Topic, ""); err != nil || r.Topic == "" {
			errs = append(errs, fmt.Errorf("relay: route %d: topic pattern %q is not valid (use a name, or * and ? wildcards)", i, r.Topic))
		}
		if r.Destination == nil {
			errs = append(errs, fmt.Errorf("relay: route %d (%s) has no destination", i, r.Topic))
		}
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.LeaseTTL < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("relay: LeaseTTL %v is too short; use at least 300ms", o.LeaseTTL))
	}
	if o.PollInterval == 0 {
		o.PollInterval = 50 * time.Millisecond
		if _, ok := o.Store.(ferry.Notifier); ok {
			o.PollInterval = time.Second
		}
	}
	if o.RescanInterval == 0 {
		o.RescanInterval = time.Second
	}
	if o.Retention == 0 {
		o.Retention = 24 * time.Hour
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, errors.Join(errs...)
}

// names lists names for an error message.
func names(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

func (l Lane) withDefaults() (Lane, error) {
	var errs []error
	if l.Weight == 0 {
		l.Weight = 1
	}
	if l.Concurrency == 0 {
		l.Concurrency = 16
	}
	if l.BatchSize == 0 {
		l.BatchSize = 500
	}
	if l.Timeout == 0 {
		l.Timeout = 30 * time.Second
	}
	if l.MaxAttempts == 0 {
		l.MaxAttempts = 10
	}
	if l.Backoff.Initial == 0 {
		l.Backoff.Initial = time.Second
	}
	if l.Backoff.Max == 0 {
		l.Backoff.Max = 5 * time.Minute
	}
	if l.OnFailed == "" {
		l.OnFailed = Hold
	}
	if l.Burst == 0 && l.Rate > 0 {
		l.Burst = max(1, int(l.Rate/10))
	}
	for _, c := range []struct {
		bad  bool
		what string
	}{
		{l.Weight < 0, "weight must be positive"},
		{l.Concurrency < 0, "concurrency must be positive"},
		{l.BatchSize < 0, "batch size must be positive"},
		{l.Rate < 0, "rate must not be negative"},
		{l.MaxAttempts < 0, "max attempts must be positive"},
		{l.Backoff.Max < l.Backoff.Initial, "backoff max must not be below backoff initial"},
		{l.OnFailed != Hold && l.OnFailed != Skip, fmt.Sprintf("on_failed %q is not hold or skip", l.OnFailed)},
	} {
		if c.bad {
			errs = append(errs, fmt.Errorf("relay: lane %q: %s", l.Name, c.what))
		}
	}
	return l, errors.Join(errs...)
}
