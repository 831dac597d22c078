// Package transport is what ferry's brokers have in common: a Publisher
// the relay delivers through, a Subscriber the consumer runtime reads
// from, and one wire format for the message's fields.
//
// Each broker is a package of its own (transport/kafka, transport/nats,
// transport/amqp, transport/redis, transport/webhook, and the in-process
// transport/local), and every one of them passes the same conformance
// suite, transport/transporttest, against its real broker.
//
// # Publishing
//
// Publish returns nil only once the broker has durably accepted the
// message: an acknowledgement from all in-sync replicas, a stream's ack, a
// publisher confirm, a 2xx response. An error is retried by the relay with
// backoff, except a *RejectedError: the broker refused this message and
// will refuse it again (too large, unroutable, wrong type, forbidden), so
// the relay marks it FAILED at once with the broker's reason. A broker that
// is down is not a refusal: publishers connect lazily and reconnect, so a
// relay that starts while its broker is away delivers once it is back.
//
// A route sends a topic pattern to a Target on a publisher (Destination):
// the broker's own name for where messages go, with {topic}, {key}, {type}
// and {lane} replaced by the message's fields.
//
// # Subscribing
//
// Subscribe(ctx, source, group) reads what was published to source.
// Subscriptions of one group share the messages; different groups each get
// all of them. A Delivery is acknowledged (Ack) once its effect is durable
// or given back (Nack) to come again; what a subscription holds
// unacknowledged when it closes, or when its process dies, is delivered
// again to the group. Delivery is at least once: consumers deduplicate by
// the message id.
//
// # Wire format
//
// The payload is the broker message's body, byte for byte; ferry never
// re-encodes it. The other fields travel as headers, next to the message's
// own headers (which keep their names, so a W3C traceparent stays a
// traceparent):
//
//	field        ferry format          CloudEvents binary mode
//	ID           ferry-id              ce-id (and ce-specversion: 1.0, ce-source)
//	Topic        ferry-topic           ce-subject
//	Key          ferry-key             ce-partitionkey
//	Type         ferry-type            ce-type (the topic when the message has no type)
//	OccurredAt   ferry-occurred-at     ce-time (RFC 3339, UTC, nanoseconds)
//
// CloudEvents attributes take the prefix of the broker's binding: ce_ on
// Kafka, ce- on HTTP and NATS, cloudEvents: on AMQP. Where the broker has a
// native place for a field, the transport uses it too: the Kafka record
// key, the Nats-Msg-Id header (so JetStream deduplicates relay retries),
// the AMQP message-id, type and timestamp properties. Each transport's
// package documentation has its exact mapping.
package transport
