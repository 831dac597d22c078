package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferry-dev/ferry/transport"
)

// PublisherOptions configure a Publisher. Only Brokers is required; every
// other field has the default its comment gives.
type PublisherOptions struct {
	// Brokers are the seed brokers, host:port. The client learns the rest
	// of the cluster from them. Required.
	Brokers []string

	// Format is how the message's fields are written as record headers:
	// ferry-* headers (default) or CloudEvents binary mode with the ce_
	// prefix of the CloudEvents Kafka binding.
	Format transport.Format
	// Source is the CloudEvents source attribute; default "ferry".
	Source string

	// Acks is how many replicas must have the record before Publish
	// returns: AcksAll (default) with the idempotent producer.
	Acks Acks
	// Linger is how long a partition's batch waits for more records
	// before it is sent. Default 0: a batch goes out at once, and
	// concurrent Publish calls still share batches, because records
	// accumulate while the previous request of the partition is in
	// flight. A few milliseconds trade latency for larger batches.
	Linger time.Duration
	// MaxBatchBytes bounds a record batch; a record alone over it is
	// refused before it is sent. Default 1,000,012 (Kafka's default
	// max.message.bytes). Keep it at or below the topics'
	// max.message.bytes.
	MaxBatchBytes int
	// Compression is the batch codec; default CompressionNone.
	Compression Compression
	// MaxBufferedRecords bounds the records waiting to be sent or
	// acknowledged; Publish blocks (until its context ends) when it is
	// reached. Default 10,000.
	MaxBufferedRecords int
	// UnknownTopicRetries is how many times the client looks a topic up
	// again before it refuses the messages for a topic the cluster does
	// not know (a *transport.RejectedError). Default 3: enough for a
	// topic that was just created to reach every broker.
	UnknownTopicRetries int
	// CloseTimeout bounds how long Close waits for buffered records to be
	// acknowledged. Default 10s.
	CloseTimeout time.Duration

	// SASL authenticates the connection; nil means none.
	SASL *SASL
	// TLS encrypts the connection; nil means plain TCP.
	TLS *tls.Config
	// Dialer, if set, opens every connection to a broker (before TLS).
	// It receives the address the cluster advertises for the broker and
	// may dial another one: to reach the cluster through a proxy, a
	// tunnel or a port-forward, whose addresses the brokers cannot
	// advertise. Default: net.Dialer with a 10s timeout.
	Dialer DialFunc
	// ClientID is the client.id the brokers log and apply quotas to;
	// default "ferry".
	ClientID string
	// Logger receives the client's warnings and errors; default
	// slog.Default().
	Logger *slog.Logger
}

func (o *PublisherOptions) setDefaults() error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = 1000012
	}
	if o.MaxBufferedRecords == 0 {
		o.MaxBufferedRecords = 10000
	}
	if o.UnknownTopicRetries == 0 {
		o.UnknownTopicRetries = 3
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 10 * time.Second
	}
	switch {
	case o.Linger < 0 || o.Linger > time.Minute:
		return fmt.Errorf("kafka: PublisherOptions.Linger %v is out of range: use 0 to a few milliseconds", o.Linger)
	case o.MaxBatchBytes < 1024:
		return fmt.Errorf("kafka: PublisherOptions.MaxBatchBytes %d is too small: use at least 1024, or 0 for the default", o.MaxBatchBytes)
	case o.MaxBatchBytes > 1<<30:
		return fmt.Errorf("kafka: PublisherOptions.MaxBatchBytes %d is over 1 GiB", o.MaxBatchBytes)
	case o.MaxBufferedRecords < 0:
		return fmt.Errorf("kafka: PublisherOptions.MaxBufferedRecords %d is negative: use 0 for the default", o.MaxBufferedRecords)
	case o.UnknownTopicRetries < 0:
		return fmt.Errorf("kafka: PublisherOptions.UnknownTopicRetries %d is negative: use 0 for the default", o.UnknownTopicRetries)
	case o.CloseTimeout < 0:
		return fmt.Errorf("kafka: PublisherOptions.CloseTimeout %v is negative", o.CloseTimeout)
	case o.Acks != AcksAll && o.Acks != AcksLeader:
		return fmt.Errorf("kafka: PublisherOptions.Acks %d is not AcksAll or AcksLeader", int(o.Acks))
	}
	return nil
}

func (o *PublisherOptions) conn() connOptions {
	return connOptions{brokers: o.Brokers, clientID: o.ClientID, sasl: o.SASL, tls: o.TLS, dial: o.Dialer, logger: o.Logger}
}

