// Package relay delivers outbox messages to their destinations: in order
// per key, in parallel across keys, with lanes that keep one class of
// traffic from delaying another, and with shards that let several relay
// instances share the work.
//
// # Lanes
//
// Every message belongs to a lane (ferry.Message.Lane). Each lane has its
// own fetcher, its own in-memory queue, its own workers (Concurrency), its
// own optional rate limit and its own retry rules. A backlog in one lane
// is invisible to another: they do not share a queue, so there is nothing
// to wait behind. What lanes do share is the database; the relay's reads
// and writes pass through a weighted fair gate, so when lanes compete for
// it each gets its Weight's share, and the gate keeps a slot free for
// every lane that has no query running: an idle lane's next query starts
// at once, however many the others have waiting.
//
// A relay that is told of a commit to a lane it does not serve (on
// PostgreSQL, whose notifications name the lane) logs a warning naming
// that lane once: its messages wait until some relay serves it.
//
// # Pools and priorities
//
// Lanes may share workers instead: the lanes that name one Pool (Lane.Pool)
// run at most the pool's Concurrency deliveries at once, all together,
// and each still at most its own Concurrency. When a worker of the pool
// is free and several of its lanes have messages ready, the lane with the
// lowest Priority gets it, strictly: a lane starts deliveries only while
// every lane of lower Priority has nothing ready or is at its own
// Concurrency. Lanes of equal Priority share the workers by Weight, as
// they share the database; a lane that was idle starts level with the
// others rather than with the credit of its idle time. This is how a job
// queue gets priorities within a queue (a lane per priority, one pool)
// and strict or weighted choice between queues.
//
// # Pausing a lane
//
// A person or a service can pause a lane in the database (ferry pause,
// ferry.Store.Pause): every relay serving it, in any process, starts no
// new deliveries of it within about a second, and starts again as soon as
// it notices the lane was resumed. Deliveries in flight finish; messages
// keep arriving and wait. The relay reads the paused lanes when it starts,
// before it delivers anything, and then every second; while the database
// does not answer, lanes keep the state last read. Pausing a lane pauses
// its sub-lanes too, the lanes named "lane/…" (a job queue's priority
// levels).
//
// # Per-key order and commit order
//
// Messages with the same key (within a lane) are delivered one at a time,
// each only after the one before it succeeded or, under the Skip policy,
// became FAILED. Messages without a key have no order and go fully in
// parallel.
//
// The order is the order in which the relay first sees messages, and a
// message becomes visible when its transaction commits. Within one fetch
// the relay orders by Seq, the outbox row id. Concretely:
//
//   - If transaction A commits before transaction B writes its message
//     (B "happens after" A, e.g. B read A's result, or both update the
//     same business row so the database serialized them), A's message has
//     the smaller id and is visible no later than B's, so A is delivered
//     first. This is the order an application can observe, and ferry
//     keeps it on every database.
//   - A transaction still open is invisible. If B commits while A is open,
//     the relay delivers B and then A when it commits: that is commit
//     order. A long-running open transaction does not hold back anything
//     but itself.
//   - If A and B overlap and both commit between two fetches, the relay
//     cannot tell which committed first and delivers them by id, that is,
//     in the order they inserted. On SQLite this case cannot arise (one
//     writer at a time, and ids are taken under the write lock). On
//     PostgreSQL and MariaDB ids come from a sequence or AUTO_INCREMENT at
//     INSERT time; two overlapping transactions that write the same key
//     without any lock between them have no order the application could
//     observe, and ferry picks insert order. A producer that needs one
//     (for example, "the later state of this order wins") must serialize
//     its writers of that key — which it normally already does by
//     updating the order's row with SELECT ... FOR UPDATE or UPDATE
//     before writing the message.
//
// The relay finds late commits without waiting on the oldest open
// transaction: a fetch reads past a cursor (the highest id it has seen),
// and a rescan pass every RescanInterval reads behind it for messages that
// became visible late. So a late message waits at most RescanInterval; a
// transaction left open for an hour delays only its own messages. A
// message can only commit late if a fetch once skipped its id, so while
// fetches skip ids (other lanes' messages, rolled back or open
// transactions) the relay also probes, as often as every 10ms, the ids
// above where the last pass began: a late message found there calls for a
// pass at once. The probes are cheap where a pass is not: a pass walks
// the lane's index from its first id, over the entries that delivered
// messages leave until the table is vacuumed. On PostgreSQL there is no
// need to look: each commit's notification names the lowest id it wrote
// to the lane, and a notice of an id the relay has passed without seeing
// it makes the relay read the ids from there up to its cursor at once,
// with the older WAITING messages of their keys, as a fresh fetch reads
// past the cursor. While such notices arrive the relay does not probe.
//
// Order survives failures. A failed delivery is retried with backoff and
// the key's later messages wait for it; they never overtake it. When the
// retry budget is spent the message becomes FAILED and, under the Hold
// policy (the default), the key's later messages stay WAITING until a
// person retries or excludes it (ferry retry, ferry exclude). Under Skip
// they go on. Either way, every other key keeps flowing.
//
// A message with a DeliverAt in the future is left in the database until
// due, then delivered as if written at that time: it does not hold back
// its key's other messages meanwhile. A retry does hold back its key.
//
// # Busy lanes
//
// On PostgreSQL a lane is woken by notifications, which cost producers
// something: PostgreSQL holds a server-wide lock from before each
// notifying transaction's commit record until it is flushed, so notifying
// producers commit one flush at a time. With Options.PollAbove set, when
// commits to a lane arrive faster than that per second, the relay
// announces in the database that relays poll the lane every 2ms; producers' commits to it
// then skip the notification, and every relay serving the lane, told by
// the announcement's own notification (or, failing that, within
// PollInterval), polls it. Late commits are no longer named either: a
// polled lane reads again behind its position from the ids its fetches
// skipped in the last 25ms, and probes for later ones. The relay renews
// the announcement while the messages keep coming and lets it lapse when
// they slow to about a quarter of PollAbove; relays poll 2s past its end,
// for producers that read it just before. A producer whose transaction
// commits later than that goes unnoticed until the lane's next poll
// (PollInterval) or notification: a delay, never a loss.
//
// The price is latency: a polled lane's deliveries wait for the next
// poll, and late commits are found by reading behind the position rather
// than named. In the flood benchmark at 500 commits/s, the idle p99 went
// from 1.3 to 3.6ms and the p99 during the flood from 22 to 29ms. What it
// buys: at 800 commits/s offered, notifying producers managed 644–692/s,
// polled ones all 800. Producers that commit freely can also commit more
// than the machine delivers (at 2,000/s offered, 1.1–1.3k/s committed
// and a backlog of seconds, against 649/s notified). So it is off by
// default, for producers whose commits are what limits them.
//
// # Shards and instances
//
// The key space is split into ferry.Shards shards (a hash of the key, or
// of the id for unkeyed messages). Relay instances lease shards in the
// database: each takes its fair share, renews its leases every third of
// LeaseTTL, and stops delivering a shard when its lease might have expired
// by its own clock, before the database lets another instance take it. So
// two instances never deliver the same key at once, and the shards of an
// instance that crashed move to the others within LeaseTTL. An instance
// that holds more than its share when another joins drains and releases
// the surplus. Times that decide who owns what come from the database's
// clock.
//
// # Delivery guarantees
//
// Delivery is at least once. A message is marked DONE after its
// destination accepted it; if the relay crashes in between, the next
// owner of the shard delivers it again. Every message carries a stable
// message id so that consumers can drop the duplicates. Nothing committed
// is lost: messages leave WAITING only by being delivered, by becoming
// FAILED with their error stored, or by a person excluding them.
package relay
