package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-dev/ferry"
)

func retryCommand() command {
	return command{
		name:    "retry",
		args:    "[--db URL | --config FILE] (--id ID | --seq N | --lane L | --topic T | --key K)... | --all",
		summary: "send FAILED messages again",
		help: `Moves FAILED messages back to WAITING, due now, with a fresh retry budget;
the relay delivers them again (a held key resumes in order). Choose the
messages with --id, --seq or filters, or all FAILED messages with --all.
Exits with 1 if no FAILED message matches.`,
		run: runRetry,
	}
}

func runRetry(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var (
		dbf dbFlags
		sel selection
	)
	dbf.register(fs)
	sel.register(fs, "retry", "FAILED")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	f, err := sel.filter("retry", "FAILED")
	if err != nil {
		return err
	}
	db, _, st, err := dbf.openNow(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.Retry(ctx, f)
	if err != nil {
		return db.explain(err)
	}
	if n == 0 {
		return noneMatched(ctx, c, st, &sel, db, "retry", []ferry.Status{ferry.StatusFailed})
	}
	fmt.Fprintf(c.stdout, "retried %d %s: they are WAITING again and the relay delivers them now\n", n, plural(n, "message", "messages"))
	return nil
}

// noneMatched reports that a selection changed nothing, and why if it can
// tell, and returns the exit error.
func noneMatched(ctx context.Context, c *cli, st ferry.Store, sel *selection, db database, verb string, states []ferry.Status) error {
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = string(s)
	}
	want := strings.Join(names, " or ")
	if sel.all {
		fmt.Fprintf(c.stderr, "ferry %s: there are no %s messages, so nothing changed\n", verb, want)
	} else {
		fmt.Fprintf(c.stderr, "ferry %s: no %s message matches %s, so nothing changed\n", verb, want, sel)
	}
	for _, line := range sel.explainNoMatch(ctx, st, want) {
		fmt.Fprintf(c.stderr, "  %s\n", line)
	}
	fmt.Fprintf(c.stderr, "see the %s messages with: ferry list%s --status %s\n", names[0], prefixSpace(db.flags), names[0])
	return &exitError{code: exitFailure}
}
