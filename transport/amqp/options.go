package amqp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferry-dev/ferry/transport"
)

// The kinds of exchange RabbitMQ has built in. Plugins add kinds whose
// names start with "x-" (x-consistent-hash, x-delayed-message), which an
// Exchange may name too.
const (
	KindDirect  = "direct"
	KindTopic   = "topic"
	KindFanout  = "fanout"
	KindHeaders = "headers"
)

// Exchange describes an exchange that a Publisher or Subscriber declares
// each time it connects, so that a route works on an empty broker.
// Declaring an exchange that exists with other settings fails (the broker
// answers 406 PRECONDITION_FAILED); the error is logged and the existing
// exchange is used as it is. A kind the broker does not know (a plugin
// not enabled) closes the whole connection: that exchange is logged and
// not declared again.
type Exchange struct {
	// Name names the exchange. Required; at most 255 bytes. Names that
	// start with "amq." are the broker's own and cannot be declared.
	Name string
	// Kind is direct, topic (default), fanout, headers, or a plugin's
	// x- kind.
	Kind string
	// Transient declares the exchange non-durable: it is gone after the
	// broker restarts. The default is durable, as the messages are.
	Transient bool
	// AutoDelete lets the broker delete the exchange once its last queue
	// is unbound from it.
	AutoDelete bool
	// Arguments are the declaration's optional arguments, such as
	// "alternate-exchange" (where unroutable messages go instead of
	// being returned).
	Arguments amqp091.Table
}

func (e Exchange) kind() string {
	if e.Kind == "" {
		return KindTopic
	}
	return e.Kind
}

func (e Exchange) validate() error {
	if err := checkName("exchange", e.Name); err != nil {
		return fmt.Errorf("Exchanges: %w", err)
	}
	if strings.HasPrefix(e.Name, "amq.") {
		return fmt.Errorf("Exchanges: exchange %q: names starting with amq. are the broker's own and cannot be declared; publish to it without listing it", e.Name)
	}
	switch k := e.kind(); {
	case k == KindDirect, k == KindTopic, k == KindFanout, k == KindHeaders, strings.HasPrefix(k, "x-"):
	default:
		return fmt.Errorf("Exchanges: exchange %q: unknown kind %q: use direct, topic, fanout, headers or a plugin's x- kind", e.Name, e.Kind)
	}
	if err := e.Arguments.Validate(); err != nil {
		return fmt.Errorf("Exchanges: exchange %q: Arguments: %w", e.Name, err)
	}
	return nil
}

func (e Exchange) declare(ch *amqp091.Channel) error {
	return ch.ExchangeDeclare(e.Name, e.kind(), !e.Transient, e.AutoDelete, false, false, e.Arguments)
}

func validateExchanges(exchanges []Exchange) error {
	seen := make(map[string]bool, len(exchanges))
	for _, e := range exchanges {
		if err := e.validate(); err != nil {
			return err
		}
		if seen[e.Name] {
			return fmt.Errorf("Exchanges: exchange %q is listed twice", e.Name)
		}
		seen[e.Name] = true
	}
	return nil
}

// ConnOptions are the connection settings that publishers and
// subscribers share. Credentials, the virtual host, TLS (amqps://) and
// the heartbeat can also be given in the URL.
type ConnOptions struct {
	// Name is the connection's name, shown by the management UI and
	// rabbitmqctl list_connections. Default "ferry-publisher" or
	// "ferry-subscriber".
	Name string
	// DialTimeout bounds connecting and the AMQP handshake. Default 5s.
	DialTimeout time.Duration
	// Heartbeat is the interval of the heartbeats that find a broker
	// gone silent without closing the connection; a heartbeat in the URL
	// takes precedence. Default 10s.
	Heartbeat time.Duration
	// MinReconnectDelay and MaxReconnectDelay bound the pause between
	// attempts to connect while the broker is away: it starts at the
	// first and doubles up to the second. Defaults 100ms and 5s. The
	// attempts never stop: a relay outlives its broker's restarts.
	MinReconnectDelay time.Duration
	MaxReconnectDelay time.Duration
	// TLS configures the TLS of amqps:// URLs: the certificate
	// authorities to trust, a client certificate. nil trusts the system's
	// authorities. Setting it for an amqp:// URL is an error, rather than
	// a connection without TLS.
	TLS *tls.Config
	// Logger receives connection events (lost, restored) and errors that
	// no call returns. Default slog.Default().
	Logger *slog.Logger
}

