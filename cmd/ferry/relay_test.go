package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport/redis"
)

// syncBuffer is a buffer that the relay writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func relayConfig(t *testing.T, url string) string {
	return writeFile(t, "relay.yaml", `database: {url: "`+url+`"}
relay: {poll_interval: 20ms, rescan_interval: 100ms, shutdown_timeout: 2s}
lanes:
  online: {concurrency: 4}
  batch: {max_attempts: 1}
transports:
  console: {type: stdout}
routes:
  - {topic: "orders.*", to: console}
log: {level: debug}
`)
}

// TestRelayDelivers runs the relay on a SQLite outbox with the stdout
// destination, until it has delivered what was written, then stops it.
func TestRelayDelivers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.db")
	url := "sqlite:" + path
	cfg := relayConfig(t, url)

	// No database yet, then an empty one: the relay says how to make the
	// schema, and creates no file.
	ferryRun(t, "relay", "--config", cfg).want(t, 1,
		"err:the SQLite database "+path+" (from "+cfg+") does not exist: check the path, or create the outbox with\n  ferry migrate --config "+cfg+"\n",
		"err:or start the relay with --migrate")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ferryRun(t, "relay", "--config", cfg).want(t, 1,
		"err:the outbox table ferry_outbox does not exist in "+url+": create it with\n  ferry migrate --config "+cfg+"\n",
		"err:or start the relay with --migrate")

	// --migrate creates it; messages written meanwhile are delivered.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"relay", "--config", cfg, "--migrate"}, &stdout, &stderr) }()

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "outbox schema is up to date") {
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not migrate:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := openStore(t, path)
	write(t, st,
		ferry.Message{ID: "m1", Lane: "online", Topic: "orders.placed", Key: "k", Type: "OrderPlaced", Payload: []byte(`{"n":1}`)},
		ferry.Message{ID: "m2", Lane: "online", Topic: "orders.placed", Key: "k", Payload: []byte(`{"n":2}`)},
		ferry.Message{ID: "m3", Lane: "batch", Topic: "orders.archived", Payload: []byte("raw")},
		ferry.Message{ID: "m4", Lane: "batch", Topic: "unrouted"},
	)
	deadline = time.Now().Add(20 * time.Second)
	for strings.Count(stdout.String(), "\n") < 3 || statuses(t, st)["m4"] != ferry.StatusFailed {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered in time; stdout:\n%s\nstatuses: %v\nstderr:\n%s", stdout.String(), statuses(t, st), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after the context ended, want 0\nstderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not stop after its context ended")
	}

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	byID := map[string]map[string]any{}
	var order []string
	for _, l := range lines {
		id := l["id"].(string)
		byID[id] = l
		order = append(order, id)
	}
	if len(byID) != 3 || byID["m1"]["type"] != "OrderPlaced" || byID["m3"]["payload_base64"] != "cmF3" {
		t.Fatalf("delivered: %v", lines)
	}
	if strings.Index(strings.Join(order, ","), "m1") > strings.Index(strings.Join(order, ","), "m2") {
		t.Errorf("key k delivered out of order: %v", order)
	}
	if s := statuses(t, st); s["m1"] != ferry.StatusDone || s["m3"] != ferry.StatusDone {
		t.Errorf("statuses after the relay: %v", s)
	}
	// The unrouted message is FAILED, naming its topic.
	recs, err := st.List(context.Background(), ferry.Filter{IDs: []string{"m4"}})
	if err != nil || len(recs) != 1 || !strings.Contains(recs[0].LastError, "unrouted") {
		t.Errorf("unrouted message: %+v, %v", recs, err)
	}
	if !strings.Contains(stderr.String(), "level=INFO msg=\"ferry relay\"") {
		t.Errorf("no start-up log line in:\n%s", stderr.String())
	}

	// After an upgrade of ferry the schema is older than the relay's: it
	// says to migrate rather than run with parts of its schema missing.
	have, want, err := st.SchemaVersion(context.Background())
	if err != nil || have != want {
		t.Fatalf("SchemaVersion after --migrate: %d of %d, %v", have, want, err)
	}
	if _, err := st.DB.Exec("UPDATE ferry_outbox_schema SET version = 1"); err != nil {
		t.Fatal(err)
	}
	ferryRun(t, "relay", "--config", cfg).want(t, 1,
		fmt.Sprintf("err:the outbox schema in %s is version 1; this ferry needs version %d: upgrade it with\n  ferry migrate --config %s\n", url, want, cfg),
		"err:or start the relay with --migrate")
}

