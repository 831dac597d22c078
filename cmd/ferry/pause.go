package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/config"
)

func pauseCommand() command {
	return command{
		name:    "pause",
		args:    "[--db URL | --config FILE] LANE...",
		summary: "stop delivering a lane's messages until it is resumed",
		help: `Pauses lanes: every relay serving them, in any process, starts no new
deliveries of them within about a second; deliveries in flight finish, and
new messages are kept WAITING. The pause is kept in the database, so it
lasts across relay restarts until 'ferry resume'. 'ferry inspect' shows
paused lanes.`,
		run: runPause,
	}
}

func resumeCommand() command {
	return command{
		name:    "resume",
		args:    "[--db URL | --config FILE] LANE...",
		summary: "deliver a paused lane's messages again",
		help: `Resumes lanes paused with 'ferry pause': the relays serving them deliver
their messages again within about a second.`,
		run: runResume,
	}
}

func runPause(ctx context.Context, c *cli, args []string) error {
	db, cfg, st, lanes, err := openForLanes(ctx, c, args, "pause")
	if err != nil {
		return err
	}
	defer st.Close()
	before, err := st.Paused(ctx)
	if err != nil {
		return db.explain(err)
	}
	for _, lane := range lanes {
		if slices.Contains(before, lane) {
			fmt.Fprintf(c.stdout, "lane %s was already paused\n", lane)
			continue
		}
		if err := st.Pause(ctx, lane); err != nil {
			return db.explain(err)
		}
		fmt.Fprintf(c.stdout, "paused lane %s: relays start no new deliveries of it within about a second; those in flight finish\n", lane)
	}
	fmt.Fprintf(c.stdout, "resume with: ferry resume%s %s\n", prefixSpace(db.flags), quoteArgs(lanes))
	warnUnknownLanes(ctx, c, st, cfg, lanes)
	return nil
}

func runResume(ctx context.Context, c *cli, args []string) error {
	db, _, st, lanes, err := openForLanes(ctx, c, args, "resume")
	if err != nil {
		return err
	}
	defer st.Close()
	before, err := st.Paused(ctx)
	if err != nil {
		return db.explain(err)
	}
	for _, lane := range lanes {
		if !slices.Contains(before, lane) {
			fmt.Fprintf(c.stdout, "lane %s was not paused\n", lane)
			continue
		}
		if err := st.Resume(ctx, lane); err != nil {
			return db.explain(err)
		}
		fmt.Fprintf(c.stdout, "resumed lane %s: relays deliver it again within about a second\n", lane)
	}
	return nil
}

// openForLanes parses the command line of pause and resume and opens the
// database.
func openForLanes(ctx context.Context, c *cli, args []string, verb string) (database, *config.Config, ferry.Store, []string, error) {
	fs := c.flags()
	var dbf dbFlags
	dbf.register(fs)
	lanes, err := c.parse(fs, args)
	if err != nil {
		return database{}, nil, nil, nil, err
	}
	if len(lanes) == 0 {
		return database{}, nil, nil, nil, usagef("which lanes? name them: ferry %s --db URL LANE... ('ferry inspect' lists the lanes)", verb)
	}
	for _, l := range lanes {
		if l == "" || len(l) > ferry.MaxNameLen || !utf8.ValidString(l) {
			return database{}, nil, nil, nil, usagef("lane %q is not a lane name: lanes are 1 to %d bytes of UTF-8", l, ferry.MaxNameLen)
		}
	}
	db, cfg, st, err := dbf.openNow(ctx)
	if err != nil {
		return database{}, nil, nil, nil, err
	}
	return db, cfg, st, slices.Compact(slices.Clone(lanes)), nil
}

// warnUnknownLanes warns about lanes that have no messages and are not in
// the config: most likely a typo, which would pause nothing.
func warnUnknownLanes(ctx context.Context, c *cli, st ferry.Store, cfg *config.Config, lanes []string) {
	stats, err := st.Stats(ctx)
	if err != nil {
		return // the pause is done; this is only a hint
	}
	var known []string
	for _, s := range stats {
		if s.Waiting+s.Failed+s.LastMinute > 0 {
			known = append(known, s.Lane)
		}
	}
	if cfg != nil {
		known = append(known, cfg.LaneNames()...)
	}
	for _, l := range lanes {
		if slices.Contains(known, l) {
			continue
		}
		msg := fmt.Sprintf("warning: lane %s has no messages", l)
		if cfg != nil {
			msg += " and is not in " + cfg.File
		}
		if s := closest(l, known); s != "" {
			msg += fmt.Sprintf("; did you mean %s?", s)
		}
		fmt.Fprintln(c.stderr, msg)
	}
}

// quoteArgs quotes each of args for a shell and joins them.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = quoteArg(a)
	}
	return strings.Join(q, " ")
}
