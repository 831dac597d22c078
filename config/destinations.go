package config

import (
	"slices"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport/local"
)

// A destinationType checks the options of one destination of its type and
// returns how to build it. m holds the destination's keys; the type reads
// its own options with m's getters (m.text, m.positiveInt, m.duration,
// ...), which record any problem with its position, and every key it does
// not read is reported as unknown. The builder runs only once the whole
// config is free of problems.
//
// Adding a destination type is writing one such function and adding it to
// destinationTypes. A broker type would look like:
//
//	func kafkaType(m *mapping) builder {
//		brokers := m.text("brokers")
//		if brokers == "" {
//			m.missing("brokers", "the Kafka bootstrap servers, such as localhost:9092")
//		}
//		return func(env buildEnv) (ferry.Destination, error) { return kafka.New(brokers) }
//	}
type destinationType func(m *mapping) builder

// builder makes a destination of a checked config.
type builder func(env buildEnv) (ferry.Destination, error)

// buildEnv is what builders may use.
type buildEnv struct {
	// stdout is the one destination writing to the relay's standard
	// output, shared so that lines never interleave.
	stdout ferry.Destination
}

// destinationTypes returns the destination types a config may name.
func destinationTypes() map[string]destinationType {
	return map[string]destinationType{
		"stdout":  stdoutType,
		"discard": discardType,
	}
}

// destinationTypeNames returns the names of the destination types, sorted.
func destinationTypeNames() []string {
	var names []string
	for name := range destinationTypes() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// stdoutType writes one JSON line per message to standard output (see
// local.NewWriter). It has no options.
func stdoutType(*mapping) builder {
	return func(env buildEnv) (ferry.Destination, error) { return env.stdout, nil }
}

// discardType accepts and drops every message. It has no options.
func discardType(*mapping) builder {
	return func(buildEnv) (ferry.Destination, error) { return local.Discard, nil }
}
