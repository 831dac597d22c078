package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ferry-dev/ferry/transport"
)

// Mode chooses between the two ways Redis carries messages. The choice
// decides what is guaranteed, so it is never implied: publishers and
// subscribers of one destination must use the same Mode.
type Mode int

const (
	// Streams, the default and the durable choice, appends each message
	// to a Redis stream (XADD) and reads it back through a consumer group
	// (XREADGROUP). A message is kept until it is trimmed (see
	// PublisherOptions.MaxLen), reaches subscribers that were away when
	// it was published, is shared among the subscriptions of one group
	// and is delivered again until it is acknowledged.
	Streams Mode = iota
	// PubSub, the explicitly lossy choice, sends each message with
	// PUBLISH to the subscribers connected at that moment and forgets
	// it. A subscriber that is not connected (not yet subscribed, between
	// reconnects, or too slow for Redis's output buffer) misses the
	// message for good; groups do not exist (every subscription gets
	// every message); and a message cannot be redelivered by Redis.
	// Choose it only for messages that may be lost, such as cache
	// invalidations or live notifications.
	PubSub
)

// String returns "streams" or "pubsub".
func (m Mode) String() string {
	switch m {
	case Streams:
		return "streams"
	case PubSub:
		return "pubsub"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "streams" or "pubsub" (empty means streams).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "streams", "stream":
		return Streams, nil
	case "pubsub", "pub/sub":
		return PubSub, nil
	}
	return 0, fmt.Errorf("redis: unknown mode %q: use streams (durable) or pubsub (lossy)", s)
}

// DefaultAddr is the Redis server used when an Options.Addr is empty.
const DefaultAddr = "redis://127.0.0.1:6379/0"

// redisMaxBulk is Redis's default proto-max-bulk-len: a larger value
// makes the server drop the connection instead of answering.
const redisMaxBulk = 512 << 20

// PublisherOptions configures a Publisher. The zero value publishes to
// streams on DefaultAddr in ferry's format.
type PublisherOptions struct {
	// Addr is the server: a URL as go-redis parses it
	// ("redis://user:password@host:6379/0", "rediss://..." for TLS, with
	// query parameters such as dial_timeout or pool_size), or a bare
	// host:port. Default DefaultAddr.
	Addr string
	// Mode is Streams (default) or PubSub; see Mode for what each
	// guarantees.
	Mode Mode
	// TLS connects with TLS, with these settings: the certificate
	// authorities to trust, a client certificate. nil uses TLS only for a
	// rediss:// Addr, trusting the system's authorities.
	TLS *tls.Config
	// Format is how the message's fields are written: ferry-* fields
	// (default) or CloudEvents attributes with the prefix "ce-".
	Format transport.Format
	// Source is the CloudEvents source attribute (FormatCloudEvents
	// only); default "ferry".
	Source string
	// MaxLen, when positive, trims each stream to about MaxLen entries as
	// messages are added (XADD MAXLEN ~ MaxLen): Redis removes whole
	// macro nodes, so a stream keeps at least MaxLen and a little more.
	// Trimming removes entries whether or not every group has read them,
	// so a group that falls further behind than MaxLen loses messages.
	// Zero (default) keeps every entry until someone trims the stream.
	// Streams only.
	MaxLen int64
	// MaxMessageBytes bounds the size of one message (payload, fields
	// and headers). A larger message is refused with a
	// *transport.RejectedError, so the relay marks it FAILED instead of
	// sending it forever. Default 512 MiB, Redis's own limit on one value
	// (proto-max-bulk-len): past it the server drops the connection.
	MaxMessageBytes int
	// RequireReceivers makes a PUBLISH that reached no subscriber an
	// error wrapping ErrNoReceivers, which the relay retries with backoff
	// until a subscriber listens. By default such a message is published
	// (Redis accepted it) and lost, as Pub/Sub does. PubSub only.
	RequireReceivers bool
	// Pipelines is how many connections send concurrent Publish calls,
	// each as pipelines of up to MaxBatch commands. Default 4.
	Pipelines int
	// MaxBatch bounds the commands in one pipeline. Default 512.
	MaxBatch int
	// Logger receives the publisher's log; default slog.Default().
	Logger *slog.Logger
}

