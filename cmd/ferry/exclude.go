package main

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry"
)

func excludeCommand() command {
	return command{
		name:    "exclude",
		args:    "[--db URL | --config FILE] [--waiting] (--id ID | --seq N | --lane L | --topic T | --key K)... | --all",
		summary: "give up on FAILED (or WAITING) messages",
		help: `Moves FAILED messages to EXCLUDED: they are kept, never delivered, and no
longer hold back the later messages of their key. With --waiting, WAITING
messages that match are excluded too. Choose the messages with --id, --seq
or filters, or all of them with --all. Exits with 1 if none matches.`,
		run: runExclude,
	}
}

func runExclude(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var (
		dbf dbFlags
		sel selection
	)
	dbf.register(fs)
	sel.register(fs, "exclude", "FAILED (with --waiting, FAILED and WAITING)")
	waiting := fs.Bool("waiting", false, "exclude WAITING messages too, not only FAILED ones")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	states := []ferry.Status{ferry.StatusFailed}
	if *waiting {
		states = append(states, ferry.StatusWaiting)
	}
	statesText := "FAILED"
	if *waiting {
		statesText = "FAILED and WAITING"
	}
	f, err := sel.filter("exclude", statesText)
	if err != nil {
		return err
	}
	db, _, st, err := dbf.openNow(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	counts := make([]int, len(states))
	total := 0
	for i, s := range states {
		f.Status = s
		n, err := st.Exclude(ctx, f)
		if err != nil {
			return db.explain(err)
		}
		counts[i], total = n, total+n
	}
	if total == 0 {
		return noneMatched(ctx, c, st, &sel, db, "exclude", states)
	}
	detail := ""
	if *waiting {
		detail = fmt.Sprintf(" (%d FAILED, %d WAITING)", counts[0], counts[1])
	}
	fmt.Fprintf(c.stdout, "excluded %d %s%s: they will not be delivered\n", total, plural(total, "message", "messages"), detail)
	return nil
}
