// Command ferry runs the relay of a ferry outbox and operates on the
// outbox: create its schema, inspect its lanes, list, retry and exclude
// messages, pause and resume lanes.
//
// Run `ferry` without arguments for the list of commands, and
// `ferry COMMAND -h` for one command's flags.
//
// Exit codes: 0 success, 1 a runtime failure (database unreachable, no
// message matched), 2 a usage or config error.
package main

import (
	"context"
	"os"
	"runtime/debug"
)

func main() {
	// The relay keeps little alive (the messages in flight) and allocates
	// a lot per message, so with Go's default GOGC=100 the collector runs
	// all the time on a small heap: measured, a quarter of the relay's
	// CPU. Four times the live heap is still small and gives that CPU back
	// to delivery (about +15% to NATS). GOGC in the environment wins.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(400)
	}
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// commands returns ferry's commands, in the order the usage lists them.
//
// Adding a command is writing NAME.go with a function that returns its
// command (see command in cli.go) and adding a call to it here.
func commands() []command {
	return []command{
		relayCommand(),
		consumeCommand(),
		jobsCommand(),
		migrateCommand(),
		configCommand(),
		inspectCommand(),
		listCommand(),
		retryCommand(),
		excludeCommand(),
		pauseCommand(),
		resumeCommand(),
		dlqCommand(),
		demoCommand(),
		benchCommand(),
	}
}
