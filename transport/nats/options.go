package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Storage is where a stream keeps its messages.
type Storage string

// The storage kinds of a stream.
const (
	// StorageFile keeps messages on disk: they survive a server restart.
	StorageFile Storage = "file"
	// StorageMemory keeps messages in memory: faster, lost when the
	// server stops.
	StorageMemory Storage = "memory"
)

// Retention is when a stream lets go of a message.
type Retention string

// The retention policies of a stream.
const (
	// RetentionLimits keeps messages until the stream's limits (MaxAge,
	// MaxMsgs, MaxBytes) push them out, whoever has read them.
	RetentionLimits Retention = "limits"
	// RetentionWorkQueue removes a message once one consumer acknowledged
	// it; the stream's consumers must not overlap.
	RetentionWorkQueue Retention = "workqueue"
	// RetentionInterest removes a message once every consumer that was
	// interested in it acknowledged it.
	RetentionInterest Retention = "interest"
)

// Stream describes a JetStream stream that a Publisher or Subscriber
// creates, or updates to this configuration, when it starts. Fields left
// zero take the server's defaults.
type Stream struct {
	// Name names the stream. Required; no dots, spaces, wildcards or
	// slashes.
	Name string
	// Subjects are the subjects the stream stores, wildcards allowed
	// ("orders.>"). Required.
	Subjects []string
	// Storage defaults to StorageFile.
	Storage Storage
	// Retention defaults to RetentionLimits.
	Retention Retention
	// MaxAge is how long a message is kept; zero keeps it until another
	// limit removes it.
	MaxAge time.Duration
	// MaxMsgs and MaxBytes bound the stream; zero is unlimited.
	MaxMsgs  int64
	MaxBytes int64
	// MaxMsgSize is the largest message (payload and headers) the stream
	// accepts; zero is the server's max_payload. Publishing a larger one
	// is refused with *transport.RejectedError.
	MaxMsgSize int32
	// Duplicates is the window in which the stream drops a message whose
	// Nats-Msg-Id it has already stored, so that a relay's retry of a
	// message the stream took but did not acknowledge is not stored
	// twice. Zero is the server's default, two minutes.
	Duplicates time.Duration
	// Replicas is the number of copies in a cluster; default 1.
	Replicas int
}

func (s Stream) validate() error {
	if p := checkName("stream", s.Name); p != "" {
		return errors.New(p)
	}
	if len(s.Subjects) == 0 {
		return fmt.Errorf("stream %q has no subjects: list the subjects it stores, such as %q", s.Name, "orders.>")
	}
	for _, subj := range s.Subjects {
		if p := checkSubject(subj, true); p != "" {
			return fmt.Errorf("stream %q: %s", s.Name, p)
		}
	}
	switch s.Storage {
	case "", StorageFile, StorageMemory:
	default:
		return fmt.Errorf("stream %q: unknown storage %q: use %q or %q", s.Name, s.Storage, StorageFile, StorageMemory)
	}
	switch s.Retention {
	case "", RetentionLimits, RetentionWorkQueue, RetentionInterest:
	default:
		return fmt.Errorf("stream %q: unknown retention %q: use %q, %q or %q", s.Name, s.Retention, RetentionLimits, RetentionWorkQueue, RetentionInterest)
	}
	switch {
	case s.MaxAge < 0, s.MaxMsgs < 0, s.MaxBytes < 0, s.MaxMsgSize < 0, s.Duplicates < 0, s.Replicas < 0:
		return fmt.Errorf("stream %q: MaxAge, MaxMsgs, MaxBytes, MaxMsgSize, Duplicates and Replicas cannot be negative (zero takes the server's default)", s.Name)
	case s.MaxAge > 0 && s.Duplicates > s.MaxAge:
		return fmt.Errorf("stream %q: the duplicate window (%s) cannot be longer than MaxAge (%s)", s.Name, s.Duplicates, s.MaxAge)
	}
	return nil
}