func (o ConnOptions) withDefaults(name string) ConnOptions {
	if o.Name == "" {
		o.Name = name
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = defaultHeartbeat
	}
	if o.MinReconnectDelay == 0 {
		o.MinReconnectDelay = defaultMinReconnectDelay
	}
	if o.MaxReconnectDelay == 0 {
		o.MaxReconnectDelay = max(defaultMaxReconnectDelay, o.MinReconnectDelay)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func (o ConnOptions) validate() error {
	switch {
	case o.DialTimeout < 0, o.Heartbeat < 0, o.MinReconnectDelay < 0, o.MaxReconnectDelay < 0:
		return errors.New("DialTimeout, Heartbeat, MinReconnectDelay and MaxReconnectDelay cannot be negative (zero takes the default)")
	case o.MaxReconnectDelay < o.MinReconnectDelay:
		return fmt.Errorf("MaxReconnectDelay (%s) is shorter than MinReconnectDelay (%s)", o.MaxReconnectDelay, o.MinReconnectDelay)
	}
	return nil
}

func (o ConnOptions) dial(rawURL string, setup func(*amqp091.Connection) error) dialOptions {
	return dialOptions{
		url:         rawURL,
		name:        o.Name,
		dialTimeout: o.DialTimeout,
		heartbeat:   o.Heartbeat,
		minDelay:    o.MinReconnectDelay,
		maxDelay:    o.MaxReconnectDelay,
		log:         o.Logger.With("transport", "amqp", "conn", o.Name),
		tls:         o.TLS,
		setup:       setup,
	}
}

// checkURL parses an AMQP URL as the client will, so that a typo fails
// at construction rather than at each reconnection attempt, and checks
// that TLS settings go with an amqps:// URL.
func checkURL(u string, tlsConfig *tls.Config) error {
	if strings.TrimSpace(u) == "" {
		return errors.New("the broker URL is empty: give one such as amqp://guest:guest@127.0.0.1:5672/")
	}
	uri, err := amqp091.ParseURI(u)
	if err != nil {
		return fmt.Errorf("broker URL %q: %w (the form is amqp://user:password@host:port/vhost; percent-encode reserved characters in the password)", redactRaw(u), err)
	}
	if tlsConfig != nil && uri.Scheme != "amqps" {
		return fmt.Errorf("broker URL %q has TLS settings but is not amqps://: use amqps:// (port 5671 by default) to connect with TLS", redactRaw(u))
	}
	return nil
}

// redactRaw hides the password of a URL that may not parse.
func redactRaw(u string) string {
	if p, err := url.Parse(u); err == nil {
		return redact(p.String())
	}
	if at := strings.LastIndexByte(u, '@'); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			return u[:scheme+3] + "xxxxx" + u[at:]
		}
	}
	return u
}

// PublisherOptions configure a Publisher. The zero value is ready to use.
type PublisherOptions struct {
	ConnOptions
	// Exchanges are declared each time the publisher connects. Empty
	// leaves exchanges to whoever runs the broker; publishing to one that
	// does not exist is refused (*transport.RejectedError).
	Exchanges []Exchange
	// RoutingKey is the template of each message's routing key: text with
	// the placeholders {topic}, {key} and {type}, replaced by the
	// message's fields. Default "{topic}". "{type}" routes by event type
	// ("OrderPlaced"), "orders.{type}" builds a dotted key for a topic
	// exchange, and text without placeholders gives every message the
	// same key.
	RoutingKey string
	// Format is how the message's fields are written in the headers
	// table: transport.FormatFerry (default) or
	// transport.FormatCloudEvents (binary mode, "cloudEvents:" prefix).
	Format transport.Format
	// Source is the CloudEvents source attribute; default "ferry".
	Source string
	// Channels is how many channels, in confirm mode, concurrent Publish
	// calls share. Each channel pipelines its messages: many are on the
	// wire while their confirms come back. Default 2.
	Channels int
	// CloseTimeout bounds how long Close waits for the confirms of
	// messages in flight before it closes the connection (their Publish
	// calls then fail, and the relay publishes them again). Default 10s.
	CloseTimeout time.Duration
}

