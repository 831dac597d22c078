package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func consumeCommand() command {
	return command{
		name:    "consume",
		args:    "--config FILE",
		summary: "forward messages from brokers to your service's HTTP endpoint, in order, with retries and dead letters",
		help: `Runs the consumers described by the config FILE until it receives SIGINT or
SIGTERM, then lets the requests in flight finish and exits with 0.

Each consumer reads topics from a broker in its group and POSTs every
message to its deliver.url, signed like ferry's webhooks (Ferry-Signature),
with the message id in Ferry-Id and Idempotency-Key: 2xx means handled; 5xx,
408, 429 or no answer are retried with backoff while the later messages of
the key wait; any other 4xx sends the message to the dead letters. So a
service in any language gets ordered, at-least-once delivery it can make
exactly once by the message id. See the config package's documentation
for the file (consumers: ...).`,
		run: runConsume,
	}
}

func runConsume(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	file := fs.String("config", "", "the config `FILE` with transports and consumers")
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if *file == "" {
		return usagef("--config FILE is required: it says where to read from and where to deliver (consumers: ...)")
	}
	cfg, err := loadConsumeConfig(*file)
	if err != nil {
		return err
	}
	log := cfg.Log.Logger(c.stderr)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	built, err := cfg.Build(ctx, log)
	if err != nil {
		return err
	}
	defer built.Close()
	names := make([]string, len(cfg.Consumers))
	for i, con := range cfg.Consumers {
		names[i] = con.Name
	}
	log.Info("ferry consume", "config", cfg.File, "consumers", names, "inbox", cfg.Inbox != nil)
	return built.Run(ctx)
}
