package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/relay"
)

func relayCommand() command {
	return command{
		name:    "relay",
		args:    "--config FILE [--migrate] [--wait DURATION] [--db URL] [--table T]",
		summary: "deliver the outbox's messages to their destinations until stopped",
		help: `Runs the relay described by the config FILE (see 'ferry config check') until
it receives SIGINT or SIGTERM, then finishes the deliveries in flight and
exits with 0. A second signal stops it at once.

The outbox tables must exist: create them with 'ferry migrate', or give
--migrate to create or upgrade them at start. A database that cannot be
reached at start is tried again for up to --wait.`,
		run: runRelay,
	}
}

func runRelay(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var dbf dbFlags
	dbf.register(fs)
	migrate := fs.Bool("migrate", false, "create or upgrade the outbox tables before starting")
	wait := fs.Duration("wait", 30*time.Second, "how long to keep trying to reach the database at start")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if dbf.config == "" {
		return usagef("--config FILE is required: it says which lanes to serve and where each topic goes (see examples/relay.yaml)")
	}
	if *wait < 0 {
		return usagef("--wait must not be negative, got %v", *wait)
	}
	db, cfg, err := dbf.resolve()
	if err != nil {
		return err
	}
	log := cfg.Logger(c.stderr)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, the next one kills the process.
		<-ctx.Done()
		stop()
	}()

	db.create = *migrate
	st, err := db.open(ctx, *wait, log)
	if errors.As(err, new(*noSchemaError)) {
		return fmt.Errorf("%w\nor start the relay with --migrate", err)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	if *migrate {
		if err := st.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate %s: %w", db, err)
		}
		log.Info("outbox schema is up to date", "database", db.String())
	} else if err := db.checkSchema(ctx, st); err != nil {
		return fmt.Errorf("%w\nor start the relay with --migrate", err)
	} else if err := db.checkVersion(ctx, st); err != nil {
		return fmt.Errorf("%w\nor start the relay with --migrate", err)
	}

	built, err := cfg.Build(st, c.stdout, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := built.Close(); err != nil {
			log.Warn("closing transports", "err", err)
		}
	}()
	checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	refused, unchecked := built.Check(checkCtx)
	cancel()
	if refused != nil {
		return refused
	}
	for _, err := range unchecked {
		log.Warn("the relay starts anyway and retries while the broker cannot be reached", "err", err)
	}
	opts := built.Options
	opts.Logger = log
	r, err := relay.New(opts)
	if err != nil {
		// The config passed its checks, so this is a setting the relay
		// refuses that the checks do not know about.
		fmt.Fprintf(c.stderr, "ferry relay: %s: %v\n", cfg.File, err)
		return &exitError{code: exitUsage}
	}
	log.Info("ferry relay", "config", cfg.File, "database", db.String(), "lanes", cfg.LaneNames(), "routes", len(cfg.Routes))
	err = r.Run(ctx)
	if err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}
