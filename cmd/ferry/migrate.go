package main

import (
	"context"
	"fmt"
)

func migrateCommand() command {
	return command{
		name:    "migrate",
		args:    "[--db URL | --config FILE] [--table T]",
		summary: "create or upgrade the outbox tables",
		help: `Creates the outbox table and the tables the relay needs, or upgrades them to
this version of ferry. It is safe to run again, and from several processes
at once.`,
		run: runMigrate,
	}
}

func runMigrate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var dbf dbFlags
	dbf.register(fs)
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	db, _, st, err := dbf.openNow(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", db, err)
	}
	fmt.Fprintf(c.stdout, "%s: the outbox schema is up to date\n", db)
	return nil
}
