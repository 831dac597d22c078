package config

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/transport/webhook"
)

// brokers is a config with one transport of each broker type, on the
// machine's real brokers.
const brokers = `database: {url: "sqlite:ferry.db"}
lanes: {default: {}}
transports:
  events: {type: kafka, brokers: "127.0.0.1:1, 127.0.0.1:2", compression: zstd, acks: all, sasl: {mechanism: SCRAM-SHA-512, user: ferry, password: x}}
  bus:
    type: nats
    url: nats://127.0.0.1:4222
    streams: [{name: %[1]s, subjects: ["%[1]s.>"], storage: memory, max_age: 1h}]
  rabbit:
    type: amqp
    url: amqp://guest:guest@127.0.0.1:5672/
    routing_key: "{type}"
    exchanges: [{name: %[1]s-x, kind: fanout, auto_delete: true}]
  cache: {type: redis, url: "redis://127.0.0.1:6379/0", mode: pubsub}
  hooks: {type: webhook, base_url: "http://127.0.0.1:1/hooks/", secrets: [new, old], retry_status: [409], headers: {X-Team: payments}}
  console: {type: stdout}
routes:
  - {topic: "orders.*", to: bus, destination: "%[1]s.{type}"}
  - {topic: "bus.missing", to: bus, destination: "nowhere.at.all"}
  - {topic: "rabbit.*", to: rabbit, destination: %[1]s-x}
  - {topic: "rabbit.missing", to: rabbit, destination: %[1]s-missing}
  - {topic: "cache.*", to: cache}
  - {topic: "hooks.*", to: hooks, destination: "{key}"}
  - {topic: "events.*", to: events, destination: payments}
  - {topic: "*", to: console}
`

// TestBrokerTransports builds one transport of each type and asks the
// real NATS and RabbitMQ about the routes' destinations: those that do not
// exist stop the relay at start, naming the route.
func TestBrokerTransports(t *testing.T) {
	name := fmt.Sprintf("ferrycfg%d", time.Now().UnixNano())
	c, err := parse(fmt.Appendf(nil, brokers, name), "relay.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Transports) != 6 || string(c.Routes[0].Destination) != name+".{type}" || c.Routes[4].Destination != "{topic}" {
		t.Fatalf("transports %+v, routes %+v", c.Transports, c.Routes)
	}
	b, err := c.Build(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	refused, unchecked := b.Check(ctx)
	if refused == nil {
		t.Fatal("Check found no refused destination; want the missing NATS subject and RabbitMQ exchange")
	}
	for _, want := range []string{`relay.yaml:19:5: route "bus.missing"`, "nowhere.at.all", `relay.yaml:21:5: route "rabbit.missing"`, name + "-missing"} {
		if !strings.Contains(refused.Error(), want) {
			t.Errorf("refused: %v\nwant it to mention %q", refused, want)
		}
	}
	for _, ok := range []string{`"orders.*"`, `"rabbit.*"`} {
		if strings.Contains(refused.Error(), ok) {
			t.Errorf("refused: %v\nbut the route %s has a destination that exists", refused, ok)
		}
	}
	// Kafka's brokers are unreachable: its route could not be checked,
	// which is not a refusal (the relay retries).
	if len(unchecked) != 1 || !strings.Contains(unchecked[0].Error(), `"events.*"`) {
		t.Errorf("unchecked = %v, want the kafka route only", unchecked)
	}
}

func TestBrokerTransportProblems(t *testing.T) {
	yaml := `database: {url: "sqlite:ferry.db"}
lanes: {default: {}}
transports:
  events: {type: kafka, acks: some, compression: brotli}
  bus: {type: nats, streams: [{subjects: "a.>"}]}
  rabbit: {type: amqp, url: "amqp://x", exchanges: [{name: x, kind: topik}], tls: {}}
  cache: {type: redis, mode: pubsib}
  hooks: {type: webhook, retry_status: [200, abc], tls: {ca_file: /nonexistent/ca.pem}}
  console: {type: stdout}
routes:
  - {topic: "a", to: console, destination: x}
  - {topic: "b", to: bus, destination: "{tpoic}"}
  - {topic: "c", to: rabbit, routing_key: "{tpye}"}
  - {topic: "d", to: bus, max_len: 5}
  - {topic: "e", to: hooks, timeout: soon, headers: [x]}
  - {topic: "f", to: nosuch, routing_key: x}
  - {topic: "g", to: cache, max_len: -3}
`
	_, err := parse([]byte(yaml), "relay.yaml", noEnv)
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got %v, want problems", err)
	}
	got := err.Error()
	for _, want := range []string{
		`relay.yaml:4:3: transports.events.brokers: is required`,
		`transports.events.acks: must be one of all, leader, got "some"`,
		`transports.events.compression: must be one of none, gzip, snappy, lz4, zstd, got "brotli"`,
		`transports.bus.url: is required`,
		`transports.bus.streams[0].name: is required`,
		`transports.rabbit.exchanges[0].kind: must be one of direct, topic, fanout, headers, got "topik"; did you mean "topic"?`,
		`transports.rabbit.tls: TLS settings need an amqps:// url`,
		`transports.cache.mode: must be one of streams, pubsub, got "pubsib"; did you mean "pubsub"?`,
		`transports.hooks.retry_status: "200" is not an HTTP status from 300 to 599`,
		`transports.hooks.retry_status: "abc" is not an HTTP status`,
		`transports.hooks.tls.ca_file: cannot read /nonexistent/ca.pem`,
		`routes[0].destination: transport "console" (stdout) takes every message it is given and has no destinations`,
		`routes[1].destination: destination "{tpoic}": unknown placeholder`,
		`routes[2].routing_key: RoutingKey "{tpye}": unknown placeholder: the placeholders are {topic}, {key} and {type}`,
		`routes[3].max_len: unknown key "max_len" (known keys: topic, to, destination)`,
		`routes[4].timeout: must be a duration`,
		`routes[4].headers: must be a mapping`,
		`routes[5].to: transport "nosuch" is not defined`,
		`routes[6].max_len: must be a positive integer`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems do not include %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "routes[5].routing_key") {
		t.Errorf("a route to an undefined transport has its settings reported as unknown keys too:\n%s", got)
	}
}