// Publisher publishes messages to Kafka topics: each message is one
// record, keyed by the message's key, carrying its fields in headers and
// its payload as the value. It implements transport.Publisher and
// transport.Checker. It is safe for concurrent use; concurrent Publish
// calls are batched together.
type Publisher struct {
	opts   PublisherOptions
	enc    transport.Encoding
	cl     *kgo.Client
	conn   *connHook
	closed atomic.Bool

	// solo sends records one at a time; see publishAlone.
	soloOnce sync.Once
	solo     *kgo.Client
	soloErr  error
}

var (
	_ transport.Publisher = (*Publisher)(nil)
	_ transport.Checker   = (*Publisher)(nil)
)

// NewPublisher returns a publisher for the cluster o.Brokers names. It
// does not connect: the first Publish or Check does, and a cluster that
// cannot be reached is retried behind each call's context, so a relay can
// start while Kafka is down.
func NewPublisher(o PublisherOptions) (*Publisher, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if err := o.conn().validate("PublisherOptions"); err != nil {
		return nil, err
	}
	if _, err := o.Compression.codec(); err != nil {
		return nil, fmt.Errorf("kafka: PublisherOptions.%w", err)
	}
	enc, err := encoding(o.Format, o.Source)
	if err != nil {
		return nil, err
	}
	p := &Publisher{opts: o, enc: enc}
	opts, hook := p.clientOpts(false)
	p.conn = hook
	p.cl, err = kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: publisher: %w", err)
	}
	return p, nil
}

func (p *Publisher) clientOpts(solo bool) ([]kgo.Opt, *connHook) {
	o := p.opts
	codec, _ := o.Compression.codec()
	opts, hook := o.conn().kgoOpts()
	opts = append(opts,
		kgo.ProducerLinger(o.Linger),
		kgo.ProducerBatchMaxBytes(int32(o.MaxBatchBytes)),
		kgo.ProducerBatchCompression(codec),
		kgo.MaxBufferedRecords(o.MaxBufferedRecords),
		kgo.UnknownTopicRetries(o.UnknownTopicRetries),
	)
	if o.Acks == AcksLeader {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	} else {
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if solo {
		// One record buffered at a time makes every batch a batch of one.
		opts = append(opts, kgo.MaxBufferedRecords(1), kgo.ProducerLinger(0))
	}
	return opts, hook
}

// Publish sends m to the topic dest and returns once the brokers have
// acknowledged it (all in-sync replicas, by default). The record's key is
// m.Key, so the messages of one key go to one partition in the order they
// were published; a message without a key goes to a partition of the
// client's choosing.
//
// A message Kafka refuses (too large, unknown topic, not authorised,
// invalid topic name) is a *transport.RejectedError. When ctx ends first,
// Publish returns an error wrapping ctx.Err(): the record may still be
// written if it was already on its way, so a retry can duplicate it
// (consumers deduplicate on the message id).
func (p *Publisher) Publish(ctx context.Context, dest string, m *transport.Message) error {
	if p.closed.Load() {
		return transport.ErrClosed
	}
	if err := validTopic(dest); err != nil {
		return &transport.RejectedError{Transport: "kafka", Dest: dest, MessageID: m.ID, Reason: err.Error(),
			Hint: "route the message to a valid topic name", Err: kerr.InvalidTopicException}
	}
	r := p.record(dest, m)
	if size := recordSize(r); size > p.opts.MaxBatchBytes {
		return &transport.RejectedError{Transport: "kafka", Dest: dest, MessageID: m.ID,
			Reason: fmt.Sprintf("%v: the record is %d bytes, over the publisher's MaxBatchBytes of %d", kerr.MessageTooLarge, size, p.opts.MaxBatchBytes),
			Hint:   "send a reference to the data instead of the data, or raise MaxBatchBytes and the topic's max.message.bytes",
			Err:    kerr.MessageTooLarge}
	}
	err := p.produce(ctx, p.cl, r)
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
		// The broker judges a whole batch: a record may have been refused
		// for sharing a batch with others over the topic's limit. Only a
		// refusal of the record alone says the record is too large.
		err = p.publishAlone(ctx, dest, m)
	}
	return p.result(dest, m, err)
}

// produce hands r to cl and waits for the brokers' answer or the end of
// ctx, whichever comes first. The record carries ctx too, so one whose
// context ended before it was sent is dropped rather than written late.
func (p *Publisher) produce(ctx context.Context, cl *kgo.Client, r *kgo.Record) error {
	done := make(chan error, 1)
	cl.Produce(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// The promise may have raced ctx: prefer its answer.
		select {
		case err := <-done:
			return err
		default:
			return ctx.Err()
		}
	}
}

