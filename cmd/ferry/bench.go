package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/bench"
	"github.com/ferry-dev/ferry/config"
)

func benchCommand() command {
	return command{
		name:    "bench",
		args:    "relay|flood|jobs|consume [flags]",
		summary: "measure the relay's throughput, the online lane's latency under a batch flood, or a consumer's throughput",
		help: `Benchmarks, each on a fresh table of the database that is dropped at the end:

  ferry bench relay --db URL [--messages 1000000] [--duration 10s] [--json]
      drain_rate: preload the outbox (write_rate), then drain it to a no-op
      destination until nothing is WAITING; sustained_rate: what the relay
      delivers while writers insert at full speed (sustained_write_rate).

  ferry bench flood --db URL [--batch 1000000] [--online-rate 500] [--json]
      The scenario ferry is built for: an online lane at a steady rate, then
      a batch job floods the outbox. Reports the online latency from commit
      to delivery, alone (idle_p50_ms, idle_p99_ms) and during the flood
      (online_p50_ms, online_p99_ms, online_max_ms), and batch_drain_rate,
      for ferry and, in the same run, for a single FIFO relay (system fifo).
      On PostgreSQL, system notify is the floor under ferry's latencies:
      commit to notification on a LISTEN connection of its own.

  ferry bench jobs --db URL [--jobs 200000] [--json]
      The job queue with no-op jobs: drain_rate, sustained_rate, and
      start_p50_ms and start_p99_ms at 500 jobs/s (bench/river: the same
      for River).

  ferry bench consume [--transport kafka] [--keys 100] [--json]
      The seeds' Parallel Consumer experiment: one partition, 100 keys, a
      handler that waits 5ms like an I/O call. throughput of the consumer
      in partition order (one at a time: the baseline), key order and no
      order, each on a fresh topic.

Output is a table, or with --json one JSON object per line per result;
progress goes to stderr. Run 'ferry bench relay -h' (flood, consume) for each
benchmark's flags.`,
		run: runBench,
	}
}

// exampleDB is the database URL the messages suggest.
const exampleDB = "'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'"

