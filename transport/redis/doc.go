// Package redis publishes ferry's messages to Redis and reads them back,
// in one of two modes that PublisherOptions.Mode and SubscriberOptions.Mode
// choose explicitly, because they promise very different things:
//
//   - Streams (the default) is durable and at least once. Publish appends
//     an entry to a stream (XADD); subscriptions read through consumer
//     groups (XREADGROUP), acknowledge with XACK, and entries that a dead
//     consumer held are claimed by the others (XAUTOCLAIM).
//   - PubSub is lossy by design. Publish sends the message to the
//     subscribers connected at that moment (PUBLISH) and Redis forgets
//     it: a subscriber that is away, reconnecting or too slow misses it,
//     and there are no groups. Use it only where losing a message is
//     acceptable (cache invalidation, live updates).
//
// Publisher and Subscriber implement transport.Publisher and
// transport.Subscriber; Publisher also implements transport.Checker. Both
// connect lazily and reconnect with backoff, so they can be made while
// Redis is down. Concurrent Publish calls are sent in pipelines, a few
// connections (PublisherOptions.Pipelines) each carrying up to MaxBatch
// commands per round trip.
//
// # Stream entries
//
// A message is one stream entry with these fields, which producers and
// consumers in other languages can read and write with any Redis client:
//
//	field                 value
//	payload               the payload, byte for byte (always present, maybe empty)
//	ferry-id              the message id (message_id), for deduplication
//	ferry-topic           the topic (omitted when empty)
//	ferry-key             the key (omitted when empty)
//	ferry-type            the type (omitted when empty)
//	ferry-occurred-at     when it happened, RFC 3339 with nanoseconds, UTC
//	h:<name>              the message's own header <name>, e.g. h:traceparent
//
// With transport.FormatCloudEvents the ferry-* fields are replaced by the
// CloudEvents attributes ce-specversion, ce-id, ce-source, ce-type,
// ce-time, ce-subject (the topic) and ce-partitionkey (the key), with the
// prefix "ce-" of the HTTP and NATS bindings (Redis has none of its own).
// The h: prefix keeps the message's headers apart from the payload and the
// fields: a header may be called "payload" or "ce-id". When reading, a
// field that follows none of these names (an entry another program added)
// becomes a header under its own name.
//
// A subscription's Delivery has Partition -1, and Offset the millisecond
// part of the entry id (1700000000000 for "1700000000000-3"): the full id
// is not an integer and transport.Delivery has no field for it.
// Redelivered is the entry's delivery counter minus one.
//
// # Pub/Sub messages
//
// A Pub/Sub message is a JSON object holding the same fields as a stream
// entry except payload (field names as keys, values as strings), then a
// newline ("\n"), then the payload bytes up to the end of the message:
//
//	{"ferry-id":"0190...","ferry-topic":"orders","h:traceparent":"00-..."}\n<payload>
//
// JSON escapes control characters inside strings, so the first newline
// always ends the object; the payload is not encoded. A message that does
// not start with such an object (a plain PUBLISH from another client) is
// delivered with no fields or headers and all of it as the payload.
//
// # What is guaranteed
//
// Streams: Publish returns nil once Redis has appended the entry. That is
// as durable as the server is configured to be: with appendonly yes and
// appendfsync always an acknowledged entry survives a crash of Redis;
// with the defaults (RDB snapshots, or appendfsync everysec) a crash
// loses up to the last second or snapshot; a replica that has not
// received it loses it at failover. A server without persistence loses
// everything at restart; subscriptions then create their group again.
// Refusals are *transport.RejectedError, which the relay marks FAILED at
// once: a key that exists and is not a stream (WRONGTYPE), a command the
// ACL user may not run (NOPERM), a message over MaxMessageBytes, an
// invalid destination. Every other error is transient and retried by the
// relay, in particular a server out of memory ("OOM command not allowed
// when used memory > 'maxmemory'"): the message stays WAITING and goes
// out once consumers catch up, trimming frees memory or maxmemory is
// raised.
//
// Each Subscribe makes a consumer of its own in the group (named
// host-pid-random). Entries go to one subscription of the group; other
// groups each get every entry. A new group starts at StartID ("0": every
// entry already in the stream). The entries a subscription holds
// (delivered and not acknowledged, or nacked and waiting for their delay)
// are refreshed every ClaimIdle/3, so that no other consumer takes them
// from a live but slow handler. When a subscription's process dies or
// loses Redis, its entries are claimed by another subscription of the
// group after ClaimIdle (plus up to ClaimIdle/2 until that one looks) and
// delivered again. Close gives the entries it holds back at once: they
// are made idle, so that the next XAUTOCLAIM of any subscription of the
// group takes them, and the consumer is removed when it holds nothing.
// Nack(delay) keeps the entry pending for the subscription, which
// delivers it again (XCLAIM, counting a delivery) once the delay is over,
// within Block; if the subscription closes or dies first, the group gets
// it again as above, before the delay. Consumers of dead processes that
// hold nothing are removed after RemoveIdleConsumers.
//
// MaxLen trims streams as they grow (XADD MAXLEN ~): trimming deletes
// entries whether or not every group has read them, so a group further
// behind than MaxLen loses messages. Without MaxLen a stream grows until
// something trims it (XTRIM, or a MAXLEN set here). Publisher.Route
// gives one route's streams their own MaxLen on the same connection.
//
// Order: one subscription receives a stream's entries in the order they
// were appended, and the relay publishes the messages of one key one
// after another, so a key's order holds; a nacked or claimed entry comes
// again after later ones.
//
// Pub/Sub: Publish returns nil once Redis accepted the PUBLISH, which
// reached the subscribers connected at that moment, possibly none (set
// RequireReceivers to make that an error the relay retries). A
// subscription receives what is published after Subscribe returned while
// it is connected; what is published while it reconnects is lost, and so
// is what Redis drops when the subscriber's output buffer overflows
// (client-output-buffer-limit pubsub) or what waits longer than a minute
// in a full BufferSize. Ack does nothing. Redis cannot deliver a message
// again, so Nack keeps it in the subscription's memory and Next delivers
// it again after the delay (Redelivered counts these); it is lost if the
// subscription closes or the process stops. The group argument of
// Subscribe is ignored: every subscription gets every message.
//
// # Options
//
// PublisherOptions: Addr (a redis:// or rediss:// URL, or host:port;
// default DefaultAddr), Mode, Format and Source (CloudEvents), MaxLen
// (Streams: approximate trimming, default none), MaxMessageBytes (default
// 512 MiB), RequireReceivers (PubSub), Pipelines and MaxBatch (default 4
// connections, 512 commands per round trip), Logger.
//
// SubscriberOptions: Addr, Mode, and for Streams StartID (default "0"),
// Count (entries per read, default 100), Block (one read's wait, default
// 1s), ClaimIdle (default 30s) and RemoveIdleConsumers (default 1h); for
// PubSub BufferSize (default 1000); Logger. Each field's documentation
// says what it changes.
//
// Stream subscriptions run small Lua scripts (EVALSHA) so that checking
// which consumer owns an entry and acting on it is atomic; a server whose
// ACL user may run XREADGROUP, XACK, XCLAIM, XAUTOCLAIM, XPENDING, XINFO
// and XGROUP must also allow EVAL and EVALSHA.
//
// # Logging
//
// Publisher and Subscriber log through their Logger. go-redis itself
// prints some connection errors through its own package-level logger;
// redirect or silence those with go-redis's SetLogger if needed.
package redis
