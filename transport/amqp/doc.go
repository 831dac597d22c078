// Package amqp is ferry's RabbitMQ transport, over AMQP 0-9-1 with the
// rabbitmq/amqp091-go client: a Publisher for the relay and a Subscriber
// for consumers.
//
// # Publishing
//
// A publisher's destination (dest, the route's target) is an exchange.
// Each message's routing key is made from its fields by
// PublisherOptions.RoutingKey, a template with the placeholders {topic},
// {key} and {type}: "{topic}" by default, "{type}" to route by event type,
// "orders.{type}" for a dotted key that topic-exchange bindings match
// ("orders.*"). The exchange stays the whole destination, so a route's
// target and a subscriber's source name the same thing. Publisher.Route
// gives one route its own routing key on the same connection.
//
// Publish returns nil once the broker has confirmed the message
// (publisher confirms): routed to every queue bound to take it and, since
// messages are published persistent, written to disk by durable queues.
// Concurrent calls are pipelined on a few channels in confirm mode
// (PublisherOptions.Channels): each sends its message and waits for its
// own confirm while others are on the wire.
//
// What the broker refuses for good is a *transport.RejectedError, which
// the relay marks FAILED with the broker's reason rather than retrying:
//
//   - a message no queue is bound to take: messages are published
//     mandatory, and the broker returns it ("unroutable: NO_ROUTE ...
//     bind a queue to exchange X with a key matching Y"); an exchange with
//     an alternate-exchange routes it there instead;
//   - an exchange that does not exist (404 NOT_FOUND) or that the user
//     may not write to (403 ACCESS_REFUSED). Before the first message to
//     an exchange the publisher asks the broker whether it exists (a
//     passive declaration on a channel of its own), so that a missing one
//     does not close a shared channel and fail the messages in flight on
//     it; an exchange deleted later closes its channel once, which is then
//     reopened;
//   - a message AMQP cannot carry: a header name over 255 bytes, a routing
//     key, type or content type over 255 bytes, an exchange name that is
//     empty or over 255 bytes, or a header named CC or BCC, which RabbitMQ
//     reads as extra routing keys.
//
// Any other error is transient and the relay publishes the message again:
// a broker that nacks it, a connection lost before the confirm came (the
// broker may have taken the message: consumers deduplicate by message id),
// a broker that is down or blocks publishers (a memory or disk alarm), the
// context ending.
//
// # Consuming
//
// A subscriber's source is the exchange. Each group is a durable queue,
// named "<source>.<group>" by default (SubscriberOptions.Queue), which
// Subscribe declares and binds to the exchange ("#" by default, which on
// a topic exchange matches every key; fanout and headers exchanges ignore
// the key; SubscriberOptions.BindingKeys for others). Subscriptions of one
// group consume the same queue and share its messages; every group gets
// every message. The queue exists from the first Subscribe on, so
// subscribe before publishing: until a queue is bound, messages are
// unroutable and refused.
//
// Deliveries are acknowledged by hand; the broker sends a subscription at
// most SubscriberOptions.Prefetch of them before it waits for acks. Nack
// requeues the message (basic.nack with requeue). AMQP has no delayed
// requeue, so Nack with a delay returns at once and sends the nack when
// the delay is over; meanwhile the message counts against the prefetch.
// For long delays, dead-letter to a queue with a message TTL instead.
//
// Close, a lost connection or a dead process gives the unacknowledged
// messages back to the queue; the broker delivers them again (at once:
// it sees the connection close, or misses two heartbeats). Redelivered is
// x-delivery-count for quorum queues and 1 when the redelivered flag is
// set on classic queues. Partition and Offset are -1: queues have
// neither.
//
// Queue options: QueueType classic (default) or quorum (replicated, the
// type RabbitMQ recommends for data safety; RabbitMQ 4 gives quorum
// queues a default delivery limit of 20, after which the message is
// dropped or dead-lettered), DeadLetterExchange and DeadLetterRoutingKey,
// and any other queue argument in QueueArguments. A queue's arguments are
// fixed when it is first declared: declaring it again with others fails
// with 406 PRECONDITION_FAILED, which Subscribe reports.
//
// # Wire mapping
//
// The payload is the message body, byte for byte. The fields travel in
// the AMQP properties that AMQP tools show and in the headers table, in
// one of two formats (PublisherOptions.Format):
//
//	message field  property        header (FormatFerry)  header (FormatCloudEvents)
//	ID             message-id      ferry-id              cloudEvents:id
//	Topic          (routing key*)  ferry-topic           cloudEvents:subject
//	Key                            ferry-key             cloudEvents:partitionkey
//	Type           type            ferry-type            cloudEvents:type
//	OccurredAt     timestamp (s)   ferry-occurred-at     cloudEvents:time
//	Headers        headers         under their own names, except content-type
//	content-type   content-type    (the header becomes the property)
//	-              delivery-mode 2 (persistent)
//	-                                                    cloudEvents:specversion 1.0
//	-                                                    cloudEvents:source (Source)
//
// (*) with the default RoutingKey. ferry-occurred-at and cloudEvents:time
// are RFC 3339 with nanoseconds in UTC; the timestamp property holds
// seconds only.
//
// FormatCloudEvents follows the CloudEvents AMQP protocol binding in
// binary mode: attributes under the "cloudEvents:" prefix, data content
// type in the content-type property. That binding is written for AMQP
// 1.0's application-properties, which RabbitMQ maps to and from the 0-9-1
// headers table, so AMQP 1.0 consumers find the attributes where the
// binding puts them. (The binding also allows "cloudEvents_" for JMS;
// ferry writes the colon form only.)
//
// A subscriber reads both formats. Fields the headers do not carry come
// from the properties (message-id, type, timestamp), so messages from
// other producers decode too. Header values of other types (numbers,
// booleans, timestamps, from other producers or the broker, such as
// x-delivery-count) are formatted as text; tables and arrays (x-death)
// are left out.
//
// # Guarantees and what is lossy
//
// Delivery is at least once. Publish's nil means the message is on disk
// in every durable queue it was routed to; queues that are not durable,
// a queue length limit that drops messages (x-overflow drop-head, the
// default), message TTLs and queues deleted by hand lose messages after
// the confirm, as the broker is configured to. A publish whose confirm is
// lost with the connection is retried and may arrive twice. Messages of
// one key published one after another (as the relay does) are queued in
// that order; a single subscription receives them in order until a
// message is nacked or given back, which puts it behind later ones.
// Header names keep their case, except content-type, which comes back in
// lower case.
//
// # Connections
//
// NewPublisher and NewSubscriber do not connect: a goroutine connects in
// the background and reconnects, with backoff between MinReconnectDelay
// and MaxReconnectDelay, whenever the connection is lost, for as long as
// the publisher or subscriber is open. Meanwhile Publish waits for the
// broker as long as its context allows, and Next sets its subscription up
// again once the broker is back. The exchanges listed in Exchanges are
// declared on every connection.
package amqp