func runBench(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && isHelp(args[0]) {
			c.flags().Usage()
			return errHelp
		}
		return usagef("which benchmark? give relay, flood or consume, e.g. ferry bench relay --db %s", exampleDB)
	}
	which, args := args[0], args[1:]
	// --cpuprofile FILE and --store-timings are for people working on
	// ferry, so not in the usage.
	args, profile, err := takeHidden(args, "cpuprofile", true)
	if err != nil {
		return err
	}
	args, timings, err := takeHidden(args, "store-timings", false)
	if err != nil {
		return err
	}

	fs := flag.NewFlagSet("ferry bench "+which, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var (
		db              string
		asJSON          bool
		run             func(ctx context.Context) ([]bench.Result, error)
		synopsis, about string
	)
	fs.StringVar(&db, "db", "", "the database `URL`: postgres://..., mysql://..., sqlite:FILE (default $"+config.EnvDatabaseURL+")")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per line per result instead of a table")
	progress := c.stderr
	switch which {
	case "relay":
		var (
			cfg      bench.RelayConfig
			keys     int
			duration time.Duration
		)
		synopsis = "--db URL [--messages N] [--duration D] [--json]"
		about = `Preloads --messages messages into a fresh outbox table (write_rate), runs a
relay with one lane to a no-op destination until none is WAITING
(drain_rate), then runs --writers writers inserting --writer-batch messages
per transaction at full speed for --duration while the relay delivers
(sustained_rate, sustained_write_rate, sustained_backlog).

With --to BROKER the relay publishes to that broker instead of a no-op
destination, and after the drain a plain client of the broker publishes the
same messages (system raw, metric drain_rate), so the relay's overhead over
the broker itself shows in the same run. Brokers: ` + strings.Join(bench.Brokers(), ", ") + `.
--broker URL says where the broker is (default: the usual local address;
Kafka runs in process on franz-go's kfake).`
		fs.StringVar(&cfg.To, "to", "", "publish to this `broker` ("+strings.Join(bench.Brokers(), ", ")+") instead of a no-op destination")
		fs.StringVar(&cfg.Broker, "broker", "", "the broker's `URL` (default: its local address; kfake for Kafka)")
		fs.IntVar(&cfg.Messages, "messages", 1_000_000, "messages to preload and drain")
		fs.IntVar(&cfg.Chunk, "chunk", 10_000, "messages per transaction of the preload")
		fs.IntVar(&keys, "keys", 10_000, "distinct message keys; 0 for unkeyed messages")
		fs.IntVar(&cfg.Payload, "payload", 200, "payload size in bytes")
		fs.DurationVar(&duration, "duration", 10*time.Second, "length of the sustained phase; 0 skips it")
		fs.IntVar(&cfg.Writers, "writers", 4, "writers of the sustained phase")
		fs.IntVar(&cfg.WriterBatch, "writer-batch", 100, "messages per transaction of each writer")
		fs.IntVar(&cfg.Lanes, "lanes", 1, "spread the messages over this many lanes")
		fs.IntVar(&cfg.Lane.Concurrency, "concurrency", 0, "the lane's concurrent deliveries (default the relay's; 1024 with --to)")
		fs.DurationVar(&cfg.Retention, "retention", 0, "the relay's retention of DONE messages; negative deletes them on delivery (default the relay's, 24h)")
		fs.IntVar(&cfg.Lane.BatchSize, "fetch", 0, "the lane's messages per fetch (default the relay's)")
		run = func(ctx context.Context) ([]bench.Result, error) {
			cfg.DB, cfg.Progress, cfg.Logger = db, progress, bench.QuietLogger(c.stderr)
			cfg.StoreTimings = timings != ""
			cfg.Keys = keys
			if keys <= 0 {
				cfg.Keys = -1
			}
			cfg.Duration = duration
			if duration <= 0 {
				cfg.Duration = -1
			}
			return bench.Relay(ctx, cfg)
		}
	case "flood":
		var cfg bench.FloodConfig
		synopsis = "--db URL [--batch N] [--online-rate R] [--json]"
		about = `Runs the scenario ferry is built for, once with ferry's relay and once with a
single FIFO relay (one goroutine polling WAITING rows in id order, 100 at a
time, marking each DONE by id), each on a fresh table:

  idle:  the online lane alone at --online-rate messages/s, each in its own
         transaction: idle_p50_ms, idle_p99_ms;
  flood: a batch job writes --batch messages in transactions of --chunk
         while the online lane goes on: online_p50_ms, online_p99_ms,
         online_max_ms, batch_drain_rate (first batch write to last batch
         delivery), batch_write_rate.

Latency is from tx.Commit returning in the producer to the destination
being called. A relay that has not delivered the batch after --max-flood is
stopped; its online latencies then count the messages still undelivered at
their wait so far (lower_bound=true).

On PostgreSQL, beside ferry's relay, a LISTEN connection of its own times
each online commit's notification (system notify: the idle_ and online_
latencies). No relay woken by notifications delivers sooner: it is the
floor the database sets, on the same machine under the same load.`
		fs.IntVar(&cfg.Batch, "batch", 1_000_000, "messages the batch job writes")
		fs.IntVar(&cfg.Chunk, "chunk", 5_000, "messages per transaction of the batch job")
		fs.Float64Var(&cfg.OnlineRate, "online-rate", 500, "online messages per second, one per transaction")
		fs.IntVar(&cfg.Customers, "customers", 1_000, "distinct keys of the online messages")
		fs.IntVar(&cfg.Payload, "payload", 200, "payload size in bytes")
		fs.DurationVar(&cfg.Idle, "idle", 5*time.Second, "length of the idle phase")
		fs.DurationVar(&cfg.MaxFlood, "max-flood", 2*time.Minute, "longest flood phase per system")
		fs.Float64Var(&cfg.PollAbove, "poll-above", 0, "commits per second to a lane above which ferry's relay polls it and producers skip NOTIFY (relay.poll_above); 0: off")
		systems := fs.String("systems", "ferry,fifo", "the relays to measure, comma-separated: ferry, fifo")
		run = func(ctx context.Context) ([]bench.Result, error) {
			cfg.DB, cfg.Progress, cfg.Logger = db, progress, bench.QuietLogger(c.stderr)
			cfg.StoreTimings = timings != ""
			for _, s := range strings.Split(*systems, ",") {
				if s = strings.TrimSpace(s); s != "" {
					cfg.Systems = append(cfg.Systems, s)
				}
			}
			return bench.Flood(ctx, cfg)
		}
	case "jobs":
		var cfg bench.JobsConfig
		synopsis = "--db URL [--jobs 200000] [--duration 10s] [--json]"
		about = `Measures the job queue with no-op jobs on a fresh table: drain_rate (a
preloaded backlog of --jobs run to completion by --workers workers),
sustained_rate (jobs completed per second while --inserters insert batches
of --insert-batch at full speed for --duration) and start_p50_ms and
start_p99_ms (from an insert's commit to its worker starting, at --rate
jobs per second, one per transaction). bench/river measures River the
same way on the same database: scripts/bench-jobs.sh runs both.`
		fs.IntVar(&cfg.Jobs, "jobs", 200_000, "jobs to preload and drain")
		fs.IntVar(&cfg.Chunk, "chunk", 10_000, "jobs per transaction of the preload")
		fs.IntVar(&cfg.Workers, "workers", 100, "the queue's concurrent jobs")
		fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the sustained and latency phases")
		fs.IntVar(&cfg.Inserters, "inserters", 4, "inserters of the sustained phase")
		fs.IntVar(&cfg.InsertBatch, "insert-batch", 100, "jobs per transaction of each inserter")
		fs.Float64Var(&cfg.Rate, "rate", 500, "jobs per second of the latency phase")
		run = func(ctx context.Context) ([]bench.Result, error) {
			cfg.DB, cfg.Progress, cfg.Logger = db, progress, bench.QuietLogger(c.stderr)
			return bench.Jobs(ctx, cfg)
		}
	case "consume":
		var cfg bench.ConsumeConfig
		synopsis = "[--transport kafka] [--messages N] [--keys 100] [--json]"
		about = `Preloads a topic of one partition with messages of --keys keys, then times a
consumer whose handler waits --handler-delay (like an I/O call), once per
ordering mode: partition (one message at a time, the classic consumer and
the baseline; --baseline-messages), key (the messages of a key in order,
keys in parallel) and unordered. Reports throughput, messages handled per
second. Key order and no order run --concurrency handlers (default: one
per key), so they differ only in the order they keep.

--transport picks the broker: ` + strings.Join(bench.Brokers(), ", ") + ` (not webhook); the
default, kafka, runs in process on franz-go's kfake.`
		fs.StringVar(&cfg.Transport, "transport", "kafka", "the `broker` the consumer reads")
		fs.StringVar(&cfg.Broker, "broker", "", "the broker's `URL` (default: its local address; kfake for Kafka)")
		fs.IntVar(&cfg.Messages, "messages", 20_000, "messages of the key and unordered systems")
		fs.IntVar(&cfg.BaselineMessages, "baseline-messages", 1_000, "messages of the partition system")
		fs.IntVar(&cfg.Keys, "keys", 100, "distinct message keys")
		fs.DurationVar(&cfg.HandlerDelay, "handler-delay", 5*time.Millisecond, "how long the handler waits per message")
		fs.IntVar(&cfg.Concurrency, "concurrency", 0, "handlers in flight of key and unordered (default --keys)")
		systems := fs.String("systems", "partition,key,unordered", "the ordering modes to measure, comma-separated")
		run = func(ctx context.Context) ([]bench.Result, error) {
			cfg.Progress, cfg.Logger = progress, bench.QuietLogger(c.stderr)
			for _, s := range strings.Split(*systems, ",") {
				if s = strings.TrimSpace(s); s != "" {
					cfg.Systems = append(cfg.Systems, s)
				}
			}
			return bench.Consume(ctx, cfg)
		}
	default:
		return usagef("unknown benchmark %q; give relay, flood, jobs or consume", which)
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: ferry bench %s %s\n\n%s\n\nFlags:\n", which, synopsis, about)
		fs.PrintDefaults()
	}
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(rest); err != nil {
		return err
	}
	if db == "" {
		db = os.Getenv(config.EnvDatabaseURL)
	}
	if db == "" && which != "consume" {
		return usagef("which database? give --db URL, e.g. --db %s or --db sqlite:bench.db (or set %s); the benchmark creates a table of its own there and drops it at the end",
			exampleDB, config.EnvDatabaseURL)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	results, err := run(ctx)
	// Print what was measured even if a later part failed.
	if len(results) > 0 {
		if asJSON {
			if werr := bench.WriteJSON(c.stdout, results); werr != nil && err == nil {
				err = werr
			}
		} else if werr := bench.WriteTable(c.stdout, results); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// takeHidden removes the flag name from args, in any of the forms the
// flag package accepts (-name, --name, and with a value -name V, -name=V
// and the same with --), and returns the remaining arguments and the
// value: "true" for a set boolean flag, "" if the flag is absent.
func takeHidden(args []string, name string, hasValue bool) (rest []string, value string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i:]...), value, nil
		}
		trimmed := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case a == trimmed:
			rest = append(rest, a)
		case trimmed == name && !hasValue:
			value = "true"
		case trimmed == name:
			if i+1 >= len(args) {
				return nil, "", usagef("--%s needs a value", name)
			}
			value = args[i+1]
			i++
		case strings.HasPrefix(trimmed, name+"="):
			value = strings.TrimPrefix(trimmed, name+"=")
			if !hasValue && value == "false" {
				value = ""
			}
		default:
			rest = append(rest, a)
		}
	}
	return rest, value, nil
}
