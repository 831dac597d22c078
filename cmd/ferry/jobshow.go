package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/store"
)

// runJobsShow is ferry jobs show: one job's state, errors, output and
// progress.
func runJobsShow(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var dbf dbFlags
	dbf.register(fs)
	asJSON := fs.Bool("json", false, "print the job as JSON")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) == 0:
		return usagef("give the job's id: ferry jobs show --db URL ID")
	case len(rest) > 1:
		return usagef("unexpected argument %q: give one job id", rest[1])
	}
	id := rest[0]
	if dbf.table == "" && dbf.config == "" {
		dbf.table = defaultJobsTable
	}
	dbf.jobs = true
	db, _, st, err := dbf.openNow(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	info, err := jobs.Lookup(ctx, st, id)
	switch {
	case errors.Is(err, jobs.ErrNoJob):
		return fmt.Errorf("no job %s in %s: it was never inserted, or it completed and was deleted when its retention passed", id, db)
	case err != nil && missingTable(err):
		// The jobs' table itself, or the tables beside it.
		table := db.opts.TableName()
		return fmt.Errorf("the job tables (%s, %s_results, %s_errors) do not all exist in %s: create them with\n  ferry migrate --jobs%s\n(%w)",
			table, table, table, store.Describe(db.url), prefixSpace(db.flags), err)
	case err != nil:
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	printJob(c.stdout, info)
	return nil
}

// printJob prints info for a person.
func printJob(w io.Writer, info *jobs.JobInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s\t%s\n", name, value)
		}
	}
	line("job", info.ID)
	line("kind", info.Kind)
	line("queue", info.Queue)
	line("key", info.Key)
	line("state", fmt.Sprintf("%s (%s), %d %s", info.State, info.Status, info.Attempts, plural(info.Attempts, "attempt", "attempts")))
	line("inserted", stamp(info.InsertedAt))
	if !info.RunAt.IsZero() {
		line("runs at", stamp(info.RunAt))
	}
	line("completed", stamp(info.CompletedAt))
	line("last failed", stamp(info.FailedAt))
	line("args", string(info.Args))
	if info.Progress != nil {
		line("progress", string(info.Progress))
	}
	if info.Output != nil {
		line("output", string(info.Output))
	}
	if info.Progress != nil || info.Output != nil {
		line("updated", stamp(info.UpdatedAt))
	}
	tw.Flush()
	switch {
	case len(info.Errors) > 0:
		fmt.Fprintf(w, "\nerrors (%d):\n", len(info.Errors))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, e := range info.Errors {
			// An error can span lines (a wrapped chain, a panic): indent
			// the rest under its first.
			text := strings.ReplaceAll(strings.TrimRight(e.Error, "\n"), "\n", "\n\t\t")
			fmt.Fprintf(tw, "  attempt %d\t%s\t%s\n", e.Attempt, stamp(e.At), text)
		}
		tw.Flush()
	case info.LastError != "":
		// Failed before the error history was kept.
		fmt.Fprintf(w, "\nlast error: %s\n", info.LastError)
	}
}

// stamp formats t for people, in UTC to the millisecond; "" if zero.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}
