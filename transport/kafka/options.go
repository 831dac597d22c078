package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ferry-dev/ferry/transport"
)

// CEPrefix is the prefix of CloudEvents attributes in Kafka record headers,
// as the CloudEvents Kafka protocol binding spells it.
const CEPrefix = "ce_"

// DialFunc dials a broker. It has the signature of net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// SASL is a SASL mechanism and its credentials.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (any case).
	Mechanism string
	User      string
	Password  string
}

func (s *SASL) mechanism() (sasl.Mechanism, error) {
	if s.User == "" {
		return nil, errors.New("SASL.User is empty: give the user name, or leave SASL nil to connect without authentication")
	}
	switch strings.ToUpper(s.Mechanism) {
	case "PLAIN":
		return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("SASL.Mechanism %q is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
}

// Compression is the codec of produced record batches.
type Compression string

// The codecs. Consumers must support the codec: zstd needs Kafka 2.1 or
// later on the brokers and on every consumer.
const (
	CompressionNone   Compression = "none"
	CompressionGzip   Compression = "gzip"
	CompressionSnappy Compression = "snappy"
	CompressionLZ4    Compression = "lz4"
	CompressionZstd   Compression = "zstd"
)

func (c Compression) codec() (kgo.CompressionCodec, error) {
	switch Compression(strings.ToLower(string(c))) {
	case "", CompressionNone:
		return kgo.NoCompression(), nil
	case CompressionGzip:
		return kgo.GzipCompression(), nil
	case CompressionSnappy:
		return kgo.SnappyCompression(), nil
	case CompressionLZ4:
		return kgo.Lz4Compression(), nil
	case CompressionZstd:
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("Compression %q is not supported: use none, gzip, snappy, lz4 or zstd", string(c))
}

// Acks is how many replicas must have written a record before the broker
// acknowledges it.
type Acks int

const (
	// AcksAll waits for every in-sync replica (acks=all), with the
	// idempotent producer, so that a retried batch is not written twice
	// and records of a partition keep their order. The default.
	AcksAll Acks = iota
	// AcksLeader waits for the partition leader only (acks=1). A leader
	// that fails before its followers copy the record loses it, and the
	// producer is not idempotent: retries can duplicate records. Use it
	// only where the topic's durability does not matter.
	AcksLeader
)

// StartOffset is where a group that has no committed offset for a
// partition starts reading it.
type StartOffset int

const (
	// StartEarliest reads the partition from its first record: a new
	// group receives what was published before it subscribed. The
	// default, so that no message is skipped.
	StartEarliest StartOffset = iota
	// StartLatest reads only what is published after the group's first
	// subscription.
	StartLatest
)

// connOptions are the connection settings both sides share.
type connOptions struct {
	brokers  []string
	clientID string
	sasl     *SASL
	tls      *tls.Config
	dial     DialFunc
	logger   *slog.Logger
}

func (c connOptions) validate(side string) error {
	if len(c.brokers) == 0 {
		return fmt.Errorf("kafka: %s.Brokers is empty: give at least one broker address (host:port)", side)
	}
	for _, b := range c.brokers {
		if strings.TrimSpace(b) == "" || strings.Contains(b, "://") {
			return fmt.Errorf("kafka: %s.Brokers: %q is not a broker address: use host:port (see ParseBrokers for URLs)", side, b)
		}
	}
	if c.sasl != nil {
		if _, err := c.sasl.mechanism(); err != nil {
			return fmt.Errorf("kafka: %s.%w", side, err)
		}
	}
	return nil
}

// kgoOpts returns the client options for c, already validated, and a
// hook that tells how connecting goes.
func (c connOptions) kgoOpts() ([]kgo.Opt, *connHook) {
	hook := new(connHook)
	clientID := c.clientID
	if clientID == "" {
		clientID = "ferry"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.ClientID(clientID),
		kgo.WithLogger(kgoLogger{c.logger}),
		// A broker that is down is retried behind the caller's context;
		// the relay and the consumer decide how long to wait.
		kgo.RetryBackoffFn(backoff),
		// After a failure the client looks the cluster up again no sooner
		// than this; kgo's 5s would hold a relay that long after a broker
		// came back.
		kgo.MetadataMinAge(time.Second),
		kgo.WithHooks(hook),
	}
	if c.sasl != nil {
		m, _ := c.sasl.mechanism()
		opts = append(opts, kgo.SASL(m))
	}
	switch {
	case c.dial != nil && c.tls != nil:
		opts = append(opts, kgo.Dialer(tlsOver(c.dial, c.tls)))
	case c.dial != nil:
		opts = append(opts, kgo.Dialer(c.dial))
	case c.tls != nil:
		opts = append(opts, kgo.DialTLSConfig(c.tls))
	}
	return opts, hook
}

// connHook remembers why the last connection to a broker failed (refused,
// TLS, SASL), until one succeeds: the client retries such failures
// quietly, and a caller whose context ended waiting deserves the reason.
type connHook struct {
	last atomic.Pointer[error]
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h *connHook) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		h.last.Store(nil)
		return
	}
	h.last.Store(&err)
}

// err returns the last connection error, or nil if the last attempt
// succeeded.
func (h *connHook) err() error {
	if p := h.last.Load(); p != nil {
		return *p
	}
	return nil
}

// backoff is the wait before the tries-th retry of a request or dial:
// quick at first so that a short outage costs little, capped so that a
// broker that comes back is found within a second.
func backoff(tries int) time.Duration {
	d := 50 * time.Millisecond << min(tries, 5)
	return min(d, time.Second)
}

// tlsOver wraps dial with a TLS handshake, for a custom dialer and TLS
// together (kgo takes one or the other).
func tlsOver(dial DialFunc, cfg *tls.Config) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := cfg.Clone()
		if c.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				c.ServerName = host
			}
		}
		tc := tls.Client(conn, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
}

