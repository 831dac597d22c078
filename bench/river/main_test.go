package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/bench"
	"github.com/ferry-dev/ferry/internal/testdb"
)

// TestRunSmall runs a tiny benchmark on the test PostgreSQL
// ($FERRY_TEST_POSTGRES) and checks that it reports the four metrics in
// ferry's JSON format and drops its schema.
func TestRunSmall(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"--db", dsn, "--jobs", "500", "--chunk", "200", "--workers", "20",
		"--duration", "1s", "--inserters", "2", "--insert-batch", "50", "--rate", "200", "--json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}

	want := map[string]string{
		bench.MetricDrainRate: bench.UnitJobRate, bench.MetricSustainedRate: bench.UnitJobRate,
		bench.MetricStartP50: bench.UnitMillis, bench.MetricStartP99: bench.UnitMillis,
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), stdout.String())
	}
	for _, line := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		metric, _ := r["metric"].(string)
		unit, ok := want[metric]
		if !ok {
			t.Errorf("unexpected or repeated metric %q in %s", metric, line)
			continue
		}
		delete(want, metric)
		if r["bench"] != "jobs" || r["system"] != "river" || r["db"] != "postgres" || r["unit"] != unit {
			t.Errorf("fixed fields wrong in %s", line)
		}
		if v, _ := r["value"].(float64); !(v > 0) {
			t.Errorf("%s = %v, want positive: %s", metric, r["value"], line)
		}
		if n, _ := r["messages"].(float64); !(n > 0) || metric == bench.MetricDrainRate && n != 500 {
			t.Errorf("messages wrong in %s", line)
		}
		if r["workers"] != float64(20) || r["duration_s"] != float64(1) {
			t.Errorf("parameters wrong in %s", line)
		}
		if v, _ := r["river"].(string); !strings.HasPrefix(v, "v") {
			t.Errorf("river version = %v, want a module version", r["river"])
		}
	}
	for metric := range want {
		t.Errorf("metric %s not reported", metric)
	}

	// The schema the run announced is gone.
	m := regexp.MustCompile(`schema (river_bench_[0-9a-f]+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no schema in the progress output:\n%s", stderr.String())
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = $1", m[1]).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("schema %s was not dropped", m[1])
	}
}

// TestRunRejectsBadFlags checks that settings that cannot work fail before
// anything touches the database.
func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--jobs", "0"},
		{"--workers", "0"},
		{"--duration", "0s"},
		{"--rate", "-1"},
		{"--fetch-cooldown", "0s"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		// An unreachable database: the run must fail on the flags first.
		args = append([]string{"--db", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}, args...)
		err := run(context.Background(), args, &stdout, &stderr)
		if err == nil {
			t.Errorf("run %q succeeded", args)
			continue
		}
		if strings.Contains(err.Error(), "connect") {
			t.Errorf("run %q tried the database: %v", args, err)
		}
		if stdout.Len() > 0 {
			t.Errorf("run %q wrote results: %s", args, stdout.String())
		}
	}
}
