package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry/jobs"
)

// defaultJobsTable is the table jobs commands use unless told otherwise:
// jobs want a table of their own (see the jobs package).
const defaultJobsTable = "ferry_jobs"

func jobsCommand() command {
	return command{
		name:    "jobs",
		args:    "enqueue --db URL --kind KIND --args JSON [--queue Q] [--in D | --at TIME] [--key K] [--unique-args] [--unique-key K] [--unique-period D]\n       ferry jobs show --db URL [--json] ID",
		summary: "insert a background job, or show one's state, output and errors",
		help: `enqueue inserts one job into the jobs table (--table, default ` + defaultJobsTable + `) for
the workers of a jobs.Client to run, and prints its id. --args is the
job's arguments as a JSON object. Nothing here knows the workers: a kind
no worker has, or a queue no client runs, waits until one does; the
client's HTTP endpoint (jobs.Client.Handler) checks both at insert.

A unique job (--unique-args: same kind and arguments; --unique-key K;
within --unique-period) that exists already is not inserted again; its id
is printed.

show prints a job: its state, attempts, the error of each failed attempt
with its time, its output and progress (--json for the jobs.JobInfo as
JSON). It needs the job tables: ferry migrate --jobs.`,
		run: runJobs,
	}
}

func runJobs(ctx context.Context, c *cli, args []string) error {
	if len(args) > 0 && args[0] == "show" {
		return runJobsShow(ctx, c, args[1:])
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		c.flags().Usage()
		return errHelp
	}
	if len(args) == 0 || args[0] != "enqueue" {
		return usagef("give a subcommand: ferry jobs enqueue --db URL --kind KIND --args JSON, or ferry jobs show --db URL ID")
	}
	fs := c.flags()
	var dbf dbFlags
	dbf.register(fs)
	kind := fs.String("kind", "", "the job's `kind`, which picks its worker")
	argsJSON := fs.String("args", "", "the job's arguments, a JSON `object`")
	queue := fs.String("queue", "", "the `queue` (default "+jobs.DefaultQueue+")")
	in := fs.Duration("in", 0, "run the job after this `duration`")
	at := fs.String("at", "", "run the job at this `time` (RFC 3339, such as 2026-11-22T02:00:00Z)")
	priority := fs.Int("priority", 0, "the job's `level` in its queue: 1 (the default) first, up to the queue's Priorities")
	key := fs.String("key", "", "jobs with the same `key` run one at a time, in insert order")
	uniqueArgs := fs.Bool("unique-args", false, "a job of the same kind and arguments is the same job")
	uniqueKey := fs.String("unique-key", "", "a job of the same kind and this `key` is the same job")
	uniquePeriod := fs.Duration("unique-period", 0, "uniqueness holds within this `period` (aligned to the epoch)")
	rest, err := c.parse(fs, args[1:])
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	switch {
	case *kind == "":
		return usagef("--kind is required: the job's kind, such as send_email")
	case *argsJSON == "":
		return usagef(`--args is required: the job's arguments as a JSON object, such as '{"to": "ann@example.com"}'`)
	case *in != 0 && *at != "":
		return usagef("give --in or --at, not both")
	case *uniquePeriod != 0 && !*uniqueArgs && *uniqueKey == "":
		return usagef("--unique-period needs --unique-args or --unique-key")
	case *priority < 0:
		return usagef("--priority %d: priorities start at 1 (the first)", *priority)
	}
	opts := &jobs.InsertOpts{Queue: *queue, Key: *key, Priority: *priority}
	if *in > 0 {
		opts.ScheduledAt = time.Now().Add(*in)
	}
	if *at != "" {
		if opts.ScheduledAt, err = time.Parse(time.RFC3339, *at); err != nil {
			return usagef("--at %q is not an RFC 3339 time such as 2026-11-22T02:00:00Z", *at)
		}
	}
	if *uniqueArgs || *uniqueKey != "" {
		opts.Unique = &jobs.Unique{ByArgs: *uniqueArgs, Key: *uniqueKey, Period: *uniquePeriod}
	}
	if dbf.table == "" && dbf.config == "" {
		dbf.table = defaultJobsTable
	}
	dbf.jobs = true
	db, _, st, err := dbf.openNow(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := db.checkSchema(ctx, st); err != nil {
		return err
	}
	sq, ok := st.(interface{ SQLDB() *sql.DB })
	if !ok {
		return fmt.Errorf("the %s store has no SQL handle", st.Dialect())
	}
	tx, err := sq.SQLDB().BeginTx(ctx, nil)
	if err != nil {
		return db.explain(err)
	}
	defer tx.Rollback()
	id, err := jobs.InsertJSON(ctx, tx, st, *kind, []byte(*argsJSON), opts)
	if err != nil {
		return usagef("%v", err)
	}
	if err := tx.Commit(); err != nil {
		return db.explain(err)
	}
	fmt.Fprintln(c.stdout, id)
	return nil
}