// ParseBrokers splits a broker list as people write it: addresses
// separated by commas, each optionally prefixed with kafka://.
// "kafka://k1:9092,k2:9092" gives [k1:9092 k2:9092].
func ParseBrokers(s string) []string {
	var brokers []string
	for b := range strings.SplitSeq(s, ",") {
		b = strings.TrimSpace(b)
		b = strings.TrimPrefix(b, "kafka://")
		b = strings.TrimSuffix(b, "/")
		if b != "" {
			brokers = append(brokers, b)
		}
	}
	return brokers
}

// kgoLogger sends the client's logs to slog. The client's info messages
// (connections, group joins) go out at debug level: they are routine for
// ferry's users; warnings and errors keep their level. The client's own
// debug messages (every request) are logged only by a handler enabled
// for slog.LevelDebug-4.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	switch {
	case k.l.Enabled(context.Background(), slog.LevelDebug-4):
		return kgo.LogLevelDebug
	case k.l.Enabled(context.Background(), slog.LevelDebug):
		return kgo.LogLevelInfo
	case k.l.Enabled(context.Background(), slog.LevelWarn):
		return kgo.LogLevelWarn
	case k.l.Enabled(context.Background(), slog.LevelError):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	l := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	}
	k.l.Log(context.Background(), l, "kafka client: "+msg, keyvals...)
}

// validTopic checks a topic name as Kafka does, so that a bad name fails
// with an error that says what is wrong instead of the broker's
// INVALID_TOPIC_EXCEPTION.
func validTopic(name string) error {
	switch {
	case name == "":
		return errors.New("the topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > 249:
		return fmt.Errorf("topic name %.20q... is %d characters long, over Kafka's limit of 249", name, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			continue
		}
		return fmt.Errorf("topic name %q has the character %q at %d: Kafka topic names use only ASCII letters, digits, '.', '_' and '-'", name, rune(name[i]), i)
	}
	return nil
}

// encoding returns the header encoding for a format, checked.
func encoding(f transport.Format, source string) (transport.Encoding, error) {
	if f != transport.FormatFerry && f != transport.FormatCloudEvents {
		return transport.Encoding{}, fmt.Errorf("kafka: Format %d is not a header format: use transport.FormatFerry or transport.FormatCloudEvents", int(f))
	}
	return transport.Encoding{Format: f, CEPrefix: CEPrefix, Source: source}, nil
}
