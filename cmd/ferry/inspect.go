package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"
)

func inspectCommand() command {
	return command{
		name:    "inspect",
		args:    "[--db URL | --config FILE] [--json]",
		summary: "show each lane's backlog, failures and throughput",
		help: `Shows one line per lane: WAITING messages; how long the oldest message that
is due has been waiting (the lane's delay); FAILED messages, which wait for
'ferry retry' or 'ferry exclude'; and how many became DONE in the last
minute. It reads only those rows, so it stays quick however many DONE
messages the retention keeps. A lane paused with 'ferry pause' is marked
(PAUSED): relays start none of its deliveries until 'ferry resume'. On
PostgreSQL a lane whose commits come so fast that relays poll it, and its
producers skip the notification that wakes them, is marked (POLLED).

With --config, the lanes of the config are shown even when empty, and lanes
that have messages but are not in the config are flagged: no relay with
that config serves them.`,
		run: runInspect,
	}
}

// laneReport is one lane in inspect's output.
type laneReport struct {
	Lane    string `json:"lane"`
	Waiting int    `json:"waiting"`
	// OldestDueSeconds is how long the oldest due WAITING message has been
	// due; absent if none is.
	OldestDueSeconds *float64   `json:"oldest_due_seconds,omitempty"`
	OldestDue        *time.Time `json:"oldest_due,omitempty"`
	Failed           int        `json:"failed"`
	DoneLastMinute   int        `json:"done_last_minute"`
	// Paused is set while the lane is paused (ferry pause).
	Paused bool `json:"paused"`
	// Polled is set while relays poll the lane (relay.Options.PollAbove).
	Polled bool `json:"polled,omitempty"`
	// Configured is set with --config: whether the config has the lane.
	Configured *bool `json:"configured,omitempty"`
}

func runInspect(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var dbf dbFlags
	dbf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	db, cfg, st, err := dbf.openNow(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	stats, err := st.Stats(ctx)
	if err != nil {
		return db.explain(err)
	}
	now := time.Now()
	var reports []laneReport
	for _, s := range stats {
		r := laneReport{Lane: s.Lane, Waiting: s.Waiting, Failed: s.Failed, DoneLastMinute: s.LastMinute, Paused: s.Paused, Polled: s.Polled}
		if !s.OldestDue.IsZero() {
			age := max(0, now.Sub(s.OldestDue)).Seconds()
			due := s.OldestDue.UTC()
			r.OldestDueSeconds, r.OldestDue = &age, &due
		}
		reports = append(reports, r)
	}
	var unserved []laneReport
	if cfg != nil {
		configured := cfg.LaneNames()
		for i := range reports {
			in := slices.Contains(configured, reports[i].Lane)
			reports[i].Configured = &in
			if !in && (reports[i].Waiting > 0 || reports[i].Failed > 0) {
				unserved = append(unserved, reports[i])
			}
		}
		for _, name := range configured {
			if !slices.ContainsFunc(reports, func(r laneReport) bool { return r.Lane == name }) {
				yes := true
				reports = append(reports, laneReport{Lane: name, Configured: &yes})
			}
		}
		slices.SortStableFunc(reports, func(a, b laneReport) int {
			switch {
			case a.Lane < b.Lane:
				return -1
			case a.Lane > b.Lane:
				return 1
			}
			return 0
		})
	}
	if *asJSON {
		if reports == nil {
			reports = []laneReport{}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	if len(reports) == 0 {
		fmt.Fprintf(c.stdout, "the outbox %s is empty\n", db)
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LANE\tWAITING\tOLDEST DUE\tFAILED\tDONE/MIN\t")
	for _, r := range reports {
		age := "-"
		if r.OldestDueSeconds != nil {
			age = humanDuration(time.Duration(*r.OldestDueSeconds * float64(time.Second)))
		}
		lane := r.Lane
		if r.Paused {
			lane += " (PAUSED)"
		}
		if r.Polled {
			lane += " (POLLED)"
		}
		if r.Configured != nil && !*r.Configured {
			lane += " (not in config)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t\n", lane, r.Waiting, age, r.Failed, r.DoneLastMinute)
	}
	tw.Flush()
	for _, r := range unserved {
		fmt.Fprintf(c.stdout, "\nwarning: lane %q has %d WAITING and %d FAILED messages but is not in %s, so a relay with that config does not serve it: add it under lanes, or exclude them with 'ferry exclude %s --lane %s --waiting'\n",
			r.Lane, r.Waiting, r.Failed, cfg.File, db.flags, quoteArg(r.Lane))
	}
	return nil
}

// humanDuration formats d for people: two units at most.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	d = d.Round(time.Hour)
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}
