package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/amqp"
	"github.com/ferry-dev/ferry/transport/kafka"
	"github.com/ferry-dev/ferry/transport/local"
	natstransport "github.com/ferry-dev/ferry/transport/nats"
	"github.com/ferry-dev/ferry/transport/redis"
	"github.com/ferry-dev/ferry/transport/webhook"
	"github.com/nats-io/nats.go"
)

// A transportType checks the options of one transport of its type and
// returns how to build it. m holds the transport's keys; the type reads its
// own options with m's getters (m.text, m.positiveInt, m.duration, ...),
// which record any problem with its position, and every key it does not
// read is reported as unknown. The builder runs only once the whole config
// is free of problems, so a config check never connects to a broker.
//
// Adding a transport type is writing one such function and adding it to
// transportTypes.
type transportType struct {
	check func(m *mapping) builder
	// route reads the settings a route to a transport of this type may
	// have besides topic, to and destination, from the route's mapping;
	// nil when routes to this type have none.
	route func(m *mapping) routeBuilder
	// sink is true for the local types that take every message whatever
	// its route's destination: a route to one may not name a destination.
	sink bool
}

// builder makes a transport of a checked config.
type builder func(env buildEnv) (built, error)

// routeBuilder makes the publisher of one route with its own settings
// from the publisher of its transport.
type routeBuilder func(transport.Publisher) (transport.Publisher, error)

// built is a transport ready for routes: a publisher (brokers), or a
// destination that takes every message (sinks).
type built struct {
	publisher transport.Publisher
	sink      ferry.Destination
	// subscriber makes a subscriber to the same broker, for `ferry
	// consume`; nil for transports that cannot be read from.
	subscriber func() (transport.Subscriber, error)
}

// route returns the destination of a route to t with target and its own
// settings, if any.
func (t built) route(target transport.Target, settings routeBuilder) (ferry.Destination, error) {
	if t.sink != nil {
		return t.sink, nil
	}
	p := t.publisher
	if settings != nil {
		var err error
		if p, err = settings(p); err != nil {
			return nil, err
		}
	}
	return transport.Destination(p, target), nil
}

// buildEnv is what builders may use.
type buildEnv struct {
	// stdout is the one sink writing to the relay's standard output,
	// shared so that lines never interleave.
	stdout ferry.Destination
	// logger receives the transports' logs.
	logger *slog.Logger
}

// transportTypes returns the transport types a config may name.
func transportTypes() map[string]transportType {
	return map[string]transportType{
		"stdout":  {check: stdoutType, sink: true},
		"discard": {check: discardType, sink: true},
		"amqp":    {check: amqpType, route: amqpRoute},
		"redis":   {check: redisType, route: redisRoute},
		"kafka":   {check: kafkaType},
		"nats":    {check: natsType},
		"webhook": {check: webhookType, route: webhookRoute},
	}
}

