package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/ferry-dev/ferry/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed: database down, nothing matched, ...
	exitUsage   = 2 // bad flags or arguments, or a bad config
)

// A command is one of ferry's subcommands.
type command struct {
	// name is what follows "ferry" on the command line.
	name string
	// args is the synopsis of the arguments, shown after "ferry NAME" in
	// usage messages, e.g. "--config FILE [--migrate] [--wait D]".
	args string
	// summary is the one line the list of commands shows.
	summary string
	// help, if set, is shown by "ferry NAME -h" between the synopsis and
	// the flags: what the command does, in a few sentences.
	help string
	// run runs the command with the arguments after its name. It parses
	// them with c.flags and c.parse, writes its output to c.stdout and
	// returns nil on success. Errors decide the exit code: see cli.exit.
	run func(ctx context.Context, c *cli, args []string) error
}

// cli is what a command runs with.
type cli struct {
	cmd    command
	stdout io.Writer
	stderr io.Writer
}

// run runs ferry with args (the program name left out) and returns the
// exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	cmds := commands()
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.name
		}
		msg := fmt.Sprintf("ferry: unknown command %q", args[0])
		if s := closest(args[0], names); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		fmt.Fprintln(stderr, msg)
		fmt.Fprintln(stderr)
		usage(stderr)
		return exitUsage
	}
	c := &cli{cmd: cmds[i], stdout: stdout, stderr: stderr}
	return c.exit(c.cmd.run(ctx, c, args[1:]))
}

// usage prints the list of commands.
func usage(w io.Writer) {
	fmt.Fprintln(w, "ferry moves messages from a transactional outbox to where they belong.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: ferry COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'ferry COMMAND -h' for a command's flags.")
	fmt.Fprintln(w, "Commands that need the database take --db URL, or --config FILE, or the environment variable FERRY_DATABASE_URL.")
}

// flags returns an empty flag set for the command, whose -h prints the
// command's usage.
func (c *cli) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("ferry "+c.cmd.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: ferry %s %s\n", c.cmd.name, c.cmd.args)
		if c.cmd.help != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.cmd.help))
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args with fs, allowing flags after positional arguments
// ("ferry config check FILE --x"), and returns the positional arguments.
// "--" ends the flags.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			// fs has printed the error and the usage.
			return nil, errUsagePrinted
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// noArgs returns a usage error if args is not empty.
func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

var (
	// errHelp is returned by parse for -h: the usage is printed, exit 0.
	errHelp = errors.New("help requested")
	// errUsagePrinted is a usage error already explained by the flag
	// package.
	errUsagePrinted = errors.New("usage error")
)

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError ends a command with code, printing msg if it is set (else
// the message has been printed already).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// exit prints err for a person and returns the exit code it calls for.
func (c *cli) exit(err error) int {
	var (
		usage   *usageError
		problem *config.Error
		exit    *exitError
	)
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsagePrinted):
		return exitUsage
	case errors.As(err, &exit):
		if exit.msg != "" {
			fmt.Fprintf(c.stderr, "ferry %s: %s\n", c.cmd.name, exit.msg)
		}
		return exit.code
	case errors.As(err, &usage):
		fmt.Fprintf(c.stderr, "ferry %s: %s\nRun 'ferry %s -h' for usage.\n", c.cmd.name, usage.msg, c.cmd.name)
		return exitUsage
	case errors.As(err, &problem):
		printProblems(c.stderr, problem)
		return exitUsage
	default:
		fmt.Fprintf(c.stderr, "ferry %s: %v\n", c.cmd.name, err)
		return exitFailure
	}
}

// printProblems prints a config's problems, one per line, and how many.
func printProblems(w io.Writer, e *config.Error) {
	for _, p := range e.Problems {
		fmt.Fprintln(w, p)
	}
	file := ""
	if len(e.Problems) > 0 {
		file = e.Problems[0].Pos.File + ": "
	}
	n := len(e.Problems)
	fmt.Fprintf(w, "%s%d %s\n", file, n, plural(n, "problem", "problems"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// closest returns the name most like s, if it is close enough to be a
// typo.
func closest(s string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// loadConfig loads a config file. A file that cannot be read is a usage
// error, like a file with problems.
func loadConsumeConfig(path string) (*config.ConsumeConfig, error) {
	cfg, err := config.LoadConsume(path)
	var problems *config.Error
	if err != nil && !errors.As(err, &problems) {
		return nil, &exitError{code: exitUsage, msg: fmt.Sprintf("cannot read the config file: %v", errors.Unwrap(err))}
	}
	return cfg, err
}

func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	var problems *config.Error
	if err != nil && !errors.As(err, &problems) {
		return nil, &exitError{code: exitUsage, msg: fmt.Sprintf("cannot read the config file: %v", errors.Unwrap(err))}
	}
	return cfg, err
}