func (o PublisherOptions) withDefaults() PublisherOptions {
	o.ConnOptions = o.ConnOptions.withDefaults("ferry-publisher")
	if o.RoutingKey == "" {
		o.RoutingKey = "{topic}"
	}
	if o.Channels == 0 {
		o.Channels = 2
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 10 * time.Second
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
	case o.Channels < 0 || o.Channels > 64:
		return fmt.Errorf("Channels is %d: use 1 to 64 (zero means 2)", o.Channels)
	case o.CloseTimeout < 0:
		return fmt.Errorf("CloseTimeout is %s: it cannot be negative (zero means 10s)", o.CloseTimeout)
	}
	if err := routingKey(o.RoutingKey).validate(); err != nil {
		return err
	}
	return validateExchanges(o.Exchanges)
}

// The queue types a Subscriber can declare.
const (
	QueueClassic = "classic"
	QueueQuorum  = "quorum"
)

// SubscriberOptions configure a Subscriber. The zero value is ready to
// use.
type SubscriberOptions struct {
	ConnOptions
	// Exchanges are declared each time the subscriber connects, as
	// PublisherOptions.Exchanges. The source exchange of a subscription
	// must exist; listing it here makes sure it does.
	Exchanges []Exchange
	// Queue is the template of a group's queue name, with the
	// placeholders {source} (the exchange) and {group}. Default
	// "{source}.{group}". The queue is durable and declared, and bound to
	// the exchange, by each subscription.
	Queue string
	// BindingKeys bind the group's queue to the exchange. Default "#",
	// which on a topic exchange matches every routing key; fanout and
	// headers exchanges ignore the key. A direct exchange routes only the
	// keys listed here.
	BindingKeys []string
	// BindingArguments go with each binding: the x-match and header
	// values of a headers exchange.
	BindingArguments amqp091.Table
	// QueueType is QueueClassic (default) or QueueQuorum, the replicated
	// queue type RabbitMQ recommends for data safety. It is fixed when the
	// queue is first declared; declaring it again with another type fails.
	QueueType string
	// DeadLetterExchange and DeadLetterRoutingKey set where the broker
	// moves messages that expire or that a quorum queue gives up on after
	// its delivery limit (x-dead-letter-exchange, x-dead-letter-routing-key).
	// Empty: no dead-lettering.
	DeadLetterExchange   string
	DeadLetterRoutingKey string
	// QueueArguments are further queue arguments (x-max-length,
	// x-expires, x-delivery-limit, ...). Those above take precedence.
	QueueArguments amqp091.Table
	// Prefetch is how many deliveries the broker sends a subscription
	// before it waits for acknowledgements (basic.qos). Default 64.
	Prefetch int
}

func (o SubscriberOptions) withDefaults() SubscriberOptions {
	o.ConnOptions = o.ConnOptions.withDefaults("ferry-subscriber")
	if o.Queue == "" {
		o.Queue = "{source}.{group}"
	}
	if len(o.BindingKeys) == 0 {
		o.BindingKeys = []string{"#"}
	}
	if o.QueueType == "" {
		o.QueueType = QueueClassic
	}
	if o.Prefetch == 0 {
		o.Prefetch = 64
	}
	return o
}

