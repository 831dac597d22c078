package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/testdb"
)

// These tests check the structure of what the benchmarks report, at a
// small scale. They assert nothing about speed: see DESIGN.md, Measuring.

func sqliteURL(t *testing.T) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "bench.db")
}

func TestRelaySQLite(t *testing.T) {
	t.Parallel()
	checkRelay(t, sqliteURL(t), "sqlite")
}

func TestRelayPostgres(t *testing.T) {
	t.Parallel()
	checkRelay(t, testdb.PostgresDSN(t), "postgres")
}

func checkRelay(t *testing.T, url, dialect string) {
	ctx := context.Background()
	results, err := Relay(ctx, RelayConfig{DB: url, Messages: 2_000, Chunk: 500, Duration: time.Second, Writers: 2, WriterBatch: 50})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, results, "relay", dialect, grid([]string{SystemFerry},
		[]string{MetricWriteRate, MetricDrainRate, MetricSustainedWriteRate, MetricSustainedRate, MetricSustainedBacklog}))
	for _, r := range results {
		if r.Messages != 2_000 {
			t.Errorf("%s: messages = %d, want 2000", r.Metric, r.Messages)
		}
		if r.Metric != MetricSustainedBacklog && r.Value <= 0 {
			t.Errorf("%s = %v, want a positive rate", r.Metric, r.Value)
		}
	}
	checkDropped(t, url)
}

func TestFloodSQLite(t *testing.T) {
	t.Parallel()
	checkFlood(t, sqliteURL(t), "sqlite")
}

func TestFloodPostgres(t *testing.T) {
	t.Parallel()
	checkFlood(t, testdb.PostgresDSN(t), "postgres")
}

