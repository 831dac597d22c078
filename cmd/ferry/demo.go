package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/bench"
)

func demoCommand() command {
	return command{
		name:    "demo",
		args:    "[--duration 60s] [--db sqlite:PATH | --db postgres://...]",
		summary: "watch a batch flood the outbox without delaying online messages (needs nothing installed)",
		help: `Plays the scenario ferry is built for, at a small scale, and narrates it every
second: an online service writes 50 messages/s, each in its own
transaction; after 10s a batch job writes 100,000 messages in transactions
of 5,000; one relay with two lanes (online, weight 4; batch, weight 1)
delivers both to an in-process destination. Each line shows the lanes'
backlogs, their deliveries per second and the online latency from commit
to delivery; the summary compares the online latency before and during
the batch.

By default it runs on a SQLite file in a temporary directory, removed at
the end. With --db it uses a table of its own in that database and drops
it at the end. Ctrl-C stops it early, with the summary.`,
		run: runDemo,
	}
}

func runDemo(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var cfg bench.DemoConfig
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long the demo runs")
	fs.StringVar(&cfg.DB, "db", "", "the database `URL` (default: a temporary SQLite file); sqlite:PATH, postgres://..., mysql://...")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if cfg.Duration < 3*time.Second {
		return usagef("--duration must be at least 3s, got %v", cfg.Duration)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Out = c.stdout
	cfg.Logger = bench.QuietLogger(c.stderr)
	_, err = bench.Demo(ctx, cfg)
	return err
}