// SubscriberOptions configures a Subscriber. The zero value reads streams
// from DefaultAddr.
type SubscriberOptions struct {
	// Addr is the server, as in PublisherOptions.Addr. Default
	// DefaultAddr.
	Addr string
	// Mode is Streams (default) or PubSub; it must match the publisher's.
	Mode Mode
	// TLS connects with TLS, with these settings: the certificate
	// authorities to trust, a client certificate. nil uses TLS only for a
	// rediss:// Addr, trusting the system's authorities.
	TLS *tls.Config
	// StartID is where a consumer group that does not exist yet starts
	// reading: "0" (default) delivers every entry already in the stream,
	// "$" only those added after the group is created. An existing group
	// keeps its position. Streams only.
	StartID string
	// Count bounds the entries one read or claim returns. Default 100.
	// Streams only.
	Count int
	// Block is how long one XREADGROUP waits for new entries. It bounds
	// how late a Nack's delay may be honoured and how long Close waits
	// for a read in progress. Default 1s. Streams only.
	Block time.Duration
	// ClaimIdle is how long an entry delivered to a consumer that stops
	// refreshing it (its process died or lost its connection) stays with
	// that consumer before another subscription of the group claims it
	// (XAUTOCLAIM) and delivers it again. A live subscription refreshes
	// the entries it holds every ClaimIdle/3, so a slow handler does not
	// lose its message to another consumer. Default 30s. Streams only.
	ClaimIdle time.Duration
	// RemoveIdleConsumers removes consumers of a group that hold no
	// entries and have been idle this long: the names that dead
	// processes left behind (each subscription has its own consumer
	// name). Removing a live consumer by mistake is harmless, Redis
	// creates it again at its next read. Default 1h; negative disables.
	// Streams only.
	RemoveIdleConsumers time.Duration
	// BufferSize is how many Pub/Sub messages wait in memory for Next.
	// When the buffer stays full for a minute, messages are dropped;
	// when Redis's output buffer for the connection overflows, Redis
	// disconnects the subscriber and the messages in between are lost.
	// Default 1000. PubSub only.
	BufferSize int
	// Logger receives the subscriber's log; default slog.Default().
	Logger *slog.Logger
}

const (
	defaultPipelines           = 4
	defaultMaxBatch            = 512
	defaultCount               = 100
	defaultBlock               = time.Second
	defaultClaimIdle           = 30 * time.Second
	defaultRemoveIdleConsumers = time.Hour
	defaultBufferSize          = 1000
)

