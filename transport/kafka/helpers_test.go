package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The tests share one in-process Kafka (kfake) with a single broker, so
// that a dialer that sends every connection to one address (a TCP proxy
// in front of the broker) reaches the whole cluster.
var (
	clusterOnce sync.Once
	cluster     *kfake.Cluster
	clusterAddr string
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		cluster.Close()
	}
	os.Exit(code)
}

// testCluster returns the address of the shared cluster, starting it.
func testCluster(t testing.TB) string {
	t.Helper()
	clusterOnce.Do(func() {
		cluster, clusterErr = kfake.NewCluster(
			kfake.NumBrokers(1),
			// Short sessions let a dead member's partitions move quickly.
			kfake.GroupMinSessionTimeout(500*time.Millisecond),
		)
		if clusterErr == nil {
			clusterAddr = cluster.ListenAddrs()[0]
		}
	})
	if clusterErr != nil {
		t.Fatalf("start kfake: %v", clusterErr)
	}
	return clusterAddr
}

// testLogger logs the client's errors, or everything from debug up when
// FERRY_TEST_LOG=debug.
func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("FERRY_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	if os.Getenv("FERRY_TEST_LOG") == "trace" {
		level = slog.LevelDebug - 4
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

var topicSeq atomic.Int64

var notTopicChar = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// newTopic creates a topic for t alone.
func newTopic(t testing.TB, partitions int32, configs map[string]*string) string {
	t.Helper()
	addr := testCluster(t)
	name := fmt.Sprintf("t%d-%s", topicSeq.Add(1), notTopicChar.ReplaceAllString(t.Name(), "_"))
	if len(name) > 200 {
		name = name[:200]
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

// via dials addr whatever broker the client asks for: the cluster has one
// broker, which addr (a proxy) leads to.
func via(addr string) DialFunc {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

func newPublisher(t testing.TB, addr string, edit func(*PublisherOptions)) *Publisher {
	t.Helper()
	o := PublisherOptions{Brokers: []string{addr}, Dialer: via(addr), Logger: testLogger()}
	if edit != nil {
		edit(&o)
	}
	p, err := NewPublisher(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// testSubscriberOptions are quick to notice a dead member and to commit.
func testSubscriberOptions(addr string) SubscriberOptions {
	return SubscriberOptions{
		Brokers:           []string{addr},
		Dialer:            via(addr),
		SessionTimeout:    3 * time.Second,
		HeartbeatInterval: 250 * time.Millisecond,
		CommitInterval:    50 * time.Millisecond,
		CloseTimeout:      3 * time.Second,
		Logger:            testLogger(),
	}
}

func newSubscriber(t testing.TB, addr string, edit func(*SubscriberOptions)) *Subscriber {
	t.Helper()
	o := testSubscriberOptions(addr)
	if edit != nil {
		edit(&o)
	}
	s, err := NewSubscriber(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func subscribe(t testing.TB, s *Subscriber, topic, group string) *subscription {
	t.Helper()
	sn, err := s.Subscribe(context.Background(), topic, group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn.(*subscription)
}

// crash stops sn as a killed process would: nothing more is committed.
// The member leaves the group at once, which a dead one does only at its
// session timeout, to keep the tests quick.
func (sn *subscription) crash() {
	sn.mu.Lock()
	sn.closed = true
	close(sn.done)
	for _, p := range sn.parts {
		sn.drop(p)
	}
	sn.mu.Unlock()
	sn.cancel()
	sn.wg.Wait()
	sn.cl.Close()
	sn.s.forget(sn)
}

// committed returns the group's committed offset and metadata for a
// partition, or -1.
func committed(t testing.TB, topic, group string, partition int32) (int64, string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(testCluster(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup(topic, partition)
	if !ok {
		return -1, ""
	}
	return o.At, o.Metadata
}

// waitFor polls cond until it holds or fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func nextWithin(t testing.TB, sn *subscription, d time.Duration) *deliveryT {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	del, err := sn.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return del
}

// newSASLCluster starts a cluster of its own that requires SASL, with the
// user ferry/secret for PLAIN and SCRAM-SHA-256, and the topic sasl-topic.
func newSASLCluster() (*kfake.Cluster, error) {
	return kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "ferry", "secret"),
		kfake.Superuser("SCRAM-SHA-256", "ferry", "secret"),
		kfake.SeedTopics(1, "sasl-topic"),
	)
}