// transportTypeNames returns the names of the transport types, sorted.
func transportTypeNames() []string {
	var names []string
	for name := range transportTypes() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// stdoutType writes one JSON line per message to standard output (see
// local.NewWriter). It has no options.
func stdoutType(*mapping) builder {
	return func(env buildEnv) (built, error) { return built{sink: env.stdout}, nil }
}

// discardType accepts and drops every message. It has no options.
func discardType(*mapping) builder {
	return func(buildEnv) (built, error) { return built{sink: local.Discard}, nil }
}

// published wraps a publisher and its error as a built transport that
// subscribe reads from (nil: it cannot be read from).
func published(p transport.Publisher, err error, subscribe func() (transport.Subscriber, error)) (built, error) {
	if err != nil {
		return built{}, err
	}
	return built{publisher: p, subscriber: subscribe}, nil
}

// subscriber adapts a constructor's result to transport.Subscriber.
func subscriber[S transport.Subscriber](s S, err error) (transport.Subscriber, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// amqpType publishes to RabbitMQ (see transport/amqp):
//
//	bus:
//	  type: amqp
//	  url: amqp://guest:${RABBIT_PASSWORD}@localhost:5672/
//	  routing_key: "{topic}"            # or "{key}", "{type}", "orders.{type}"
//	  exchanges:                        # declared at connect; optional
//	    - {name: orders, kind: topic}   # direct | topic | fanout | headers; transient, auto_delete
//	  format: ferry                     # or cloudevents
//	  source: ferry                     # the CloudEvents source
//	  channels: 2
//	  tls: {ca_file: ca.pem}            # amqps:// only; see kafka for every key
func amqpType(m *mapping) builder {
	url := m.text("url")
	if !m.has("url") {
		m.missing("url", "the RabbitMQ server, such as amqp://guest:guest@localhost:5672/")
	}
	o := amqp.PublisherOptions{
		RoutingKey: m.routingKey(),
		Format:     m.format(),
		Source:     m.text("source"),
		Channels:   m.positiveInt("channels"),
	}
	for _, x := range m.items("exchanges") {
		e := amqp.Exchange{Name: x.text("name"), Kind: x.oneOf("kind", "topic", "direct", "topic", "fanout", "headers"),
			Transient: x.boolean("transient"), AutoDelete: x.boolean("auto_delete")}
		if e.Name == "" {
			x.missing("name", "the exchange's name")
		}
		x.done()
		o.Exchanges = append(o.Exchanges, e)
	}
	if e, ok := m.get("tls"); ok && !strings.HasPrefix(strings.ToLower(url), "amqps://") {
		m.p.addf(e.key, m.join("tls"), "TLS settings need an amqps:// url (port 5671 by default); with amqp:// the connection would not use TLS")
	}
	tlsConfig := m.tls()
	return func(env buildEnv) (built, error) {
		var err error
		if o.TLS, err = tlsConfig(); err != nil {
			return built{}, err
		}
		o.Logger = env.logger
		p, err := amqp.NewPublisher(url, o)
		return published(p, err, func() (transport.Subscriber, error) {
			so := amqp.SubscriberOptions{ConnOptions: o.ConnOptions, Exchanges: o.Exchanges}
			return subscriber(amqp.NewSubscriber(url, so))
		})
	}
}

// amqpRoute reads the settings of a route to RabbitMQ:
//
//	routes:
//	  - {topic: "orders.*", to: bus, destination: orders, routing_key: "{key}"}
func amqpRoute(m *mapping) routeBuilder {
	o := amqp.RouteOptions{RoutingKey: m.routingKey()}
	if o == (amqp.RouteOptions{}) {
		return nil
	}
	return func(p transport.Publisher) (transport.Publisher, error) { return p.(*amqp.Publisher).Route(o) }
}

// routingKey reads an AMQP routing key template, routing_key.
func (m *mapping) routingKey() string {
	key, e, ok := m.scalar("routing_key")
	if !ok {
		return ""
	}
	if err := amqp.CheckRoutingKey(key); err != nil {
		m.p.addf(e.value, m.join("routing_key"), "%v", err)
	}
	return key
}

// redisType publishes to Redis (see transport/redis):
//
//	cache:
//	  type: redis
//	  url: redis://localhost:6379/0
//	  mode: streams          # durable; pubsub is lossy: a subscriber that is away misses messages
//	  max_len: 1000000       # trim streams to about this many entries (streams only)
//	  require_receivers: false   # pubsub: retry a message no subscriber received
//	  format: ferry          # or cloudevents
//	  tls: {ca_file: ca.pem} # connect with TLS (as rediss:// does); see kafka for every key
func redisType(m *mapping) builder {
	mode, _ := redis.ParseMode(m.oneOf("mode", "streams", "streams", "pubsub"))
	o := redis.PublisherOptions{
		Addr:             m.text("url"),
		Mode:             mode,
		MaxLen:           int64(m.positiveInt("max_len")),
		RequireReceivers: m.boolean("require_receivers"),
		Format:           m.format(),
		Source:           m.text("source"),
	}
	tlsConfig := m.tls()
	return func(env buildEnv) (built, error) {
		var err error
		if o.TLS, err = tlsConfig(); err != nil {
			return built{}, err
		}
		o.Logger = env.logger
		p, err := redis.NewPublisher(o)
		return published(p, err, func() (transport.Subscriber, error) {
			return subscriber(redis.NewSubscriber(redis.SubscriberOptions{Addr: o.Addr, Mode: o.Mode, TLS: o.TLS, Logger: o.Logger}))
		})
	}
}

// redisRoute reads the settings of a route to Redis:
//
//	routes:
//	  - {topic: "audit.*", to: cache, max_len: 10000000}   # streams only
func redisRoute(m *mapping) routeBuilder {
	o := redis.RouteOptions{MaxLen: int64(m.positiveInt("max_len"))}
	if o == (redis.RouteOptions{}) {
		return nil
	}
	return func(p transport.Publisher) (transport.Publisher, error) { return p.(*redis.Publisher).Route(o) }
}

// kafkaType publishes to Kafka (see transport/kafka):
//
//	events:
//	  type: kafka
//	  brokers: [kafka-1:9092, kafka-2:9092]   # or one string with commas: ${KAFKA_BROKERS}
//	  acks: all              # all (idempotent, the default) | leader
//	  compression: none      # none | gzip | snappy | lz4 | zstd
//	  linger: 0s             # wait this long to fill batches
//	  max_batch_bytes: 1000012
//	  client_id: ferry
//	  sasl: {mechanism: SCRAM-SHA-512, user: ferry, password: ${KAFKA_PASSWORD}}
//	  tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}
//	  format: ferry          # or cloudevents
func kafkaType(m *mapping) builder {
	o := kafka.PublisherOptions{
		Brokers:       m.list("brokers"),
		Linger:        m.duration("linger", 0),
		MaxBatchBytes: m.positiveInt("max_batch_bytes"),
		Compression:   kafka.Compression(m.oneOf("compression", "none", "none", "gzip", "snappy", "lz4", "zstd")),
		ClientID:      m.text("client_id"),
		Format:        m.format(),
		Source:        m.text("source"),
	}
	if !m.has("brokers") {
		m.missing("brokers", "the Kafka bootstrap servers, such as [localhost:9092]")
	}
	if m.oneOf("acks", "all", "all", "leader") == "leader" {
		o.Acks = kafka.AcksLeader
	}
	if m.has("sasl") {
		sm := m.sub("sasl")
		o.SASL = &kafka.SASL{Mechanism: sm.oneOf("mechanism", "PLAIN", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
			User: sm.text("user"), Password: sm.text("password")}
		if o.SASL.User == "" {
			sm.missing("user", "the SASL user name")
		}
		sm.done()
	}
	tlsConfig := m.tls()
	return func(env buildEnv) (built, error) {
		var err error
		if o.TLS, err = tlsConfig(); err != nil {
			return built{}, err
		}
		o.Logger = env.logger
		p, err := kafka.NewPublisher(o)
		return published(p, err, func() (transport.Subscriber, error) {
			return subscriber(kafka.NewSubscriber(kafka.SubscriberOptions{Brokers: o.Brokers, SASL: o.SASL, TLS: o.TLS, ClientID: o.ClientID, Logger: o.Logger}))
		})
	}
}

// tls reads a transport's tls section, {ca_file, cert_file, key_file,
// server_name, insecure_skip_verify}, and returns how to make its
// tls.Config: nil when the section is absent. The files must exist when
// the config is checked, and are read when the transport is built.
func (m *mapping) tls() func() (*tls.Config, error) {
	if !m.has("tls") {
		return func() (*tls.Config, error) { return nil, nil }
	}
	t := m.sub("tls")
	file := func(key string) string {
		name, e, ok := t.scalar(key)
		if !ok {
			return ""
		}
		if _, err := os.Stat(name); err != nil {
			t.p.addf(e.value, t.join(key), "cannot read %s: %v", name, err)
		}
		return name
	}
	ca, cert, key := file("ca_file"), file("cert_file"), file("key_file")
	if (cert == "") != (key == "") {
		t.p.addf(t.at, t.path, "cert_file and key_file go together: give both for a client certificate, or neither")
	}
	serverName := t.text("server_name")
	insecure := t.boolean("insecure_skip_verify")
	t.done()
	return func() (*tls.Config, error) {
		c := &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}
		if ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("tls.ca_file: %w", err)
			}
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", ca)
			}
		}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("tls: client certificate: %w", err)
			}
			c.Certificates = []tls.Certificate{pair}
		}
		return c, nil
	}
}