func (o SubscriberOptions) validate() error {
	if err := o.ConnOptions.validate(); err != nil {
		return err
	}
	switch {
	case o.QueueType != QueueClassic && o.QueueType != QueueQuorum:
		return fmt.Errorf("unknown QueueType %q: use %q or %q", o.QueueType, QueueClassic, QueueQuorum)
	case o.Prefetch < 0 || o.Prefetch > 65535:
		return fmt.Errorf("Prefetch is %d: use 1 to 65535 (zero means 64)", o.Prefetch)
	case o.DeadLetterRoutingKey != "" && o.DeadLetterExchange == "":
		return errors.New("DeadLetterRoutingKey is set without DeadLetterExchange: name the exchange dead letters go to")
	}
	if rest := strings.NewReplacer("{source}", "", "{group}", "").Replace(o.Queue); strings.ContainsAny(rest, "{}") {
		return fmt.Errorf("Queue %q: unknown placeholder: the placeholders are {source} and {group}", o.Queue)
	}
	for _, k := range o.BindingKeys {
		if len(k) > maxShortstr {
			return fmt.Errorf("BindingKeys: %.40q... is over AMQP's limit of %d bytes", k, maxShortstr)
		}
	}
	if o.DeadLetterExchange != "" {
		if err := checkName("DeadLetterExchange", o.DeadLetterExchange); err != nil {
			return err
		}
	}
	if err := o.QueueArguments.Validate(); err != nil {
		return fmt.Errorf("QueueArguments: %w", err)
	}
	if err := o.BindingArguments.Validate(); err != nil {
		return fmt.Errorf("BindingArguments: %w", err)
	}
	return validateExchanges(o.Exchanges)
}

// queueArguments returns the arguments a group's queue is declared with.
func (o SubscriberOptions) queueArguments() amqp091.Table {
	args := make(amqp091.Table, len(o.QueueArguments)+3)
	for k, v := range o.QueueArguments {
		args[k] = v
	}
	if o.QueueType == QueueQuorum {
		args[amqp091.QueueTypeArg] = amqp091.QueueTypeQuorum
	}
	if o.DeadLetterExchange != "" {
		args["x-dead-letter-exchange"] = o.DeadLetterExchange
		if o.DeadLetterRoutingKey != "" {
			args["x-dead-letter-routing-key"] = o.DeadLetterRoutingKey
		}
	}
	return args
}

// declarer declares a publisher's or subscriber's exchanges on each new
// connection.
type declarer struct {
	exchanges []Exchange

	mu sync.Mutex
	// skip holds the exchanges whose declaration made the broker close
	// the whole connection (an unknown plugin kind is 503
	// COMMAND_INVALID): declaring them again would close every connection
	// at once.
	skip map[string]bool
}

// declare declares the exchanges on channels of conn (a channel error
// closes the channel, so each failure costs a new one). It returns the
// names of those declared and the errors of the others.
func (d *declarer) declare(conn *amqp091.Connection) ([]string, error) {
	var declared []string
	var errs []error
	var ch *amqp091.Channel
	defer func() {
		if ch != nil && !ch.IsClosed() {
			ch.Close()
		}
	}()
	for _, e := range d.exchanges {
		d.mu.Lock()
		skip := d.skip[e.Name]
		d.mu.Unlock()
		if skip {
			continue
		}
		if ch == nil || ch.IsClosed() {
			var err error
			if ch, err = conn.Channel(); err != nil {
				return declared, errors.Join(append(errs, err)...)
			}
		}
		err := e.declare(ch)
		if err == nil {
			declared = append(declared, e.Name)
			continue
		}
		if conn.IsClosed() {
			d.mu.Lock()
			if d.skip == nil {
				d.skip = make(map[string]bool)
			}
			d.skip[e.Name] = true
			d.mu.Unlock()
			errs = append(errs, fmt.Errorf("declare exchange %q: the broker closed the connection: %w; it is not declared again", e.Name, err))
			return declared, errors.Join(errs...)
		}
		errs = append(errs, fmt.Errorf("declare exchange %q: %w", e.Name, err))
	}
	return declared, errors.Join(errs...)
}