func (o *PublisherOptions) setDefaults() error {
	var errs []error
	if o.Mode != Streams && o.Mode != PubSub {
		errs = append(errs, fmt.Errorf("Mode %d is unknown: use Streams or PubSub", int(o.Mode)))
	}
	if o.Format != transport.FormatFerry && o.Format != transport.FormatCloudEvents {
		errs = append(errs, fmt.Errorf("Format %d is unknown: use transport.FormatFerry or transport.FormatCloudEvents", int(o.Format)))
	}
	if o.MaxLen < 0 {
		errs = append(errs, fmt.Errorf("MaxLen %d is negative: use 0 to keep every entry, or the length to trim streams to", o.MaxLen))
	}
	if o.MaxLen > 0 && o.Mode == PubSub {
		errs = append(errs, errors.New("MaxLen applies to streams only; PubSub keeps nothing to trim"))
	}
	if o.RequireReceivers && o.Mode != PubSub {
		errs = append(errs, errors.New("RequireReceivers applies to PubSub only; a stream keeps messages for subscribers that come later"))
	}
	if o.MaxMessageBytes < 0 || o.Pipelines < 0 || o.MaxBatch < 0 {
		errs = append(errs, errors.New("MaxMessageBytes, Pipelines and MaxBatch must not be negative (0 means the default)"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("redis: invalid publisher options: %w", errors.Join(errs...))
	}
	if o.MaxMessageBytes == 0 || o.MaxMessageBytes > redisMaxBulk {
		o.MaxMessageBytes = redisMaxBulk
	}
	if o.Pipelines == 0 {
		o.Pipelines = defaultPipelines
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = defaultMaxBatch
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

func (o *SubscriberOptions) setDefaults() error {
	var errs []error
	if o.Mode != Streams && o.Mode != PubSub {
		errs = append(errs, fmt.Errorf("Mode %d is unknown: use Streams or PubSub", int(o.Mode)))
	}
	switch o.StartID {
	case "":
		o.StartID = "0"
	case "0", "$":
	default:
		if _, ok := entryMillis(o.StartID); !ok {
			errs = append(errs, fmt.Errorf("StartID %q is not a stream entry id: use \"0\" (every entry), \"$\" (new entries only) or an id like 1700000000000-0", o.StartID))
		}
	}
	if o.Count < 0 || o.Block < 0 || o.ClaimIdle < 0 || o.BufferSize < 0 {
		errs = append(errs, errors.New("Count, Block, ClaimIdle and BufferSize must not be negative (0 means the default)"))
	}
	if o.ClaimIdle > 0 && o.ClaimIdle < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("ClaimIdle %v is too short for Redis's millisecond clock: use at least 10ms (tests) or seconds", o.ClaimIdle))
	}
	if len(errs) > 0 {
		return fmt.Errorf("redis: invalid subscriber options: %w", errors.Join(errs...))
	}
	if o.Count == 0 {
		o.Count = defaultCount
	}
	if o.Block == 0 {
		o.Block = defaultBlock
	}
	if o.ClaimIdle == 0 {
		o.ClaimIdle = defaultClaimIdle
	}
	if o.RemoveIdleConsumers == 0 {
		o.RemoveIdleConsumers = defaultRemoveIdleConsumers
	}
	if o.BufferSize == 0 {
		o.BufferSize = defaultBufferSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// clientOptions parses addr into go-redis options. Nothing connects yet:
// go-redis dials on the first command, and again after a connection
// breaks, so a client made while Redis is down works once it is back.
func clientOptions(addr string, tlsConfig *tls.Config) (*goredis.Options, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	o := &goredis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		o, err = goredis.ParseURL(addr)
		if err != nil {
			return nil, fmt.Errorf("redis: Addr %q: %w; use redis://host:port/db or host:port", addr, err)
		}
	}
	if tlsConfig != nil {
		c := tlsConfig.Clone()
		if c.ServerName == "" {
			c.ServerName, _, _ = net.SplitHostPort(o.Addr)
		}
		o.TLSConfig = c
	}
	// The relay and the subscriptions retry with their own backoff, and
	// report why: go-redis's default of 5 dials times 4 attempts makes a
	// call to a server that is down take seconds before it fails. One
	// retry is kept, for a pooled connection that broke while idle.
	if o.DialerRetries == 0 {
		o.DialerRetries = 1
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
	return o, nil
}

// checkName reports a destination or group name Redis would take but that
// is surely a mistake: empty, not UTF-8, or with control characters (a
// newline pasted into a config file).
func checkName(what, name string) error {
	if name == "" {
		return fmt.Errorf("redis: %s is empty: name a stream key or channel", what)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("redis: %s %q is not valid UTF-8", what, name)
	}
	if i := strings.IndexFunc(name, unicode.IsControl); i >= 0 {
		return fmt.Errorf("redis: %s %q holds the control character %U at byte %d: remove it", what, name, []rune(name[i:])[0], i)
	}
	return nil
}