// natsType publishes to NATS JetStream (see transport/nats):
//
//	bus:
//	  type: nats
//	  url: nats://localhost:4222      # several servers: comma-separated
//	  creds_file: ferry.creds         # or user/password, or token
//	  streams:                        # created or updated at start; optional
//	    - name: ORDERS
//	      subjects: ["orders.>"]
//	      storage: file               # file | memory
//	      retention: limits           # limits | workqueue | interest
//	      max_age: 7d
//	      duplicates: 2m              # the window in which retries are dropped by message id
//	  max_pending: 4096               # messages awaiting their acks
//	  format: ferry                   # or cloudevents
//	  tls: {ca_file: ca.pem}          # see kafka for every key
func natsType(m *mapping) builder {
	url := m.text("url")
	if !m.has("url") {
		m.missing("url", "the NATS server, such as nats://localhost:4222")
	}
	o := natstransport.PublisherOptions{
		Format:     m.format(),
		Source:     m.text("source"),
		MaxPending: m.positiveInt("max_pending"),
	}
	for _, x := range m.items("streams") {
		st := natstransport.Stream{
			Name:       x.text("name"),
			Subjects:   x.list("subjects"),
			Storage:    natstransport.Storage(x.oneOf("storage", "file", "file", "memory")),
			Retention:  natstransport.Retention(x.oneOf("retention", "limits", "limits", "workqueue", "interest")),
			MaxAge:     x.duration("max_age", 0),
			MaxMsgs:    int64(x.positiveInt("max_msgs")),
			MaxBytes:   int64(x.positiveInt("max_bytes")),
			MaxMsgSize: int32(x.positiveInt("max_msg_size")),
			Duplicates: x.duration("duplicates", 0),
			Replicas:   x.positiveInt("replicas"),
		}
		if st.Name == "" {
			x.missing("name", "the stream's name, such as ORDERS")
		}
		if len(st.Subjects) == 0 {
			x.missing("subjects", `the subjects the stream stores, such as ["orders.>"]`)
		}
		x.done()
		o.Streams = append(o.Streams, st)
	}
	if f := m.text("creds_file"); f != "" {
		o.Client = append(o.Client, nats.UserCredentials(f))
	}
	if user := m.text("user"); user != "" {
		o.Client = append(o.Client, nats.UserInfo(user, m.text("password")))
	}
	if token := m.text("token"); token != "" {
		o.Client = append(o.Client, nats.Token(token))
	}
	tlsConfig := m.tls()
	return func(env buildEnv) (built, error) {
		c, err := tlsConfig()
		if err != nil {
			return built{}, err
		}
		if c != nil {
			o.Client = append(o.Client, nats.Secure(c))
		}
		o.Logger = env.logger
		p, err := natstransport.NewPublisher(url, o)
		return published(p, err, func() (transport.Subscriber, error) {
			so := natstransport.SubscriberOptions{ConnOptions: o.ConnOptions, Streams: o.Streams}
			return subscriber(natstransport.NewSubscriber(url, so))
		})
	}
}