func checkFlood(t *testing.T, url, dialect string) {
	ctx := context.Background()
	results, err := Flood(ctx, FloodConfig{DB: url, Batch: 3_000, Chunk: 1_000, OnlineRate: 200,
		Idle: time.Second, MaxFlood: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	relayMetrics := []string{MetricIdleP50, MetricIdleP99, MetricOnlineP50, MetricOnlineP99, MetricOnlineMax, MetricBatchDrainRate, MetricBatchWriteRate}
	want := grid([]string{SystemFerry}, relayMetrics)
	if dialect == "postgres" { // PostgreSQL's own wake-up, timed beside ferry's relay
		want = append(want, grid([]string{SystemNotify}, relayMetrics[:5])...)
	}
	want = append(want, grid([]string{SystemFIFO}, relayMetrics)...)
	checkResults(t, results, "flood", dialect, want)
	for _, r := range results {
		// A latency can round to 0 on a fast machine; a rate cannot.
		if r.Value < 0 || (r.Unit == UnitRate && r.Value == 0) {
			t.Errorf("%s %s = %v", r.System, r.Metric, r.Value)
		}
		if r.Unit == UnitMillis && noteOf(r, "samples") == 0 {
			t.Errorf("%s %s: no samples", r.System, r.Metric)
		}
	}
	checkDropped(t, url)
}

func noteOf(r Result, name string) any {
	for _, n := range r.Notes {
		if n.Name == name {
			return n.Value
		}
	}
	return nil
}

// grid returns "system metric" for every metric of every system, in
// order.
func grid(systems, metrics []string) []string {
	var out []string
	for _, s := range systems {
		for _, m := range metrics {
			out = append(out, s+" "+m)
		}
	}
	return out
}

// checkResults checks that results are want ("system metric", see grid),
// in order, and that their JSON lines parse with the fields of the
// contract.
func checkResults(t *testing.T, results []Result, bench, dialect string, want []string) {
	t.Helper()
	var got []string
	for _, r := range results {
		got = append(got, r.System+" "+r.Metric)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	var buf bytes.Buffer
	if err := WriteJSON(&buf, results); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(results) {
		t.Fatalf("%d JSON lines for %d results:\n%s", len(lines), len(results), buf.String())
	}
	for i, line := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %d does not parse: %v\n%s", i+1, err, line)
		}
		r := results[i]
		for k, v := range map[string]any{"bench": bench, "system": r.System, "metric": r.Metric, "unit": r.Unit, "db": dialect} {
			if obj[k] != v {
				t.Errorf("line %d: %s = %v, want %v\n%s", i+1, k, obj[k], v, line)
			}
		}
		if _, ok := obj["value"].(float64); !ok {
			t.Errorf("line %d: value is not a number: %s", i+1, line)
		}
		if n, ok := obj["messages"].(float64); !ok || n <= 0 {
			t.Errorf("line %d: messages is not a positive number: %s", i+1, line)
		}
		if _, ok := obj["cpus"]; !ok {
			t.Errorf("line %d: the parameters are missing: %s", i+1, line)
		}
	}

	buf.Reset()
	if err := WriteTable(&buf, results); err != nil {
		t.Fatal(err)
	}
	for _, sm := range want {
		system, metric, _ := strings.Cut(sm, " ")
		if !strings.Contains(buf.String(), system) || !strings.Contains(buf.String(), metric) {
			t.Errorf("the table lacks %s:\n%s", sm, buf.String())
		}
	}
	t.Logf("\n%s", buf.String())
}

// checkDropped checks that no benchmark table is left in a SQLite
// database. (On PostgreSQL other tests may be running benchmarks in the
// same database at the same moment.)
func checkDropped(t *testing.T, url string) {
	t.Helper()
	if !strings.HasPrefix(url, "sqlite:") {
		return
	}
	tb, err := openTestbed(context.Background(), url, "ferry_check_")
	if err != nil {
		t.Fatal(err)
	}
	defer tb.close()
	var n int
	if err := tb.db.QueryRow("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'ferry_bench_%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d ferry_bench_ tables or indexes left behind", n)
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	sum, err := Demo(context.Background(), DemoConfig{Duration: 5 * time.Second, FloodAt: 2 * time.Second,
		OnlineRate: 100, Batch: 5_000, Chunk: 1_000, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if sum.DB != "sqlite" {
		t.Errorf("demo ran on %s, want the embedded SQLite", sum.DB)
	}
	if sum.Before.N == 0 || sum.During.N == 0 {
		t.Errorf("online latency measured on %d messages before and %d during the batch, want some of each", sum.Before.N, sum.During.N)
	}
	// How much of the batch fits in the run depends on the machine's
	// speed (the demo ends on time, whatever is left): some of it must.
	if sum.BatchWritten == 0 || sum.BatchDelivered == 0 || sum.BatchDelivered > sum.BatchWritten {
		t.Errorf("batch: %d written, %d delivered; want some written and some of those delivered", sum.BatchWritten, sum.BatchDelivered)
	}
	text := out.String()
	for _, want := range []string{"online waiting", "batch waiting", ">>> the batch job starts", "Summary",
		"online latency before the batch:", "online latency during the batch:", "What you saw:", "ferry demo --db 'postgres://"} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	// One line per second, with a time column.
	if n := strings.Count(text, "s | "); n < 3 {
		t.Errorf("%d progress lines, want one per second", n)
	}
}

func TestDemoOnPostgres(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	sum, err := Demo(context.Background(), DemoConfig{DB: testdb.PostgresDSN(t), Duration: 4 * time.Second, FloodAt: time.Second + 500*time.Millisecond,
		OnlineRate: 100, Batch: 2_000, Chunk: 500, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if sum.DB != "postgres" || sum.BatchDelivered == 0 {
		t.Errorf("demo on %s delivered %d batch messages\n%s", sum.DB, sum.BatchDelivered, out.String())
	}
}

func TestResultJSON(t *testing.T) {
	r := Result{Bench: "relay", System: SystemFerry, Metric: MetricDrainRate, Value: 1234.56789, Unit: UnitRate,
		Messages: 10, DB: "postgres", Params: []Param{{"keys", 5}}, Notes: []Param{{"seconds", 1.5}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"bench":"relay","system":"ferry","metric":"drain_rate","value":1234.568,"unit":"msg/s","messages":10,"db":"postgres","keys":5,"seconds":1.5}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := summarize(lat)
	if s.n != 100 || s.p50 != 50*time.Millisecond || s.p99 != 99*time.Millisecond || s.max != 100*time.Millisecond {
		t.Errorf("summarize(1..100ms) = %+v", s)
	}
	if s := summarize([]time.Duration{7}); s.p50 != 7 || s.p99 != 7 || s.max != 7 {
		t.Errorf("summarize of one = %+v", s)
	}
}

func TestTrackerDeliveredBeforeCommitRecorded(t *testing.T) {
	tr := newTracker(newClock())
	tr.deliveredNow("a") // the relay was quicker than the producer's bookkeeping
	tr.committed([]string{"a", "b"}, time.Now())
	tr.deliveredNow("b")
	tr.deliveredNow("b") // a redelivery is not a second sample
	lat, pending := tr.window(0, time.Hour, 0)
	if len(lat) != 2 || pending != 0 {
		t.Fatalf("window: %d latencies, %d pending; want 2 and 0", len(lat), pending)
	}
	if lat[0] != 0 && lat[1] != 0 {
		t.Errorf("a message delivered before its commit was recorded should count 0, got %v", lat)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Relay(ctx, RelayConfig{}); err == nil || !strings.Contains(err.Error(), "postgres://") {
		t.Errorf("Relay without a database: %v; want advice naming a URL", err)
	}
	if _, err := Flood(ctx, FloodConfig{}); err == nil || !strings.Contains(err.Error(), "postgres://") {
		t.Errorf("Flood without a database: %v; want advice naming a URL", err)
	}
	if _, err := Flood(ctx, FloodConfig{DB: "sqlite:x.db", Systems: []string{"kafka"}}); err == nil || !strings.Contains(err.Error(), `"kafka"`) {
		t.Errorf("Flood with an unknown system: %v", err)
	}
	if _, err := Demo(ctx, DemoConfig{Duration: time.Second}); err == nil {
		t.Error("Demo of 1s: no error")
	}
}

// TestConsume runs the consume benchmark small, on kfake: every system
// reports its throughput, and handling keys in parallel beats handling
// the partition one message at a time.
func TestConsume(t *testing.T) {
	results, err := Consume(context.Background(), ConsumeConfig{Messages: 400, BaselineMessages: 40, Keys: 20, HandlerDelay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, results, "consume", "", grid([]string{"partition", "key", "unordered"}, []string{MetricThroughput}))
	if results[1].Value < 3*results[0].Value {
		t.Errorf("key order handled %.0f msg/s, partition order %.0f: 20 keys in parallel should be many times faster", results[1].Value, results[0].Value)
	}
	if _, err := Consume(context.Background(), ConsumeConfig{Transport: "webhook"}); err == nil || !strings.Contains(err.Error(), `transport "webhook" cannot be consumed`) {
		t.Errorf("webhook: %v", err)
	}
}

// TestJobs runs the job queue benchmark small on SQLite and PostgreSQL:
// every metric is reported, and the backlog is gone.
func TestJobs(t *testing.T) {
	for _, tc := range []struct{ name, url, dialect string }{
		{"sqlite", sqliteURL(t), "sqlite"},
		{"postgres", testdb.PostgresDSN(t), "postgres"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results, err := Jobs(context.Background(), JobsConfig{DB: tc.url, Jobs: 2000, Chunk: 500, Duration: 500 * time.Millisecond, Rate: 100})
			if err != nil {
				t.Fatal(err)
			}
			checkResults(t, results, "jobs", tc.dialect, grid([]string{"ferry"}, []string{MetricDrainRate, MetricSustainedRate, MetricStartP50, MetricStartP99}))
		})
	}
}
