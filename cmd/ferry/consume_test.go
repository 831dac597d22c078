package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/redis"
	"github.com/ferry-dev/ferry/transport/webhook"
)

// TestConsumeForwards runs `ferry consume`: messages on a Redis stream
// reach an HTTP endpoint signed and in key order; the one the endpoint
// refuses with 422 goes to the dead-letter stream; one answered 503 once
// is retried.
func TestConsumeForwards(t *testing.T) {
	stream := fmt.Sprintf("ferry-consume-%d", time.Now().UnixNano())
	const secret = "s3cret"
	var (
		mu       sync.Mutex
		got      []string
		failedOK bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(r.Header.Get("Ferry-Signature"), body, [][]byte{[]byte(secret)}, time.Minute, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("Ferry-Id")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case id == "bad":
			http.Error(w, "unknown customer", http.StatusUnprocessableEntity)
			return
		case id == "m3" && !failedOK:
			failedOK = true
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		got = append(got, id+"="+string(body))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	cfg := writeFile(t, "consume.yaml", `transports:
  cache: {type: redis, url: "redis://127.0.0.1:6379/0"}
consumers:
  billing:
    from: cache
    topics: [`+stream+`]
    backoff: {initial: 10ms, max: 50ms}
    dead_letter: {to: cache}
    deliver: {url: "`+srv.URL+`/events", secret: `+secret+`}
log: {level: warn}
`)
	pub, err := redis.NewPublisher(redis.PublisherOptions{Addr: "redis://127.0.0.1:6379/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"m1", "m2", "bad", "m3", "m4"} {
		if err := pub.Publish(ctx, stream, &transport.Message{ID: id, Key: "customer-7", Type: "Charged", Payload: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	dead, err := redis.NewSubscriber(redis.SubscriberOptions{Addr: "redis://127.0.0.1:6379/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	deadSub, err := dead.Subscribe(ctx, stream+".dead", "ops")
	if err != nil {
		t.Fatal(err)
	}
	defer deadSub.Close()

	var stderr syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"consume", "--config", cfg}, io.Discard, &stderr) }()
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	d, err := deadSub.Next(dctx)
	dcancel()
	if err != nil {
		t.Fatalf("dead letter: %v\n%s", err, stderr.String())
	}
	if d.ID != "bad" || !strings.Contains(d.Headers["dead-letter-reason"], "422") || d.Headers["dead-letter-consumer"] != "billing" {
		t.Errorf("dead letter %s with headers %v", d.ID, d.Headers)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("ferry consume exited %d:\n%s", code, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, " ") != "m1=m1 m2=m2 m3=m3 m4=m4" {
		t.Errorf("the endpoint got %v; want m1..m4 in key order, m3 after its retry", got)
	}
}

func TestConsumeConfigProblems(t *testing.T) {
	cfg := writeFile(t, "consume.yaml", `transports:
  hooks: {type: webhook}
consumers:
  billing:
    from: hooks
    topics: []
    order: keyed
    deliver: {url: "localhost:8080"}
`)
	r := ferryRun(t, "consume", "--config", cfg)
	for _, want := range []string{
		`consume.yaml:5:11: consumers.billing.from: transport "hooks" is a webhook: ferry cannot read from it`,
		`consumers.billing.topics: is required`,
		`consumers.billing.order: must be one of key, partition, unordered, got "keyed"`,
		`consumers.billing.deliver.url: "localhost:8080" is not an http:// or https:// URL`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r.code != 2 {
		t.Errorf("exit %d, want 2", r.code)
	}
}

func TestConfigCheckConsume(t *testing.T) {
	cfg := writeFile(t, "consume.yaml", `transports:
  events: {type: kafka, brokers: [localhost:9092]}
consumers:
  billing: {from: events, topics: [orders], order: partition, deliver: {url: "http://localhost:8080/events"}}
`)
	r := ferryRun(t, "config", "check", cfg)
	r.want(t, 0, "out:"+cfg+": ok\n", "out:  consumers: 1\n", "out:    billing\tfrom events [orders], partition order -> http://localhost:8080/events\n")
}

// TestConsumeInbox: with an inbox, a message that comes twice under the
// same id reaches the service once.
func TestConsumeInbox(t *testing.T) {
	stream := fmt.Sprintf("ferry-consume-inbox-%d", time.Now().UnixNano())
	var (
		mu  sync.Mutex
		got []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Ferry-Id"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	cfg := writeFile(t, "consume.yaml", `transports:
  cache: {type: redis, url: "redis://127.0.0.1:6379/0"}
consumers:
  billing: {from: cache, topics: [`+stream+`], deliver: {url: "`+srv.URL+`"}}
inbox: {database: "sqlite:`+filepath.Join(t.TempDir(), "inbox.db")+`"}
log: {level: warn}
`)
	pub, err := redis.NewPublisher(redis.PublisherOptions{Addr: "redis://127.0.0.1:6379/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"m1", "m2", "m1", "m3"} { // m1 published twice, as a producer's retry would
		if err := pub.Publish(ctx, stream, &transport.Message{ID: id, Key: "k", Payload: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	var stderr syncBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"consume", "--config", cfg}, io.Discard, &stderr) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		last := len(got) > 0 && got[len(got)-1] == "m3"
		mu.Unlock()
		if last || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("ferry consume exited %d:\n%s", code, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, " ") != "m1 m2 m3" {
		t.Errorf("the service got %v, want m1 m2 m3: the second m1 must be skipped", got)
	}
}
