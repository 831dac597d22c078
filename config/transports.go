package config

import (
	"log/slog"
	"slices"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/amqp"
	"github.com/ferry-dev/ferry/transport/local"
	"github.com/ferry-dev/ferry/transport/redis"
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
	// sink is true for the local types that take every message whatever
	// its route's destination: a route to one may not name a destination.
	sink bool
}

// builder makes a transport of a checked config.
type builder func(env buildEnv) (built, error)

// built is a transport ready for routes: a publisher (brokers), or a
// destination that takes every message (sinks).
type built struct {
	publisher transport.Publisher
	sink      ferry.Destination
}

// route returns the destination of a route to t with target.
func (t built) route(target transport.Target) ferry.Destination {
	if t.sink != nil {
		return t.sink
	}
	return transport.Destination(t.publisher, target)
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
		"amqp":    {check: amqpType},
		"redis":   {check: redisType},
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

// published wraps a publisher and its error as a built transport.
func published(p transport.Publisher, err error) (built, error) {
	if err != nil {
		return built{}, err
	}
	return built{publisher: p}, nil
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
func amqpType(m *mapping) builder {
	url := m.text("url")
	if !m.has("url") {
		m.missing("url", "the RabbitMQ server, such as amqp://guest:guest@localhost:5672/")
	}
	o := amqp.PublisherOptions{
		RoutingKey: m.text("routing_key"),
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
	return func(env buildEnv) (built, error) {
		o.Logger = env.logger
		return published(amqp.NewPublisher(url, o))
	}
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
	return func(env buildEnv) (built, error) {
		o.Logger = env.logger
		return published(redis.NewPublisher(o))
	}
}
