package config

import (
	"slices"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/local"
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
}

// transportTypes returns the transport types a config may name.
func transportTypes() map[string]transportType {
	return map[string]transportType{
		"stdout":  {check: stdoutType, sink: true},
		"discard": {check: discardType, sink: true},
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
