// Command ferry runs the relay of a ferry outbox and operates on the
// outbox: create its schema, inspect its lanes, list, retry and exclude
// messages.
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
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// commands returns ferry's commands, in the order the usage lists them.
//
// Adding a command is writing NAME.go with a function that returns its
// command (see command in cli.go) and adding a call to it here.
func commands() []command {
	return []command{
		relayCommand(),
		migrateCommand(),
		configCommand(),
		inspectCommand(),
		listCommand(),
		retryCommand(),
		excludeCommand(),
		demoCommand(),
		benchCommand(),
	}
}
