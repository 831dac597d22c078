// Package kafka is ferry's transport for Apache Kafka, on franz-go: a
// Publisher for the relay (transport.Publisher and transport.Checker) and
// a Subscriber for consumers (transport.Subscriber).
//
// # Wire mapping
//
// Each message is one Kafka record. The payload is the record's value,
// byte for byte (an empty payload is an empty value, never a null one,
// which compacted topics take as a tombstone); the other fields travel as
// record headers:
//
//	message field   record (FormatFerry)        record (FormatCloudEvents)
//	-------------   --------------------        --------------------------
//	Key             key, and ferry-key header   key, and ce_partitionkey
//	ID              ferry-id                    ce_id
//	Topic           ferry-topic                 ce_subject
//	Type            ferry-type                  ce_type (Topic if no Type)
//	OccurredAt      ferry-occurred-at (RFC 3339 ce_time
//	                with nanoseconds, UTC)
//	Headers         one header each, same name  one header each, same name
//	Payload         value                       value (the event's data)
//	-               -                           ce_specversion "1.0",
//	                                            ce_source (Source option)
//
// The record's timestamp is the time of publishing (Kafka's CreateTime),
// not OccurredAt: retention and time-based lookups then work on when
// Kafka got the record, even for a message that waited in the outbox.
// CloudEvents use the ce_ prefix of the CloudEvents Kafka binding;
// content-type, if the message has it, is the data's content type. The
// subscriber reads both formats whatever the publisher's option.
//
// A record that another client produced still makes a message: Topic is
// the Kafka topic, Key the record key, OccurredAt the record timestamp,
// and ID "kafka:<topic>/<partition>/<offset>", stable across redeliveries
// so that consumers can deduplicate on it.
//
// # Publishing
//
// The Publisher's dest is a topic name; ferry never creates topics.
// Records are keyed by the message's key, so the messages of a key land
// in one partition (with Kafka's murmur2 partitioner, as the Java client
// places them) in the order the relay publishes them; a message without a
// key goes to a partition of the client's choosing. The producer is
// idempotent and waits for every in-sync replica (acks=all) by default:
// Publish returns nil only once the record is written. Concurrent Publish
// calls share batches (see PublisherOptions.Linger), which is how the
// relay, publishing from many goroutines, reaches Kafka's throughput.
//
// Kafka's refusals that retrying will not change are a
// *transport.RejectedError carrying Kafka's error (wrapped: errors.Is
// with the kerr value works) and a hint: MESSAGE_TOO_LARGE (a record over
// the topic's max.message.bytes; records that merely shared a refused
// batch with it are sent again alone, not refused),
// UNKNOWN_TOPIC_OR_PARTITION after UnknownTopicRetries lookups, an
// invalid topic name (checked before sending), authorisation failures,
// and records the broker's validation refuses. Anything else, a cluster
// that cannot be reached included, is an ordinary error the relay
// retries; when Publish's context ends first, the error says why
// connecting fails, if it does. A failed SASL authentication is such an
// error too: once the credentials are fixed the messages go out, without
// anyone retrying them by hand.
//
// # Subscribing
//
// Subscribe joins a consumer group with the cooperative-sticky balancer;
// the group's members share the topic's partitions, and different groups
// each read every record. A group with no committed offset starts at the
// earliest record (SubscriberOptions.StartOffset). Deliveries carry
// Partition and Offset; one partition's records come in offset order.
//
// Kafka commits one offset per partition, but ferry's consumer runtime
// acknowledges deliveries in any order. The subscriber therefore commits,
// per partition, the first offset not yet acknowledged (everything before
// it is done), and puts the offsets acknowledged above it in the commit's
// metadata. After a restart or a rebalance, the partition's new owner
// skips those instead of doing them again: a consumer killed with
// offsets 4, 6 and 7 done and 5 not redoes 5 only. Commits go out in the
// background, soon after acknowledgements and at most once per
// CommitInterval; what was acknowledged but not yet committed when a
// process dies is delivered again.
//
// Nack holds the record and hands it out again after the delay, with
// Redelivered one more; the partition's commit stays before it until it
// is acknowledged. Kafka has no per-record redelivery, so the records
// after it are not held back (the consumer runtime keeps per-key order).
// A record delivered again after a restart or a rebalance has Redelivered
// 1 when the previous owner's commit says it had handed the record out;
// otherwise 0.
//
// When partitions move to another member (a rebalance), the subscriber
// commits what is done and drops what is not: the new owner delivers it
// again, and acknowledging it afterwards does nothing. Close commits and
// leaves the group; records not acknowledged are delivered again to the
// group. A member that dies without closing keeps its partitions until
// its SessionTimeout passes.
//
// A subscription holds at most MaxInFlight records not acknowledged, and
// fetches no more until some are: a slow consumer makes Kafka keep the
// records, not the process's memory.
//
// # Guarantees and limits
//
// Delivery is at least once: a Publish whose context ended may still have
// written its record, and a relay retry then writes it twice; consumers
// see records again after crashes and rebalances. Messages carry a stable
// ID for deduplication. Per-key order holds from the relay to a partition
// and from the partition to the subscriber. The done offsets above a
// commit are kept only up to about 2 KB of metadata per partition (Kafka's
// offset.metadata.max.bytes is 4 KB by default); beyond that, they are
// redone after a restart.
//
// # Connecting
//
// Brokers lists seed brokers; the client learns the cluster from them and
// connects to the addresses the brokers advertise. Where those cannot be
// reached directly (a proxy, an SSH tunnel, a port-forward), a Dialer
// option receives each advertised address and may dial another. TLS and
// SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) are options; SASL without
// TLS sends PLAIN passwords in clear. Constructors do not connect: a
// cluster that is down is retried behind each call's context, with a
// backoff of at most a second, and the client looks the cluster up again
// at most once a second after a failure.
package kafka