func (s Stream) config() jetstream.StreamConfig {
	c := jetstream.StreamConfig{
		Name:       s.Name,
		Subjects:   s.Subjects,
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     s.MaxAge,
		MaxMsgs:    s.MaxMsgs,
		MaxBytes:   s.MaxBytes,
		MaxMsgSize: s.MaxMsgSize,
		Duplicates: s.Duplicates,
		Replicas:   s.Replicas,
	}
	// Zero means unlimited to ferry, and the server reads -1 that way;
	// it normalises 0 as well, but an explicit -1 keeps updates stable.
	for _, p := range []*int64{&c.MaxMsgs, &c.MaxBytes} {
		if *p == 0 {
			*p = -1
		}
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = -1
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if s.Storage == StorageMemory {
		c.Storage = jetstream.MemoryStorage
	}
	switch s.Retention {
	case RetentionWorkQueue:
		c.Retention = jetstream.WorkQueuePolicy
	case RetentionInterest:
		c.Retention = jetstream.InterestPolicy
	}
	return c
}

// ConnOptions are the connection settings that publishers and
// subscribers share.
type ConnOptions struct {
	// Name is the connection's name, shown by the server's monitoring.
	// Default "ferry".
	Name string
	// ReconnectWait is the pause between attempts to reach the server
	// while it is away, to which the client adds up to a second of jitter.
	// Default 1s. The client tries for ever: a relay outlives its broker's
	// restarts.
	ReconnectWait time.Duration
	// Client holds further nats.go options applied after ferry's, for
	// credentials, TLS, or anything else the server needs
	// (nats.UserCredentials, nats.RootCAs, ...).
	Client []nats.Option
	// Logger receives connection events (lost, restored) and errors that
	// no call returns. Default slog.Default().
	Logger *slog.Logger
}

func (o ConnOptions) withDefaults(name string) ConnOptions {
	if o.Name == "" {
		o.Name = name
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func (o ConnOptions) validate() error {
	if o.ReconnectWait < 0 {
		return fmt.Errorf("ReconnectWait is %s: it cannot be negative", o.ReconnectWait)
	}
	return nil
}

// conn is a connection to NATS that remembers why the last attempt to
// reach the server failed, so that a call that gives up while the client
// is away can say why (a TLS certificate the client does not trust, a
// refused password) instead of only that its time ran out.
type conn struct {
	*nats.Conn
	lastFailure atomic.Pointer[string]
}

// failed records a failed attempt to connect.
func (c *conn) failed(err error) {
	msg := err.Error()
	c.lastFailure.Store(&msg)
}

// explain adds to err, when the client is not connected, why the last
// attempt to connect failed.
func (c *conn) explain(err error) error {
	if c.IsConnected() {
		return err
	}
	why := "no attempt has finished yet"
	if last := c.lastFailure.Load(); last != nil {
		why = "the last attempt failed: " + *last
	}
	return fmt.Errorf("%w (not connected to the server: %s)", err, why)
}

// connect returns a connection to the servers in url (a comma-separated
// list of nats:// URLs). It does not wait for the server: while it is
// unreachable the client keeps trying, buffers what is published, and
// calls fail or wait as their contexts say.
func connect(url string, o ConnOptions) (*conn, error) {
	if strings.TrimSpace(url) == "" {
		return nil, errors.New("nats: the server URL is empty: give one such as nats://127.0.0.1:4222")
	}
	log := o.Logger.With("transport", "nats", "conn", o.Name)
	c := &conn{}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		// A server that vanishes without closing the TCP connection is
		// noticed after three missed pings instead of the default's six
		// minutes.
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats: connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return
			}
			if last := c.lastFailure.Load(); last == nil || *last != err.Error() {
				log.Warn("nats: cannot connect; retrying", "err", err) // once per distinct reason
			}
			c.failed(err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Debug("nats: connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats: asynchronous error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("nats: asynchronous error", "err", err)
		}),
	}
	nc, err := nats.Connect(url, append(opts, o.Client...)...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", url, err)
	}
	c.Conn = nc
	return c, nil
}

// PublisherOptions configure a Publisher. The zero value is ready to use.
type PublisherOptions struct {
	ConnOptions
	// Format is how the message's fields are written as headers:
	// transport.FormatFerry (default) or transport.FormatCloudEvents.
	Format transport.Format
	// Source is the CloudEvents source attribute; default "ferry".
	Source string
	// Streams are created, or updated to this configuration, when the
	// publisher starts (again and again until the server answers, if it is
	// down). Empty leaves streams to whoever runs the server.
	Streams []Stream
	// MaxPending bounds the messages sent and not yet acknowledged by the
	// server; Publish waits for room beyond it. Default 4096.
	MaxPending int
	// AckTimeout is how long the server may take to acknowledge a
	// message before Publish gives up on it with an error the relay
	// retries (the stream's duplicate window drops the copy if the first
	// one was stored after all). Default 30s.
	AckTimeout time.Duration
}

func (o PublisherOptions) withDefaults() PublisherOptions {
	o.ConnOptions = o.ConnOptions.withDefaults("ferry-publisher")
	if o.MaxPending == 0 {
		o.MaxPending = 4096
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = 30 * time.Second
	}
	return o
}

func (o PublisherOptions) validate() error {
	if err := o.ConnOptions.validate(); err != nil {
		return err
	}
	switch {
	case o.Format != transport.FormatFerry && o.Format != transport.FormatCloudEvents:
		return fmt.Errorf("unknown Format %d: use transport.FormatFerry or transport.FormatCloudEvents", o.Format)
	case o.MaxPending < 0:
		return fmt.Errorf("MaxPending is %d: it cannot be negative (zero means 4096)", o.MaxPending)
	case o.AckTimeout < 0:
		return fmt.Errorf("AckTimeout is %s: it cannot be negative (zero means 30s)", o.AckTimeout)
	}
	return validateStreams(o.Streams)
}

func validateStreams(streams []Stream) error {
	seen := make(map[string]bool, len(streams))
	for _, s := range streams {
		if err := s.validate(); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("stream %q is listed twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// SubscriberOptions configure a Subscriber. The zero value is ready to
// use.
type SubscriberOptions struct {
	ConnOptions
	// Streams are created or updated when the subscriber starts, as
	// PublisherOptions.Streams.
	Streams []Stream
	// AckWait is how long the server waits for a delivery's
	// acknowledgement before it delivers the message again, also when
	// the subscriber died without closing. Default 30s. It is set on the
	// durable consumer when a subscription creates or updates it.
	AckWait time.Duration
	// MaxAckPending bounds the deliveries of a group that are not yet
	// acknowledged; the server sends no more until some are. Default
	// 1000.
	MaxAckPending int
	// MaxDeliver is how many times the server delivers a message before
	// it gives up on it; zero is without limit.
	MaxDeliver int
	// Batch is how many messages a subscription asks the server for at
	// once and buffers. Default 100. Subscriptions of one group compete
	// for messages batch by batch, so a small Batch spreads a trickle of
	// messages more evenly.
	Batch int
	// PullExpiry is how long a pull request for more messages waits at
	// the server; the subscription sends the next one before it expires.
	// Messages that a closing subscription gives back are delivered again
	// after PullExpiry, once the server has let go of its pull requests.
	// Default 5s; at least 1s.
	PullExpiry time.Duration
	// DoubleAck makes Ack wait for the server to confirm the
	// acknowledgement, so that a delivery acknowledged without error is
	// not delivered again even if the connection drops at that moment.
	// It costs a round trip per Ack.
	DoubleAck bool
}

func (o SubscriberOptions) withDefaults() SubscriberOptions {
	o.ConnOptions = o.ConnOptions.withDefaults("ferry-subscriber")
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 1000
	}
	if o.Batch == 0 {
		o.Batch = 100
	}
	if o.PullExpiry == 0 {
		o.PullExpiry = 5 * time.Second
	}
	return o
}

func (o SubscriberOptions) validate() error {
	if err := o.ConnOptions.validate(); err != nil {
		return err
	}
	switch {
	case o.AckWait < 0:
		return fmt.Errorf("AckWait is %s: it cannot be negative (zero means 30s)", o.AckWait)
	case o.AckWait > 0 && o.AckWait < 100*time.Millisecond:
		return fmt.Errorf("AckWait is %s: give the consumer at least 100ms to acknowledge a message", o.AckWait)
	case o.MaxAckPending < 0:
		return fmt.Errorf("MaxAckPending is %d: it cannot be negative (zero means 1000)", o.MaxAckPending)
	case o.MaxDeliver < 0:
		return fmt.Errorf("MaxDeliver is %d: it cannot be negative (zero means without limit)", o.MaxDeliver)
	case o.Batch < 0:
		return fmt.Errorf("Batch is %d: it cannot be negative (zero means 100)", o.Batch)
	case o.PullExpiry != 0 && o.PullExpiry < time.Second:
		return fmt.Errorf("PullExpiry is %s: it must be at least 1s (zero means 5s)", o.PullExpiry)
	}
	return validateStreams(o.Streams)
}
