package ferry

import (
	"context"
	"database/sql"
	"time"
)

// Store is the durable side of ferry: the outbox table and the shard
// leases, in one database. Each database has its own implementation
// (store/sqlite, store/postgres, store/mysql), and all of them pass the
// conformance suite in store/storetest. Applications pick one and hand it
// to NewOutbox and relay.New; they rarely call its methods directly.
//
// Times passed in are the caller's clock only where a method says so;
// leases and "now" comparisons use the database's clock, so that relay
// instances on different hosts agree.
type Store interface {
	// Dialect names the database: "sqlite", "postgres" or "mysql".
	Dialect() string
	// Migrate creates or upgrades the schema. It is idempotent and safe to
	// run from several processes at once.
	Migrate(ctx context.Context) error

	// Write inserts msgs using the caller's transaction, so they exist if
	// and only if it commits. The messages have been normalized by the
	// Outbox: ids, lanes and DeliverAt are set. A message whose ID is
	// already stored is skipped.
	Write(ctx context.Context, tx *sql.Tx, msgs []Message) error

	// Fetch returns WAITING messages of one lane in Seq order.
	Fetch(ctx context.Context, q FetchQuery) ([]Record, error)
	// Complete records the outcome of delivery attempts. Outcomes for
	// messages that are no longer WAITING (a person excluded one while it
	// was in flight) are ignored.
	Complete(ctx context.Context, outcomes []Outcome) error
	// WaitingKeys returns the Seq and key of the WAITING messages of lane
	// whose key is one of keys and whose Seq is at most upToSeq, in Seq
	// order, at most limit of them, leaving out delayed messages as
	// FetchQuery.SkipDelayed does. Before it delivers a message it has
	// just read, the relay uses it to make sure that no earlier message of
	// the same key, committed late, escaped its reads.
	WaitingKeys(ctx context.Context, lane string, keys []string, upToSeq int64, limit int) ([]KeySeq, error)
	// HeldKeys returns the keys of a lane that have a FAILED message: under
	// the hold policy their later messages wait until a person acts.
	HeldKeys(ctx context.Context, lane string) ([]string, error)

	// Lease renews node's shard leases for ttl, takes free or expired
	// shards up to its fair share (Shards divided by the live nodes), and
	// reports what node holds. It never takes a shard another live node
	// holds; a node that holds more than its share should drain and
	// Release the surplus.
	Lease(ctx context.Context, node string, ttl time.Duration) (Lease, error)
	// Release gives up node's leases on shards (all of them if shards is
	// nil) and, if all, forgets the node.
	Release(ctx context.Context, node string, shards []int) error

	// Cleanup deletes up to limit DONE messages processed before cutoff
	// (the caller's clock) and returns how many it deleted.
	Cleanup(ctx context.Context, cutoff time.Time, limit int) (int, error)

	// Stats summarizes each lane that has messages or is paused, in lane
	// order.
	Stats(ctx context.Context) ([]LaneStats, error)
	// List returns messages matching f, in Seq order.
	List(ctx context.Context, f Filter) ([]Record, error)
	// Retry moves FAILED messages matching f back to WAITING, due now, with
	// a fresh retry budget, and returns how many it moved.
	Retry(ctx context.Context, f Filter) (int, error)
	// Exclude moves FAILED (or, if f.Status says so, WAITING) messages
	// matching f to EXCLUDED and returns how many it moved.
	Exclude(ctx context.Context, f Filter) (int, error)

	// Pause pauses lane: the relays serving it, in any process, start no
	// new deliveries of it once they notice (within about a second);
	// deliveries in flight finish, and new messages are still accepted
	// and kept WAITING. It is stored in the database so that an operator
	// or another service can pause a lane the relays serve, for example
	// while its destination is being repaired. Pausing a paused lane, or
	// one that has no messages, is not an error.
	Pause(ctx context.Context, lane string) error
	// Resume undoes Pause: the relays start delivering the lane again as
	// soon as they notice. Resuming a lane that is not paused is not an
	// error.
	Resume(ctx context.Context, lane string) error
	// Paused returns the paused lanes, in lane order.
	Paused(ctx context.Context) ([]string, error)

	// Close releases the store's connections.
	Close() error
}

// Notifier is implemented by stores that can wake a relay as soon as
// messages are committed (PostgreSQL LISTEN/NOTIFY), so the relay needs no
// short polling interval.
type Notifier interface {
	// Listen calls wake with a lane name each time messages of that lane
	// are committed, until ctx is done. It returns when ctx is done or the
	// listening connection fails; the caller listens again after a pause.
	//
	// seq, if above 0, is the lowest Seq among the messages the commit
	// wrote to the lane: a relay that has already read past it learns
	// that the commit came late, and reads behind its position at once.
	// A negative seq is not a commit but an announcement that relays poll
	// the lane (PollAnnouncer.AnnouncePolling with tell).
	Listen(ctx context.Context, wake func(lane string, seq int64)) error
}