// webhookType pushes messages to HTTP endpoints (see transport/webhook):
//
//	hooks:
//	  type: webhook
//	  base_url: https://partner.example/hooks/   # a route's destination is a path under it, or a full URL
//	  secret: ${WEBHOOK_SECRET}                  # signs each push (Ferry-Signature); or secrets: [new, old]
//	  timeout: 10s
//	  retry_status: [409]                        # besides 5xx, 408 and 429, which are always retried
//	  follow_redirects: false
//	  headers: {Authorization: "Bearer ${TOKEN}"}
//	  format: ferry                              # or cloudevents
//	  tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}   # a private CA, mutual TLS
func webhookType(m *mapping) builder {
	o := webhook.Options{
		BaseURL:         m.text("base_url"),
		Timeout:         m.duration("timeout", 0),
		FollowRedirects: m.boolean("follow_redirects"),
		Format:          m.format(),
		Source:          m.text("source"),
	}
	o.Secrets = m.secrets()
	if e, ok := m.get("retry_status"); ok {
		var extra []int
		for _, s := range m.list("retry_status") {
			code, err := strconv.Atoi(s)
			if err != nil || code < 300 || code > 599 {
				m.p.addf(e.value, m.join("retry_status"), "%q is not an HTTP status from 300 to 599", s)
				continue
			}
			extra = append(extra, code)
		}
		o.RetryStatus = func(status int) bool {
			return webhook.DefaultRetryStatus(status) || slices.Contains(extra, status)
		}
	}
	o.Header = m.header("headers")
	tlsConfig := m.tls()
	return func(env buildEnv) (built, error) {
		var err error
		if o.TLS, err = tlsConfig(); err != nil {
			return built{}, err
		}
		o.Logger = env.logger
		p, err := webhook.NewPublisher(o)
		return published(p, err, nil) // pushes come to ferry's receiver, not from a broker to read
	}
}

// webhookRoute reads the settings of a route to webhooks, for receivers
// that each want their own credentials:
//
//	routes:
//	  - topic: "partner.*"
//	    to: hooks
//	    destination: https://partner.example/ferry
//	    headers: {Authorization: "Bearer ${PARTNER_TOKEN}"}   # on top of the transport's
//	    secret: ${PARTNER_SECRET}                             # or secrets: [new, old]; replaces the transport's
//	    timeout: 30s
func webhookRoute(m *mapping) routeBuilder {
	o := webhook.RouteOptions{Header: m.header("headers"), Secrets: m.secrets(), Timeout: m.duration("timeout", 0)}
	if o.Header == nil && o.Secrets == nil && o.Timeout == 0 {
		return nil
	}
	return func(p transport.Publisher) (transport.Publisher, error) { return p.(*webhook.Publisher).Route(o) }
}

// header reads key as a mapping of HTTP header names to values; nil when
// key is absent.
func (m *mapping) header(key string) http.Header {
	if !m.has(key) {
		return nil
	}
	sub := m.sub(key)
	h := http.Header{}
	for _, name := range sub.keys {
		h.Set(name, sub.text(name))
	}
	sub.done()
	return h
}

// secrets reads a webhook signing secret, or a list of them (a rotation:
// the new one first); nil when neither is given.
func (m *mapping) secrets() [][]byte {
	var secrets [][]byte
	if secret := m.text("secret"); secret != "" {
		secrets = append(secrets, []byte(secret))
	}
	for _, secret := range m.list("secrets") {
		secrets = append(secrets, []byte(secret))
	}
	return secrets
}
