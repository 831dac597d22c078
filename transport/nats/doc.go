// Package nats publishes ferry's messages to NATS JetStream and reads them
// back, with nats.go and its jetstream API.
//
// A Publisher (transport.Publisher and transport.Checker) sends each
// message to a subject, the dest of Publish, and returns once the stream
// that holds the subject has stored it. A Subscriber (transport.Subscriber)
// reads a subject through a durable pull consumer per group.
//
// # Wire mapping
//
// The payload is the NATS message's data, byte for byte. The fields travel
// as NATS headers, whose names keep their case:
//
//	message field   FormatFerry (default)   FormatCloudEvents (NATS binding)
//	ID              ferry-id                ce-id
//	Topic           ferry-topic             ce-subject
//	Key             ferry-key               ce-partitionkey
//	Type            ferry-type              ce-type (the topic if empty)
//	OccurredAt      ferry-occurred-at       ce-time (RFC 3339, nanoseconds, UTC)
//	-               -                       ce-specversion 1.0, ce-source (Source)
//	Headers         one header each, under its own name (traceparent included)
//	ID, again       Nats-Msg-Id, for the stream's deduplication
//
// The Subscriber reads either format, drops Nats-Msg-Id, and gives the
// other headers back as the message's headers. A delivery's Partition is
// -1, its Offset the message's stream sequence and its Redelivered the
// number of earlier deliveries to its consumer.
//
// # Guarantees
//
// Publish returns nil only for a message the stream acknowledged: stored
// in memory or on disk as the stream's Storage says (a file stream
// survives a server restart; a replicated stream has the ack of a
// quorum). Concurrent calls share one connection and are pipelined, with
// at most MaxPending messages awaiting their acknowledgement.
//
// Nothing is lost when the server goes away: the constructors do not wait
// for it, the client reconnects for ever, and Publish waits within its
// context (a message sent when the connection dropped is sent again,
// which the stream deduplicates). A relay retries what Publish did not
// confirm; since every message carries its id in Nats-Msg-Id, a retry of
// a message the stream stored but whose acknowledgement was lost is
// dropped by the stream, as long as it comes within the stream's
// duplicate window (Stream.Duplicates, two minutes by default). After the
// window, a retry is stored again: delivery is at least once, and
// consumers deduplicate by id.
//
// Publish refuses with *transport.RejectedError, which the relay turns
// into a FAILED message with the reason, what retrying cannot fix: a
// subject that no stream holds ("no stream matches subject X"), a subject
// with wildcards or empty tokens, a message larger than the stream's
// MaxMsgSize or the server's max_payload, a header name NATS cannot carry
// (empty, or with spaces, control characters, non-ASCII or any of
// "()/,:;<=>?@[\]{}) and a header value with a line break.
//
// A subscription's messages come in stream order, so one key's messages
// come in the order they were published, except for redeliveries. An
// acknowledged delivery is not delivered again to its group (with
// DoubleAck, not even if the connection drops as it is acknowledged). A
// delivery not acknowledged within AckWait, nacked, or held by a
// subscription that closes is delivered again: at once after a nack,
// after the nack's delay, after AckWait when the subscriber died, and
// after PullExpiry when its subscription closed.
//
// What is lossy: header values lose leading and trailing spaces (the
// client trims them); header names that differ only in case are distinct
// NATS headers but the same HTTP header, should the message go on to HTTP;
// a header a producer names Nats-Msg-Id is replaced by the message id, and
// other Nats-* headers are read by the server as instructions (Nats-TTL,
// Nats-Expected-Stream, ...).
//
// # Streams and consumers
//
// Streams belong to whoever runs the server, or to ferry: the Streams
// option lists streams that NewPublisher and NewSubscriber create, or
// update to the given configuration, as soon as the server answers. A
// configuration the server refuses (changing a stream's storage, two
// streams with overlapping subjects) is logged and returned by Check.
//
// A subscription's group names its durable consumer, created on the
// stream that holds the subscription's subject with that subject as its
// filter, explicit acks, and the Subscriber's AckWait, MaxAckPending and
// MaxDeliver. A new consumer starts at the stream's first message.
// Subscriptions of one group, in one process or many, share its messages;
// each group receives all of them. The consumer outlives its
// subscriptions: delete it (nats consumer rm) when the group is retired.
//
// # Options
//
// Both sides embed ConnOptions: the connection's Name, ReconnectWait (1s),
// further nats.go options in Client (credentials, TLS), and the Logger
// (slog.Default()). PublisherOptions adds Format (FormatFerry), Source
// ("ferry"), Streams, MaxPending (4096) and AckTimeout (30s).
// SubscriberOptions adds Streams, AckWait (30s), MaxAckPending (1000),
// MaxDeliver (no limit), Batch (100), PullExpiry (5s) and DoubleAck
// (false).
//
// NATS server 2.9 has a bug by which a message nacked while a pull request
// of a departed subscriber is still waiting at the server is delivered
// twice, or only after AckWait. A closing subscription therefore gives its
// messages back with a delay of PullExpiry and a little more, by when its
// pull requests have expired.
package nats