func TestRelayUsage(t *testing.T) {
	ferryRun(t, "relay").want(t, 2, "err:--config FILE is required")
	bad := writeFile(t, "bad.yaml", "database: {url: sqlite:x.db}\nlanes: {a: {weight: x}}\n")
	ferryRun(t, "relay", "--config", bad).want(t, 2, `err:bad.yaml:2:21: lanes.a.weight: must be a positive integer, got "x"`)
	ferryRun(t, "relay", "--config", bad, "--wait", "-1s").want(t, 2, "err:--wait must not be negative")
}

// TestRelayWaitsForTheDatabase points the relay at a port where nothing
// listens: it tries again until --wait runs out, then says what to check,
// without showing the password.
func TestRelayWaitsForTheDatabase(t *testing.T) {
	url := "postgres://app:s3cret@127.0.0.1:1/app?connect_timeout=1"
	cfg := relayConfig(t, url)
	start := time.Now()
	r := ferryRun(t, "relay", "--config", cfg, "--wait", "1500ms")
	r.want(t, 1, "err:database not reachable; trying again", "err:attempt=2",
		"err:is still not reachable after 1.5s", "err:check that it is running and that the URL is right, or wait longer with --wait")
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("gave up after %v, before --wait ran out", elapsed)
	}
	if strings.Contains(r.stderr, "s3cret") {
		t.Errorf("the password shows:\n%s", r.stderr)
	}

	// A wrong URL is not waited for.
	start = time.Now()
	ferryRun(t, "relay", "--config", cfg, "--db", "nosuch://x", "--wait", "1m").want(t, 1, `err:cannot tell which database "nosuch://x" is`)
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("waited %v for a URL that can never work", elapsed)
	}
}

// TestRelayToBroker runs `ferry relay` from a config with a Redis stream
// transport: what the outbox holds arrives at the broker, read back with
// ferry's subscriber; a route to a RabbitMQ exchange that does not exist
// stops the relay at start, naming the route.
func TestRelayToBroker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.db")
	stream := fmt.Sprintf("ferry-cli-%d", time.Now().UnixNano())
	cfg := writeFile(t, "relay.yaml", `database: {url: "sqlite:`+path+`"}
relay: {poll_interval: 20ms, shutdown_timeout: 2s}
lanes: {default: {concurrency: 64}}
transports:
  cache: {type: redis, url: "redis://127.0.0.1:6379/0"}
routes:
  - {topic: "orders.*", to: cache, destination: "`+stream+`"}
`)
	sub, err := redis.NewSubscriber(redis.SubscriberOptions{Addr: "redis://127.0.0.1:6379/0", ClaimIdle: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sn, err := sub.Subscribe(ctx, stream, "check")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })

	ferryRun(t, "migrate", "--config", cfg).want(t, 0)
	st := openStore(t, path)
	write(t, st,
		ferry.Message{ID: "m1", Topic: "orders.placed", Key: "order-7", Type: "OrderPlaced", Headers: map[string]string{"traceparent": "00-abc-def-01"}, Payload: []byte(`{"n":1}`)},
		ferry.Message{ID: "m2", Topic: "orders.paid", Key: "order-7", Type: "OrderPaid", Payload: []byte(`{"n":2}`)},
	)
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"relay", "--config", cfg}, &stdout, &stderr) }()
	for _, want := range []string{"m1", "m2"} {
		nctx, ncancel := context.WithTimeout(ctx, 20*time.Second)
		d, err := sn.Next(nctx)
		ncancel()
		if err != nil {
			t.Fatalf("waiting for %s at the broker: %v\nrelay's stderr:\n%s", want, err, stderr.String())
		}
		if d.ID != want || d.Key != "order-7" || d.Headers["traceparent"] != "00-abc-def-01" && want == "m1" {
			t.Errorf("received %+v, want %s in key order with its headers", d.Message, want)
		}
		d.Ack(ctx)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("relay exited %d:\n%s", code, stderr.String())
	}

	missing := writeFile(t, "missing.yaml", `database: {url: "sqlite:`+path+`"}
lanes: {default: {}}
transports:
  rabbit: {type: amqp, url: "amqp://guest:guest@127.0.0.1:5672/"}
routes:
  - {topic: "*", to: rabbit, destination: "ferry-no-such-exchange"}
`)
	r := ferryRun(t, "relay", "--config", missing)
	if r.code != 1 || !strings.Contains(r.stderr, `missing.yaml:6:5: route "*": amqp: "ferry-no-such-exchange" refused`) {
		t.Errorf("relay to a missing exchange: exit %d\n%s", r.code, r.stderr)
	}
}
