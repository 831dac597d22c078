package config

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/tcpproxy"
	"github.com/ferry-dev/ferry/internal/testcert"
)

// TestTransportsOverTLS configures each broker transport with a tls
// section naming a private CA, as a user would, and sends a message
// through a server that speaks only TLS with a certificate that CA
// signed: kfake and nats-server with their own TLS, RabbitMQ and Redis
// behind a TLS-terminating proxy (the machine's brokers speak plain TCP),
// and an HTTPS receiver that requires a client certificate. Each message
// is read back with the transport's own subscriber.
func TestTransportsOverTLS(t *testing.T) {
	certs := testcert.New(t)
	caOnly := fmt.Sprintf("{ca_file: %q}", certs.CAFile)
	name := fmt.Sprintf("ferrytls%d", time.Now().UnixNano())

	t.Run("kafka", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.TLS(certs.ServerConfig(false)), kfake.SeedTopics(1, name))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, fmt.Sprintf("{type: kafka, brokers: %q, tls: %s}", c.ListenAddrs()[0], caOnly), name)
	})
	t.Run("nats", func(t *testing.T) {
		addr := natsServerTLS(t, certs)
		const transport = "{type: nats, url: \"nats://%s\", streams: [{name: %s, subjects: [%s], storage: memory}], tls: %s}"
		roundTrip(t, fmt.Sprintf(transport, addr, name, name, caOnly), name)

		// Trusting only the system's authorities, the client cannot
		// connect; the publish that gives up says why.
		b := build(t, fmt.Sprintf(transport, addr, name+"x", name+"x", "{}"), name+"x")
		defer b.Close()
		if err := deliverWithin(b, "tls-2", 2*time.Second); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("publish with an untrusted server certificate: %v, want the TLS error", err)
		}
	})
	t.Run("amqp", func(t *testing.T) {
		p := tlsProxy(t, "127.0.0.1:5672", certs)
		roundTrip(t, fmt.Sprintf("{type: amqp, url: \"amqps://guest:guest@%s/\", exchanges: [{name: %s, kind: fanout, auto_delete: true}], tls: %s}", p.Addr(), name, caOnly), name)
	})
	t.Run("redis", func(t *testing.T) {
		p := tlsProxy(t, "127.0.0.1:6379", certs)
		roundTrip(t, fmt.Sprintf("{type: redis, url: \"redis://%s/0\", tls: %s}", p.Addr(), caOnly), name)
	})
	t.Run("webhook", func(t *testing.T) {
		got := make(chan string, 1)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- r.Header.Get("Ferry-Id")
		}))
		srv.TLS = certs.ServerConfig(true) // mutual TLS: a client certificate is required
		srv.StartTLS()
		defer srv.Close()
		mutual := fmt.Sprintf("{ca_file: %q, cert_file: %q, key_file: %q}", certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile)
		b := build(t, fmt.Sprintf("{type: webhook, base_url: %q, tls: %s}", srv.URL, mutual), "hook")
		defer b.Close()
		if err := deliver(b, "tls-1"); err != nil {
			t.Fatal(err)
		}
		if id := <-got; id != "tls-1" {
			t.Errorf("the receiver got message %q, want tls-1", id)
		}

		// Without the client certificate, or without the CA, the
		// handshake fails and says why.
		for tlsSection, want := range map[string]string{
			caOnly: "certificate required",
			"":     "certificate signed by unknown authority",
		} {
			transport := fmt.Sprintf("{type: webhook, base_url: %q}", srv.URL)
			if tlsSection != "" {
				transport = fmt.Sprintf("{type: webhook, base_url: %q, tls: %s}", srv.URL, tlsSection)
			}
			b := build(t, transport, "hook")
			err := deliver(b, "tls-2")
			b.Close()
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("tls %q: %v, want an error containing %q", tlsSection, err, want)
			}
		}
	})
}

// roundTrip builds a relay config with the one transport described by
// transportYAML and a route to dest, subscribes to dest with the
// transport's subscriber, delivers one message through the route and
// reads it back.
func roundTrip(t *testing.T, transportYAML, dest string) {
	t.Helper()
	b := build(t, transportYAML, dest)
	defer b.Close()
	sub, err := b.transports[0].subscriber()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sn, err := sub.Subscribe(ctx, dest, "tls-test")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sn.Close()
	if err := deliver(b, "tls-1"); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	d, err := sn.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if d.ID != "tls-1" || string(d.Payload) != `{"over":"tls"}` {
		t.Errorf("read back message %q with payload %q", d.ID, d.Payload)
	}
	if err := d.Ack(ctx); err != nil {
		t.Errorf("Ack: %v", err)
	}
}

// build parses and builds a config with one transport and one route to
// dest.
func build(t *testing.T, transportYAML, dest string) *Built {
	t.Helper()
	yaml := fmt.Sprintf("database: {url: \"sqlite:ferry.db\"}\nlanes: {default: {}}\ntransports:\n  tr: %s\nroutes:\n  - {topic: \"*\", to: tr, destination: %q}\n", transportYAML, dest)
	c, err := parse([]byte(yaml), "relay.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Build(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deliver sends one message with id through b's only route.
func deliver(b *Built, id string) error { return deliverWithin(b, id, 10*time.Second) }

// deliverWithin is deliver giving up after d.
func deliverWithin(b *Built, id string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r := &ferry.Record{Message: ferry.Message{ID: id, Topic: "orders.placed", Key: "k", Payload: []byte(`{"over":"tls"}`)}}
	return b.Options.Routes[0].Destination.Deliver(ctx, r)
}

// tlsProxy is a proxy that speaks TLS with the test certificate in front
// of the plain server at target.
func tlsProxy(t *testing.T, target string, certs *testcert.Set) *tcpproxy.Proxy {
	p, err := tcpproxy.NewTLS(target, certs.ServerConfig(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// natsServerTLS starts a nats-server with JetStream that requires TLS,
// and returns its address.
func natsServerTLS(t *testing.T, certs *testcert.Set) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server is not installed (%v): install it with bash scripts/services.sh nats", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", t.TempDir(),
		"--tls", "--tlscert", certs.ServerCertFile, "--tlskey", certs.ServerKeyFile)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
