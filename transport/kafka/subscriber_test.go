package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
)

type deliveryT = transport.Delivery

func publishN(t *testing.T, p *Publisher, topic string, n int, key func(i int) string) []*transport.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var msgs []*transport.Message
	for i := range n {
		m := &transport.Message{ID: fmt.Sprintf("m%03d", i), Topic: topic, Key: key(i), Type: "T", Payload: []byte(fmt.Sprintf("payload %d", i))}
		if err := p.Publish(ctx, topic, m); err != nil {
			t.Fatalf("Publish(%s): %v", m.ID, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func sameKey(int) string { return "k" }

// The case: a consumer killed mid-batch, with offsets 4, 6 and 7
// completed and 5 not, redoes only 5 after a restart (and what it never
// acknowledged), not 6 and 7.
func TestRestartRedoesOnlyWhatWasNotDone(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 1, nil)
	p := newPublisher(t, addr, nil)
	publishN(t, p, topic, 10, sameKey)

	sub := newSubscriber(t, addr, nil)
	first := subscribe(t, sub, topic, "g")
	for want := range int64(10) {
		d := nextWithin(t, first, 20*time.Second)
		if d.Offset != want || d.Partition != 0 {
			t.Fatalf("got partition %d offset %d, want 0/%d", d.Partition, d.Offset, want)
		}
		if d.Redelivered != 0 {
			t.Errorf("offset %d: Redelivered = %d on first delivery", d.Offset, d.Redelivered)
		}
		// Done out of order: 0-4, then 6 and 7; 5, 8 and 9 still running.
		if want != 5 && want < 8 {
			if err := d.Ack(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 10*time.Second, "offset 5 committed with 6 and 7 done", func() bool {
		off, meta := committed(t, topic, "g", 0)
		return off == 5 && meta == "ferry1:4:1-2"
	})
	first.crash()

	second := subscribe(t, newSubscriber(t, addr, nil), topic, "g")
	var got []int64
	for range 3 {
		d := nextWithin(t, second, 20*time.Second)
		got = append(got, d.Offset)
		if d.Redelivered != 1 {
			t.Errorf("offset %d: Redelivered = %d after the restart, want 1", d.Offset, d.Redelivered)
		}
		if d.ID != fmt.Sprintf("m%03d", d.Offset) {
			t.Errorf("offset %d has message %s", d.Offset, d.ID)
		}
		if err := d.Ack(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[5 8 9]" {
		t.Errorf("after the restart got offsets %v, want [5 8 9]", got)
	}
	expectNothing(t, second, 500*time.Millisecond)
	waitFor(t, 10*time.Second, "everything committed", func() bool {
		off, _ := committed(t, topic, "g", 0)
		return off == 10
	})
}

func expectNothing(t *testing.T, sn *subscription, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if d, err := sn.Next(ctx); err == nil {
		t.Errorf("got offset %d (%s), want nothing", d.Offset, d.ID)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next: %v, want the deadline", err)
	}
}

// A nacked record comes again after the delay, and the commit does not
// pass it while it is not done.
func TestNackHoldsTheCommit(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 1, nil)
	publishN(t, newPublisher(t, addr, nil), topic, 3, sameKey)
	sn := subscribe(t, newSubscriber(t, addr, nil), topic, "g")

	d0 := nextWithin(t, sn, 20*time.Second)
	d1 := nextWithin(t, sn, 5*time.Second)
	d2 := nextWithin(t, sn, 5*time.Second)
	const delay = 400 * time.Millisecond
	nacked := time.Now()
	if err := d0.Nack(context.Background(), delay); err != nil {
		t.Fatal(err)
	}
	d1.Ack(context.Background())
	d2.Ack(context.Background())
	again := nextWithin(t, sn, 5*time.Second)
	if since := time.Since(nacked); since < delay {
		t.Errorf("redelivered after %v, before the delay of %v", since, delay)
	}
	if again.Offset != 0 || again.Redelivered != 1 || again.ID != d0.ID || string(again.Payload) != string(d0.Payload) {
		t.Errorf("redelivery: offset %d redelivered %d id %s, want offset 0 redelivered 1 id %s", again.Offset, again.Redelivered, again.ID, d0.ID)
	}
	waitFor(t, 5*time.Second, "commit at 0 with 1 and 2 done", func() bool {
		off, meta := committed(t, topic, "g", 0)
		return off == 0 && strings.HasSuffix(meta, ":1-2")
	})
	// Nacked again with no delay: at once, counted again.
	again.Nack(context.Background(), 0)
	third := nextWithin(t, sn, 5*time.Second)
	if third.Redelivered != 2 {
		t.Errorf("second redelivery has Redelivered %d, want 2", third.Redelivered)
	}
	third.Ack(context.Background())
	waitFor(t, 5*time.Second, "commit past everything", func() bool {
		off, _ := committed(t, topic, "g", 0)
		return off == 3
	})
}

// A subscription holds at most MaxInFlight records not acknowledged.
func TestMaxInFlight(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 2, nil)
	publishN(t, newPublisher(t, addr, nil), topic, 20, func(i int) string { return fmt.Sprint(i % 4) })
	sub := newSubscriber(t, addr, func(o *SubscriberOptions) { o.MaxInFlight = 5 })
	sn := subscribe(t, sub, topic, "g")

	var held []*transport.Delivery
	for range 5 {
		held = append(held, nextWithin(t, sn, 20*time.Second))
	}
	expectNothing(t, sn, 300*time.Millisecond)
	held[0].Ack(context.Background())
	held = append(held, nextWithin(t, sn, 5*time.Second))
	expectNothing(t, sn, 200*time.Millisecond)
	for _, d := range held {
		d.Ack(context.Background())
	}
	for range 14 {
		nextWithin(t, sn, 5*time.Second).Ack(context.Background())
	}
	expectNothing(t, sn, 200*time.Millisecond)
}

// Close gives back what is not acknowledged and commits what is, even
// out of order.
func TestCloseCommitsDoneOutOfOrder(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 1, nil)
	publishN(t, newPublisher(t, addr, nil), topic, 6, sameKey)
	sub := newSubscriber(t, addr, func(o *SubscriberOptions) { o.CommitInterval = time.Hour })
	sn := subscribe(t, sub, topic, "g")
	for range 6 {
		d := nextWithin(t, sn, 20*time.Second)
		if d.Offset != 2 {
			d.Ack(context.Background())
		}
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Next(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Next after Close: %v, want ErrClosed", err)
	}
	off, meta := committed(t, topic, "g", 0)
	if off != 2 || meta != "ferry1:3:1-3" {
		t.Errorf("committed %d %q, want 2 \"ferry1:3:1-3\"", off, meta)
	}
	again := subscribe(t, newSubscriber(t, addr, nil), topic, "g")
	d := nextWithin(t, again, 20*time.Second)
	if d.Offset != 2 {
		t.Errorf("after Close got offset %d, want 2", d.Offset)
	}
	d.Ack(context.Background())
	expectNothing(t, again, 500*time.Millisecond)
}

// A new group starts at the earliest offset by default, at the end with
// StartLatest.
func TestStartOffset(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 1, nil)
	p := newPublisher(t, addr, nil)
	publishN(t, p, topic, 2, sameKey)

	early := subscribe(t, newSubscriber(t, addr, nil), topic, "early")
	if d := nextWithin(t, early, 20*time.Second); d.Offset != 0 {
		t.Errorf("StartEarliest: first offset %d, want 0", d.Offset)
	}

	late := subscribe(t, newSubscriber(t, addr, func(o *SubscriberOptions) { o.StartOffset = StartLatest }), topic, "late")
	// Wait until the member has its partition, then publish.
	waitFor(t, 20*time.Second, "the late group to own the partition", func() bool {
		late.mu.Lock()
		defer late.mu.Unlock()
		return len(late.parts) == 1
	})
	time.Sleep(200 * time.Millisecond) // the end offset is looked up after the assignment
	ctx := context.Background()
	if err := p.Publish(ctx, topic, &transport.Message{ID: "after", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if d := nextWithin(t, late, 20*time.Second); d.ID != "after" {
		t.Errorf("StartLatest: got %s at offset %d, want the message published after joining", d.ID, d.Offset)
	}
}

func TestSubscribeInvalid(t *testing.T) {
	sub := newSubscriber(t, testCluster(t), nil)
	if _, err := sub.Subscribe(context.Background(), "bad topic", "g"); err == nil || !strings.Contains(err.Error(), "bad topic") {
		t.Errorf("Subscribe to an invalid topic: %v", err)
	}
	if _, err := sub.Subscribe(context.Background(), "ok", ""); err == nil || !strings.Contains(err.Error(), "group") {
		t.Errorf("Subscribe without a group: %v", err)
	}
	sub.Close()
	if _, err := sub.Subscribe(context.Background(), "ok", "g"); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
}

func TestSubscriberOptions(t *testing.T) {
	for _, tc := range []struct {
		o    SubscriberOptions
		want string
	}{
		{SubscriberOptions{}, "Brokers is empty"},
		{SubscriberOptions{Brokers: []string{"kafka://h:9092"}}, "ParseBrokers"},
		{SubscriberOptions{Brokers: []string{"h:9092"}, SessionTimeout: time.Second, HeartbeatInterval: 2 * time.Second}, "HeartbeatInterval"},
		{SubscriberOptions{Brokers: []string{"h:9092"}, MaxInFlight: -1}, "MaxInFlight"},
		{SubscriberOptions{Brokers: []string{"h:9092"}, SASL: &SASL{Mechanism: "GSSAPI", User: "u"}}, "GSSAPI"},
		{SubscriberOptions{Brokers: []string{"h:9092"}, StartOffset: 7}, "StartOffset"},
	} {
		_, err := NewSubscriber(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSubscriber(%+v): %v, want an error about %s", tc.o, err, tc.want)
		}
	}
}

// When a partition moves to a new member, the old one commits what it
// finished, even out of order, and the new one redoes only the rest.
// Acknowledging a record of a partition given up does nothing.
func TestRebalanceHandsOverDoneOffsets(t *testing.T) {
	addr := testCluster(t)
	topic := newTopic(t, 2, nil)
	p := newPublisher(t, addr, nil)
	// Keys k0..k3; each partition gets some of them.
	publishN(t, p, topic, 40, func(i int) string { return fmt.Sprint("k", i%4) })

	a := subscribe(t, newSubscriber(t, addr, func(o *SubscriberOptions) { o.CommitInterval = time.Hour }), topic, "g")
	byPartition := map[int32][]*transport.Delivery{}
	for range 40 {
		d := nextWithin(t, a, 20*time.Second)
		byPartition[d.Partition] = append(byPartition[d.Partition], d)
	}
	if len(byPartition) != 2 {
		t.Fatalf("records in %d partitions, want 2", len(byPartition))
	}
	// In each partition, the 2nd record stays undone; every other
	// even-numbered record is done.
	undone := map[string]bool{}
	for _, ds := range byPartition {
		for i, d := range ds {
			if i%2 == 0 && i != 2 || i == 3 {
				d.Ack(context.Background())
			} else {
				undone[d.ID] = true
			}
		}
	}

	b := subscribe(t, newSubscriber(t, addr, nil), topic, "g")
	// One partition moves to b, which gets exactly its undone records.
	var moved int32 = -1
	got := map[string]bool{}
	for {
		d := nextWithin(t, b, 20*time.Second)
		if moved == -1 {
			moved = d.Partition
		}
		if d.Partition != moved || !undone[d.ID] || got[d.ID] {
			t.Fatalf("b got %s (partition %d, offset %d): not an undone record of the moved partition %d", d.ID, d.Partition, d.Offset, moved)
		}
		got[d.ID] = true
		if d.Redelivered != 1 {
			t.Errorf("%s: Redelivered %d, want 1", d.ID, d.Redelivered)
		}
		d.Ack(context.Background())
		want := 0
		for _, ad := range byPartition[moved] {
			if undone[ad.ID] {
				want++
			}
		}
		if len(got) == want {
			break
		}
	}
	expectNothing(t, b, 300*time.Millisecond)
	// a's deliveries of the moved partition are void; acking is harmless.
	for _, d := range byPartition[moved] {
		if err := d.Ack(context.Background()); err != nil {
			t.Errorf("Ack after the partition moved: %v", err)
		}
	}
	expectNothing(t, b, 300*time.Millisecond)
}
