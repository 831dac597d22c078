package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ferry-dev/ferry/transport"
)

// kcatRecord is a record as kcat, an independent Kafka client, reads it.
type kcatRecord struct {
	partition int
	offset    int64
	key       string
	headers   map[string]string
	value     string
}

// kcatRead reads every record of topic with kcat.
func kcatRead(t *testing.T, topic string) []kcatRecord {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is needed to check what ferry publishes with an independent client (apt-get install kcat): %v", err)
	}
	// Fields are separated by ASCII unit separators, records by record
	// separators, which no test data holds.
	cmd := exec.Command(kcat, "-C", "-b", testCluster(t), "-t", topic, "-e", "-q",
		"-f", "%p\x1f%o\x1f%k\x1f%h\x1f%s\x1e")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, stderr.String())
	}
	var recs []kcatRecord
	for line := range strings.SplitSeq(string(out), "\x1e") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\x1f")
		if len(f) != 5 {
			t.Fatalf("kcat printed %q", line)
		}
		p, _ := strconv.Atoi(f[0])
		o, _ := strconv.ParseInt(f[1], 10, 64)
		r := kcatRecord{partition: p, offset: o, key: f[2], value: f[4], headers: map[string]string{}}
		if f[3] != "" {
			for kv := range strings.SplitSeq(f[3], ",") {
				k, v, _ := strings.Cut(kv, "=")
				r.headers[k] = v
			}
		}
		recs = append(recs, r)
	}
	return recs
}

// What ferry publishes is what a standard Kafka client reads: the key as
// the record key, the payload as the value, the fields and headers as
// record headers, and the messages of a key in one partition in order.
func TestKcatReadsWhatFerryPublishes(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 4, nil)
	p := newPublisher(t, addr, nil)
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

	const keys, perKey = 6, 10
	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() {
			for i := range perKey {
				m := &transport.Message{
					ID: fmt.Sprintf("id-%d-%d", k, i), Topic: "orders", Key: fmt.Sprintf("key-%d", k), Type: "OrderPlaced",
					Headers:    map[string]string{"tenant": "acme", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
					Payload:    []byte(fmt.Sprintf(`{"key":%d,"seq":%d}`, k, i)),
					OccurredAt: at,
				}
				if err := p.Publish(context.Background(), topic, m); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	recs := kcatRead(t, topic)
	if len(recs) != keys*perKey {
		t.Fatalf("kcat read %d records, want %d", len(recs), keys*perKey)
	}
	partitionOf := map[string]int{}
	lastSeq := map[string]int{}
	for _, r := range recs {
		var k, seq int
		if _, err := fmt.Sscanf(r.value, `{"key":%d,"seq":%d}`, &k, &seq); err != nil {
			t.Fatalf("value %q: %v", r.value, err)
		}
		if want := fmt.Sprintf("key-%d", k); r.key != want {
			t.Errorf("record key %q, want %q", r.key, want)
		}
		want := map[string]string{
			"ferry-id": fmt.Sprintf("id-%d-%d", k, seq), "ferry-topic": "orders", "ferry-key": r.key,
			"ferry-type": "OrderPlaced", "ferry-occurred-at": "2026-03-01T12:00:00.123456789Z",
			"tenant": "acme", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		}
		if fmt.Sprint(r.headers) != fmt.Sprint(want) {
			t.Errorf("headers %v, want %v", r.headers, want)
		}
		if p, seen := partitionOf[r.key]; seen && p != r.partition {
			t.Errorf("key %s in partitions %d and %d", r.key, p, r.partition)
		}
		partitionOf[r.key] = r.partition
		if prev, seen := lastSeq[r.key]; seen && seq != prev+1 {
			t.Errorf("key %s: seq %d after %d", r.key, seq, prev)
		}
		lastSeq[r.key] = seq
	}
}

func TestKcatReadsCloudEvents(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 1, nil)
	p := newPublisher(t, addr, func(o *PublisherOptions) {
		o.Format = transport.FormatCloudEvents
		o.Source = "/shop/orders"
	})
	m := &transport.Message{ID: "e1", Topic: "orders", Key: "c42", Type: "OrderPlaced",
		Headers: map[string]string{"content-type": "application/json"}, Payload: []byte(`{}`),
		OccurredAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := p.Publish(context.Background(), topic, m); err != nil {
		t.Fatal(err)
	}
	recs := kcatRead(t, topic)
	if len(recs) != 1 {
		t.Fatalf("kcat read %d records", len(recs))
	}
	want := map[string]string{
		"ce_specversion": "1.0", "ce_id": "e1", "ce_source": "/shop/orders", "ce_type": "OrderPlaced",
		"ce_time": "2026-03-01T12:00:00Z", "ce_subject": "orders", "ce_partitionkey": "c42",
		"content-type": "application/json",
	}
	if fmt.Sprint(recs[0].headers) != fmt.Sprint(want) || recs[0].key != "c42" || recs[0].value != "{}" {
		t.Errorf("kcat read key %q value %q headers %v, want headers %v", recs[0].key, recs[0].value, recs[0].headers, want)
	}

	// And ferry reads it back as the message it was.
	sn := subscribe(t, newSubscriber(t, addr, nil), topic, "g")
	d := nextWithin(t, sn, 20*time.Second)
	if d.ID != "e1" || d.Type != "OrderPlaced" || d.Key != "c42" || d.Topic != "orders" || !d.OccurredAt.Equal(m.OccurredAt) || d.Headers["content-type"] != "application/json" {
		t.Errorf("read back %+v", d.Message)
	}
}

// Records that another client produced make usable messages: the
// record's key, topic and timestamp, and an ID from the position.
func TestReadsWhatKcatProduces(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 1, nil)
	cmd := exec.Command("kcat", "-P", "-b", addr, "-t", topic, "-K", ":", "-H", "origin=kcat")
	cmd.Stdin = strings.NewReader("k1:hello\nk2:world\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v: %s", err, out)
	}
	sn := subscribe(t, newSubscriber(t, addr, nil), topic, "g")
	for i, want := range []struct{ key, value string }{{"k1", "hello"}, {"k2", "world"}} {
		d := nextWithin(t, sn, 20*time.Second)
		if d.Key != want.key || string(d.Payload) != want.value || d.Headers["origin"] != "kcat" || d.Topic != topic {
			t.Errorf("record %d: key %q payload %q headers %v topic %q", i, d.Key, d.Payload, d.Headers, d.Topic)
		}
		if wantID := fmt.Sprintf("kafka:%s/0/%d", topic, i); d.ID != wantID {
			t.Errorf("record %d: ID %q, want %q", i, d.ID, wantID)
		}
		if time.Since(d.OccurredAt) > time.Minute {
			t.Errorf("record %d: OccurredAt %v is not the record's timestamp", i, d.OccurredAt)
		}
		d.Ack(context.Background())
	}
}