// publishAlone publishes m in a batch of its own, through a second client
// that buffers one record at a time. It is used only after the broker
// refused a batch as too large, which a healthy route rarely sees.
func (p *Publisher) publishAlone(ctx context.Context, dest string, m *transport.Message) error {
	p.soloOnce.Do(func() {
		opts, _ := p.clientOpts(true)
		p.solo, p.soloErr = kgo.NewClient(opts...)
	})
	if p.soloErr != nil {
		return p.soloErr
	}
	if p.closed.Load() {
		return transport.ErrClosed
	}
	return p.produce(ctx, p.solo, p.record(dest, m))
}

// result turns the client's answer into what Publish returns.
func (p *Publisher) result(dest string, m *transport.Message, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, kgo.ErrClientClosed) {
		return fmt.Errorf("kafka: publish message %s to %q: %w", m.ID, dest, transport.ErrClosed)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if cerr := p.conn.err(); cerr != nil {
			return fmt.Errorf("kafka: message %s to %q not acknowledged: %w; connecting to the cluster at %v fails: %v", m.ID, dest, err, p.opts.Brokers, cerr)
		}
		return fmt.Errorf("kafka: message %s to %q not acknowledged: %w", m.ID, dest, err)
	}
	if hint, ok := rejection(err); ok {
		return &transport.RejectedError{Transport: "kafka", Dest: dest, MessageID: m.ID, Reason: err.Error(), Hint: hint, Err: err}
	}
	return fmt.Errorf("kafka: publish message %s to %q: %w", m.ID, dest, err)
}

// rejection reports whether err is a refusal that retrying the same
// record will not change, and what to do about it.
func rejection(err error) (hint string, ok bool) {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return "", false
	}
	switch ke {
	case kerr.MessageTooLarge, kerr.RecordListTooLarge:
		return "the record is over the topic's max.message.bytes (or the broker's message.max.bytes): send a reference to the data instead of the data, or raise the limit", true
	case kerr.UnknownTopicOrPartition, kerr.UnknownTopicID:
		return "create the topic, or route the message to a topic that exists (ferry does not create topics)", true
	case kerr.InvalidTopicException:
		return "route the message to a valid topic name", true
	case kerr.TopicAuthorizationFailed:
		return "grant the client's principal WRITE on the topic", true
	case kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed:
		return "grant the client's principal IDEMPOTENT_WRITE on the cluster, or publish with AcksLeader", true
	case kerr.InvalidRecord:
		return "the broker's validation refused the record (a compacted topic needs a key)", true
	case kerr.PolicyViolation:
		return "the cluster's policy refused the record", true
	}
	return "", false
}

// record builds the Kafka record of m.
func (p *Publisher) record(dest string, m *transport.Message) *kgo.Record {
	r := &kgo.Record{Topic: dest, Value: m.Payload}
	if r.Value == nil {
		// A null value is a tombstone: on a compacted topic it would
		// delete the key's records. An empty payload is an empty value.
		r.Value = []byte{}
	}
	if m.Key != "" {
		r.Key = []byte(m.Key)
	}
	r.Headers = make([]kgo.RecordHeader, 0, len(m.Headers)+7)
	p.enc.Headers(m, func(name, value string) {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: name, Value: []byte(value)})
	})
	return r
}

// recordSize is about what a record adds to a batch: the broker's limit
// applies to the batch, so this is a lower bound of what it judges.
func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value) + 32
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 4
	}
	return n
}

// Check reports whether the topic dest exists on the cluster. A topic that
// does not exist is an error wrapping kerr.UnknownTopicOrPartition; a
// cluster that cannot be reached is retried until ctx ends.
func (p *Publisher) Check(ctx context.Context, dest string) error {
	if p.closed.Load() {
		return transport.ErrClosed
	}
	if err := validTopic(dest); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return checkTopic(ctx, p.cl, dest)
}

// checkTopic asks the cluster about topic.
func checkTopic(ctx context.Context, cl *kgo.Client, topic string) error {
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("kafka: look up topic %q: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return &transport.RejectedError{Transport: "kafka", Dest: topic, Reason: "the topic does not exist",
			Hint: "create it (ferry does not create topics), or route to a topic that exists", Err: kerr.UnknownTopicOrPartition}
	}
	if d.Err != nil {
		return fmt.Errorf("kafka: look up topic %q: %w", topic, d.Err)
	}
	return nil
}

// Close waits up to CloseTimeout for the records in flight to be
// acknowledged, then closes the connections. Publish calls still waiting
// fail with an error wrapping transport.ErrClosed.
func (p *Publisher) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.CloseTimeout)
	defer cancel()
	err := p.cl.Flush(ctx)
	p.cl.Close()
	p.soloOnce.Do(func() {}) // no solo client from now on
	if p.solo != nil {
		p.solo.Close()
	}
	if err != nil {
		return fmt.Errorf("kafka: close publisher: records not acknowledged within %v: %w", p.opts.CloseTimeout, err)
	}
	return nil
}