// PollAnnouncer is implemented by stores whose commit notifications cost
// producers something: PostgreSQL serializes the commits of every
// transaction that notifies, across the server, so concurrent producers
// cannot share a flush of the write-ahead log. When commits to a lane
// come so fast that reading it every few milliseconds finds them as soon
// as a notification would, relays announce that they do, and producers'
// commits to the lane skip the notification while the announcement
// holds.
type PollAnnouncer interface {
	// AnnouncePolling says that relays read lane at least every few
	// milliseconds for the next d: until then, commits to the lane do not
	// notify. It never shortens an earlier announcement, and returns how
	// long the lane's announcement now holds. With tell, the listening
	// relays hear of it (Notifier.Listen, seq -1), so that they poll the
	// lane too.
	AnnouncePolling(ctx context.Context, lane string, d time.Duration, tell bool) (time.Duration, error)
	// Polled returns how long the lane's announcement still holds; 0 if
	// it has lapsed or there is none.
	Polled(ctx context.Context, lane string) (time.Duration, error)
}

// OlderFetcher is implemented by stores that can read a relay's fresh
// messages and the older WAITING messages of their keys in one statement:
// one round trip where Fetch and WaitingKeys take two, and one snapshot.
// Under load every round trip waits for a CPU on the database server, so
// this is what keeps a quiet lane quick while another floods.
type OlderFetcher interface {
	// FetchWithOlder returns Fetch(q) and, for each key among the
	// messages it returns, the WAITING messages of that key with Seq at
	// most q.AfterSeq that WaitingKeys would return: the lowest perKey
	// of each key, as (key, Seq) pairs. A wrapper of a store that cannot
	// returns an error wrapping errors.ErrUnsupported.
	FetchWithOlder(ctx context.Context, q FetchQuery, perKey int) ([]Record, []KeySeq, error)
}

// FetchQuery selects WAITING messages of one lane.
type FetchQuery struct {
	Lane string
	// Shards limits the result to these shards; nil means all.
	Shards []int
	// AfterSeq and UpToSeq bound Seq: AfterSeq < Seq <= UpToSeq. UpToSeq 0
	// means no upper bound.
	AfterSeq int64
	UpToSeq  int64
	// SkipDelayed leaves out messages that are not yet due (AvailableAt
	// after the database's now) and have never failed: delayed messages.
	// Messages waiting for a retry are returned all the same, because
	// they hold back the later messages of their key.
	SkipDelayed bool
	// SkipKeys leaves out messages with these keys.
	SkipKeys []string
	// Limit is the most rows returned; it must be positive.
	Limit int
}

// KeySeq names a message by key and Seq.
type KeySeq struct {
	Key string
	Seq int64
}

// Outcome is the result of one delivery attempt.
type Outcome struct {
	Seq int64
	// Status is DONE (delivered), WAITING (retry at AvailableAt) or FAILED
	// (retry budget spent, or a permanent error).
	Status      Status
	Attempts    int       // the message's new fail count
	AvailableAt time.Time // when to retry; for WAITING only
	Error       string    // the delivery error; empty for DONE
	// Delete, for DONE, deletes the message instead of keeping it DONE:
	// for relays that keep no history, it is the cheapest outcome to
	// record.
	Delete bool
}

// Lease is what a node holds after Store.Lease.
type Lease struct {
	Shards []int // the shards the node holds, ascending
	Fair   int   // its fair share: ceil(Shards / Nodes)
	Nodes  int   // live nodes, itself included
}

// LaneStats summarizes one lane. It counts what is pending and what
// happened lately, not the history: the DONE messages kept for the
// retention period can be most of the table, and counting them would make
// every look at a busy outbox read all of it.
type LaneStats struct {
	Lane       string
	Waiting    int       // WAITING messages, due or not
	Failed     int       // FAILED messages
	OldestDue  time.Time // AvailableAt of the oldest due WAITING message; zero if none
	LastMinute int       // messages that became DONE in the last minute
	Paused     bool      // paused with Store.Pause: relays start no deliveries of it
	// Polled is set while relays announce that they poll the lane, its
	// commits coming fast (PollAnnouncer): producers skip notifying it.
	Polled bool
}

// Filter selects messages for List, Retry and Exclude. Zero fields match
// everything.
type Filter struct {
	Seqs   []int64
	IDs    []string // message ids
	Lane   string
	Topic  string
	Key    string
	Status Status // List: any if empty; Retry: FAILED; Exclude: FAILED if empty
	Limit  int    // List only; 0 means 100
	// AfterSeq pages through List results.
	AfterSeq int64
}