func rejected(t *testing.T, err error, reason string) *transport.RejectedError {
	t.Helper()
	var r *transport.RejectedError
	if !errors.As(err, &r) {
		t.Fatalf("error %v (%T), want a *transport.RejectedError", err, err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("error %q does not say %q", err, reason)
	}
	if r.Hint == "" {
		t.Errorf("error %q has no hint", err)
	}
	return r
}

// A message over the topic's limit is refused; the messages that shared
// its batch are not.
func TestTooLargeRefusesOnlyTheLargeMessage(t *testing.T) {
	addr := testCluster(t)
	limit := "4000"
	topic := newTopic(t, 1, map[string]*string{"max.message.bytes": &limit})
	p := newPublisher(t, addr, func(o *PublisherOptions) { o.Linger = 20 * time.Millisecond })

	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Go(func() {
			m := &transport.Message{ID: fmt.Sprint(i), Payload: bytes.Repeat([]byte("x"), 300)}
			if i == 20 {
				m.Payload = bytes.Repeat([]byte("x"), 5000)
			}
			errs[i] = p.Publish(context.Background(), topic, m)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 20 {
			r := rejected(t, err, "MESSAGE_TOO_LARGE")
			if r.MessageID != "20" || r.Dest != topic || !errors.Is(err, kerr.MessageTooLarge) {
				t.Errorf("rejection %+v", r)
			}
			continue
		}
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if n := len(kcatRead(t, topic)); n != 39 {
		t.Errorf("the topic has %d records, want 39", n)
	}
}

func TestRejections(t *testing.T) {
	addr := testCluster(t)
	p := newPublisher(t, addr, func(o *PublisherOptions) { o.MaxBatchBytes = 10000 })
	ctx := context.Background()

	start := time.Now()
	err := p.Publish(ctx, "no-such-topic", &transport.Message{ID: "a"})
	rejected(t, err, "UNKNOWN_TOPIC_OR_PARTITION")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("refusing an unknown topic took %v", took)
	}
	t.Logf("unknown topic refused in %v", time.Since(start).Round(time.Millisecond))

	rejected(t, p.Publish(ctx, "bad/topic", &transport.Message{ID: "b"}), `'/'`)
	rejected(t, p.Publish(ctx, "", &transport.Message{ID: "c"}), "empty")

	topic := newTopic(t, 1, nil)
	r := rejected(t, p.Publish(ctx, topic, &transport.Message{ID: "d", Payload: make([]byte, 20000)}), "MaxBatchBytes of 10000")
	if !errors.Is(r, kerr.MessageTooLarge) {
		t.Errorf("client-side refusal does not wrap kerr.MessageTooLarge: %v", r)
	}
	if err := p.Publish(ctx, topic, &transport.Message{ID: "e"}); err != nil {
		t.Errorf("after the refusals: %v", err)
	}
}

func TestCheck(t *testing.T) {
	addr := testCluster(t)
	p := newPublisher(t, addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Check(ctx, newTopic(t, 1, nil)); err != nil {
		t.Errorf("Check of an existing topic: %v", err)
	}
	err := p.Check(ctx, "missing-topic")
	if !errors.Is(err, kerr.UnknownTopicOrPartition) || !transport.IsRejected(err) || !strings.Contains(err.Error(), `"missing-topic" refused: the topic does not exist`) {
		t.Errorf("Check of a missing topic: %v", err)
	}
	if err := p.Check(ctx, "bad topic"); err == nil {
		t.Error("Check of an invalid name: nil")
	}
}

func TestPublishHonoursContextWhileDown(t *testing.T) {
	// Nothing listens on this port's address: every dial is refused.
	p := newPublisher(t, "127.0.0.1:1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Publish(ctx, "t", &transport.Message{ID: "x"})
	if !errors.Is(err, context.DeadlineExceeded) || transport.IsRejected(err) {
		t.Errorf("Publish while down: %v, want the context's deadline", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Publish returned %v after its context ended", took)
	}
}

func TestPublishAfterClose(t *testing.T) {
	p := newPublisher(t, testCluster(t), nil)
	p.Close()
	if err := p.Publish(context.Background(), "t", &transport.Message{}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSASL(t *testing.T) {
	c, err := newSASLCluster()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	topic := "sasl-topic"
	for _, mech := range []string{"SCRAM-SHA-256", "PLAIN"} {
		p, err := NewPublisher(PublisherOptions{Brokers: []string{addr}, Logger: testLogger(),
			SASL: &SASL{Mechanism: mech, User: "ferry", Password: "secret"}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := p.Publish(ctx, topic, &transport.Message{ID: mech}); err != nil {
			t.Errorf("%s: %v", mech, err)
		}
		cancel()
		p.Close()
	}

	p, err := NewPublisher(PublisherOptions{Brokers: []string{addr}, Logger: testLogger(),
		SASL: &SASL{Mechanism: "SCRAM-SHA-256", User: "ferry", Password: "wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.Publish(ctx, topic, &transport.Message{ID: "x"}); err == nil {
		t.Error("Publish with a wrong password: nil")
	} else {
		t.Logf("wrong password: %v", err)
	}
}

func TestPublisherOptions(t *testing.T) {
	for _, tc := range []struct {
		o    PublisherOptions
		want string
	}{
		{PublisherOptions{}, "Brokers is empty"},
		{PublisherOptions{Brokers: []string{""}}, "not a broker address"},
		{PublisherOptions{Brokers: []string{"h:1"}, Compression: "brotli"}, "brotli"},
		{PublisherOptions{Brokers: []string{"h:1"}, MaxBatchBytes: 10}, "MaxBatchBytes"},
		{PublisherOptions{Brokers: []string{"h:1"}, Linger: -1}, "Linger"},
		{PublisherOptions{Brokers: []string{"h:1"}, Format: 9}, "Format"},
		{PublisherOptions{Brokers: []string{"h:1"}, Acks: 5}, "Acks"},
		{PublisherOptions{Brokers: []string{"h:1"}, SASL: &SASL{Mechanism: "PLAIN"}}, "SASL.User"},
	} {
		_, err := NewPublisher(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewPublisher(%+v): %v, want an error about %s", tc.o, err, tc.want)
		}
	}
	for _, c := range []Compression{"", CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, "ZSTD"} {
		p, err := NewPublisher(PublisherOptions{Brokers: []string{"h:1"}, Compression: c})
		if err != nil {
			t.Errorf("Compression %q: %v", c, err)
			continue
		}
		p.Close()
	}
}

// Every codec produces records a standard client reads.
func TestCompression(t *testing.T) {
	addr := testCluster(t)
	for _, c := range []Compression{CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd} {
		topic := newTopic(t, 1, nil)
		p := newPublisher(t, addr, func(o *PublisherOptions) { o.Compression = c })
		for i := range 3 {
			if err := p.Publish(context.Background(), topic, &transport.Message{ID: fmt.Sprint(i), Payload: []byte(strings.Repeat("abc", 100))}); err != nil {
				t.Fatalf("%s: %v", c, err)
			}
		}
		recs := kcatRead(t, topic)
		if len(recs) != 3 || recs[2].value != strings.Repeat("abc", 100) {
			t.Errorf("%s: kcat read %d records", c, len(recs))
		}
	}
}

func TestParseBrokers(t *testing.T) {
	got := ParseBrokers(" kafka://k1:9092, k2:9092/ ,,")
	if !slices.Equal(got, []string{"k1:9092", "k2:9092"}) {
		t.Errorf("ParseBrokers: %q", got)
	}
}