// TestRouteSettings: routes to one webhook transport, one with its own
// credentials, push through the transport's connections with the route's
// settings.
func TestRouteSettings(t *testing.T) {
	var (
		mu   sync.Mutex
		seen = map[string]*http.Request{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	yaml := `database: {url: "sqlite:ferry.db"}
lanes: {default: {}}
transports:
  hooks: {type: webhook, base_url: "` + srv.URL + `", secret: ours, headers: {Authorization: Bearer ours, X-Team: payments}}
routes:
  - {topic: "partner.*", to: hooks, destination: partner, secret: theirs, headers: {Authorization: Bearer theirs}, timeout: 3s}
  - {topic: "*", to: hooks, destination: own}
`
	c, err := parse([]byte(yaml), "relay.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Build(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, r := range b.Options.Routes {
		rec := &ferry.Record{Message: ferry.Message{ID: "m-" + r.Topic, Topic: "partner.orders", Payload: []byte("{}")}}
		if err := r.Destination.Deliver(context.Background(), rec); err != nil {
			t.Fatalf("route %q: %v", r.Topic, err)
		}
	}
	for path, want := range map[string]struct{ auth, secret string }{
		"/partner": {"Bearer theirs", "theirs"},
		"/own":     {"Bearer ours", "ours"},
	} {
		r := seen[path]
		if r == nil {
			t.Fatalf("nothing pushed to %s", path)
		}
		if got := r.Header.Get("Authorization"); got != want.auth {
			t.Errorf("%s: Authorization %q, want %q", path, got, want.auth)
		}
		if got := r.Header.Get("X-Team"); got != "payments" {
			t.Errorf("%s: X-Team %q, want the transport's header", path, got)
		}
		if err := webhook.Verify(r.Header.Get(webhook.SignatureHeader), []byte("{}"), [][]byte{[]byte(want.secret)}, time.Minute, time.Now()); err != nil {
			t.Errorf("%s: signature with secret %q: %v", path, want.secret, err)
		}
	}
}
