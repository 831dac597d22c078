package main

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry/jobs"
)

func migrateCommand() command {
	return command{
		name:    "migrate",
		args:    "[--db URL | --config FILE] [--table T] [--jobs]",
		summary: "create or upgrade the outbox tables",
		help: `Creates the outbox table and the tables the relay needs, or upgrades them to
this version of ferry. It is safe to run again, and from several processes
at once.

--jobs also creates the tables of background jobs beside their table
(T_results for outputs and progress, T_errors for the error of each failed
attempt), as jobs.Client.Migrate does; with --jobs the table is
` + defaultJobsTable + ` unless --table or --config says otherwise.`,
		run: runMigrate,
	}
}

func runMigrate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var dbf dbFlags
	dbf.register(fs)
	withJobs := fs.Bool("jobs", false, "also create the tables of background jobs (default table "+defaultJobsTable+")")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *withJobs && dbf.table == "" && dbf.config == "" {
		dbf.table = defaultJobsTable
	}
	dbf.create = true
	db, _, st, err := dbf.openNow(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", db, err)
	}
	fmt.Fprintf(c.stdout, "%s: the outbox schema is up to date\n", db)
	if *withJobs {
		if err := jobs.Migrate(ctx, st); err != nil {
			return fmt.Errorf("migrate the job tables of %s: %w", db, err)
		}
		fmt.Fprintf(c.stdout, "%s: the job tables are up to date\n", db)
	}
	return nil
}
