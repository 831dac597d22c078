package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/relay"
	"gopkg.in/yaml.v3"
)

func configCommand() command {
	return command{
		name:    "config",
		args:    "check FILE",
		summary: "check a relay or consume config file and report every problem",
		help: `Checks FILE as the config of 'ferry relay' (or, if it has consumers and no
routes, of 'ferry consume'; with both, as both) without connecting to
anything, and prints every problem with its line, column and key, or a
summary of the config if it has none. Exits with 2 if there are problems.`,
		run: runConfig,
	}
}

func runConfig(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	rest, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) == 0:
		return usagef("missing subcommand: use 'ferry config check FILE'")
	case rest[0] != "check":
		return usagef("unknown subcommand %q: use 'ferry config check FILE'", rest[0])
	case len(rest) == 1:
		return usagef("which file? use 'ferry config check FILE'")
	case len(rest) > 2:
		return usagef("unexpected argument %q: check one file at a time", rest[2])
	}
	file := rest[1]
	relayConfig, consumeConfig := sections(file)
	var cfg *config.Config
	if relayConfig {
		if cfg, err = loadConfig(file); err != nil {
			return err
		}
	}
	var cc *config.ConsumeConfig
	if consumeConfig {
		if cc, err = loadConsumeConfig(file); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stdout, "%s: ok\n", file)
	if cfg != nil {
		printSummary(c, cfg)
	}
	if cc != nil {
		fmt.Fprintf(c.stdout, "  consumers: %d\n", len(cc.Consumers))
		for _, con := range cc.Consumers {
			fmt.Fprintf(c.stdout, "    %s\tfrom %s %v, %s order -> %s\n", con.Name, con.From, con.Topics, con.Order, con.URL)
		}
	}
	return nil
}

// sections tells which commands' sections file has: the relay's (routes)
// or ferry consume's (consumers). A file that cannot be read or parsed
// counts as a relay config, whose check then reports why.
func sections(file string) (relayConfig, consumeConfig bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return true, false
	}
	var top map[string]any
	if yaml.Unmarshal(data, &top) != nil {
		return true, false
	}
	_, routes := top["routes"]
	_, consumers := top["consumers"]
	return routes || !consumers, consumers
}

// printSummary prints what a config sets up.
func printSummary(c *cli, cfg *config.Config) {
	w := c.stdout
	fmt.Fprintf(w, "  database: %s, table %s\n", cfg.Database.Describe(), cfg.Database.StoreOptions().TableName())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  lanes: %d\n", len(cfg.Lanes))
	for _, l := range cfg.Lanes {
		fmt.Fprintf(tw, "    %s\t%s\n", l.Name, describeLane(l))
	}
	fmt.Fprintf(tw, "  routes: %d\n", len(cfg.Routes))
	for _, r := range cfg.Routes {
		t, _ := cfg.Transport(r.To)
		dest := ""
		if !t.Sink() {
			dest = " " + string(r.Destination)
		}
		fmt.Fprintf(tw, "    %s\t-> %s (%s)%s\n", r.Topic, r.To, t.Type, dest)
	}
	tw.Flush()
}

// describeLane lists the settings a lane sets, in parentheses.
func describeLane(l relay.Lane) string {
	var s []string
	add := func(set bool, format string, args ...any) {
		if set {
			s = append(s, fmt.Sprintf(format, args...))
		}
	}
	add(l.Weight > 0, "weight %d", l.Weight)
	add(l.Concurrency > 0, "concurrency %d", l.Concurrency)
	add(l.Rate > 0, "rate %g/s", l.Rate)
	add(l.Burst > 0, "burst %d", l.Burst)
	add(l.BatchSize > 0, "batch size %d", l.BatchSize)
	add(l.Timeout > 0, "timeout %s", shortDuration(l.Timeout))
	add(l.MaxAttempts > 0, "max attempts %d", l.MaxAttempts)
	add(l.Backoff.Initial > 0, "backoff initial %s", shortDuration(l.Backoff.Initial))
	add(l.Backoff.Max > 0, "backoff max %s", shortDuration(l.Backoff.Max))
	add(l.OnFailed != "", "on failed %s", l.OnFailed)
	if len(s) == 0 {
		return "defaults"
	}
	return strings.Join(s, ", ")
}

// shortDuration formats d without zero units: 5m, not 5m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
