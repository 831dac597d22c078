package consume_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/local"
)

var quiet = slog.New(slog.DiscardHandler)

// publish publishes n messages to dest, message i with key "k<i%keys>"
// and payload i.
func publish(t *testing.T, p transport.Publisher, dest string, first, n, keys int) {
	t.Helper()
	ctx := context.Background()
	for i := first; i < first+n; i++ {
		m := &transport.Message{ID: fmt.Sprintf("m%07d", i), Topic: dest, Key: fmt.Sprintf("k%d", i%keys), Type: "Counted", Payload: []byte(strconv.Itoa(i))}
		if err := p.Publish(ctx, dest, m); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs c until the test ends or stop is called.
func run(t *testing.T, c *consume.Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return 30s after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// orderChecker records each key's messages as handled and reports any
// that came out of order.
type orderChecker struct {
	mu         sync.Mutex
	last       map[string]int
	effects    map[int]int
	violations []string
}

func newOrderChecker() *orderChecker {
	return &orderChecker{last: map[string]int{}, effects: map[int]int{}}
}

func (o *orderChecker) handled(m *consume.Message) {
	i, _ := strconv.Atoi(string(m.Payload))
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.last[m.Key]; ok && i <= prev && len(o.violations) < 10 {
		o.violations = append(o.violations, fmt.Sprintf("key %s: %d after %d", m.Key, i, prev))
	}
	o.last[m.Key] = i
	o.effects[i]++
}

func (o *orderChecker) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.effects)
}

// TestKeyOrderUnderFailures is the order checker: 100,000
// messages of 1,000 keys, handled in parallel in key order while the
// handler fails now and then, must come out in order per key, each
// handled to completion once.
func TestKeyOrderUnderFailures(t *testing.T) {
	const n, keys = 100_000, 1_000
	b := &local.Broker{MaxBacklog: n}
	publish(t, b.Publisher(), "orders", 0, n, keys)

	check := newOrderChecker()
	var failures atomic.Int64
	r := consume.NewRouter("billing")
	r.Event("orders", "Counted", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		if m.Attempt < 3 && rand.N(100) < 2 { // 2% of attempts fail, up to twice per message
			failures.Add(1)
			return errors.New("injected failure")
		}
		check.handled(m)
		return nil
	}))
	c, err := consume.New(consume.Options{Name: "billing", Subscriber: b.Subscriber(), Handler: r,
		Concurrency: 64, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	waitFor(t, "every message handled", func() bool { return check.count() == n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(check.violations) > 0 {
		t.Errorf("out of key order: %v", check.violations)
	}
	for i, e := range check.effects {
		if e != 1 {
			t.Fatalf("message %d took effect %d times", i, e)
		}
	}
	if failures.Load() == 0 {
		t.Fatal("no failure was injected; the test proves nothing")
	}
	t.Logf("%d messages, %d injected failures", n, failures.Load())
}

// A poison message goes to the dead letters with its reason, and the
// other keys, and the later messages of its own key, go on.
func TestPoisonMessageGoesToDeadLetters(t *testing.T) {
	b := local.NewBroker()
	publish(t, b.Publisher(), "orders", 0, 100, 10)

	dead := b.Subscriber()
	deadSub, err := dead.Subscribe(context.Background(), "orders.dead", "ops")
	if err != nil {
		t.Fatal(err)
	}
	check := newOrderChecker()
	r := consume.NewRouter("billing")
	r.Event("orders", "Counted", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		if m.ID == "m0000042" {
			return consume.Permanent(errors.New(`decode payload: invalid character 'x'`))
		}
		if m.ID == "m0000043" {
			panic("boom")
		}
		check.handled(m)
		return nil
	}))
	c, err := consume.New(consume.Options{Name: "billing", Subscriber: b.Subscriber(), Handler: r,
		MaxAttempts: 3, InitialBackoff: time.Millisecond, DeadLetter: consume.ToTopic(b.Publisher(), "{source}.dead"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitFor(t, "the other 98 messages", func() bool { return check.count() == 98 })

	got := map[string]*transport.Delivery{}
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d, err := deadSub.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("dead letters: %v", err)
		}
		got[d.ID] = d
	}
	decode := got["m0000042"]
	if decode == nil || decode.Headers[consume.HeaderDeadReason] != `decode payload: invalid character 'x'` ||
		decode.Headers[consume.HeaderDeadAttempts] != "1" || decode.Headers[consume.HeaderDeadConsumer] != "billing" ||
		decode.Headers[consume.HeaderDeadSource] != "orders" || string(decode.Payload) != "42" || decode.Key != "k2" {
		t.Errorf("dead letter of the undecodable message: %+v", decode)
	}
	panicked := got["m0000043"]
	if panicked == nil || panicked.Headers[consume.HeaderDeadAttempts] != "3" {
		t.Errorf("dead letter of the panicking message (retried 3 times): %+v", panicked)
	} else if want := "consume: handler panicked on message m0000043: boom"; panicked.Headers[consume.HeaderDeadReason] != want {
		t.Errorf("reason %q, want %q", panicked.Headers[consume.HeaderDeadReason], want)
	}
	if len(check.violations) > 0 {
		t.Errorf("out of key order: %v", check.violations)
	}
}

func TestUnknownTypePolicies(t *testing.T) {
	for _, tc := range []struct {
		policy   consume.UnknownPolicy
		wantDead bool
	}{
		{consume.UnknownDeadLetter, true},
		{consume.UnknownSkip, false},
	} {
		b := local.NewBroker()
		p := b.Publisher()
		ctx := context.Background()
		p.Publish(ctx, "orders", &transport.Message{ID: "legacy", Type: "OrderV0"})
		p.Publish(ctx, "orders", &transport.Message{ID: "known", Type: "Counted", Payload: []byte("1")})
		var dead atomic.Int64
		check := newOrderChecker()
		r := consume.NewRouter("billing")
		r.Unknown(tc.policy)
		r.Event("orders", "Counted", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
			check.handled(m)
			return nil
		}))
		c, _ := consume.New(consume.Options{Name: "billing", Subscriber: b.Subscriber(), Handler: r, Logger: quiet,
			DeadLetter: deadLetterFunc(func(ctx context.Context, m *consume.Message, reason error) error {
				var nh *consume.NoHandlerError
				if m.ID != "legacy" || !errors.As(reason, &nh) || nh.Type != "OrderV0" {
					t.Errorf("dead letter %s: %v", m.ID, reason)
				}
				dead.Add(1)
				return nil
			})})
		stop := run(t, c)
		waitFor(t, "the known message", func() bool { return check.count() == 1 })
		time.Sleep(50 * time.Millisecond)
		stop()
		if got := dead.Load() == 1; got != tc.wantDead {
			t.Errorf("policy %d: dead-lettered %v, want %v", tc.policy, got, tc.wantDead)
		}
	}
}

type deadLetterFunc func(ctx context.Context, m *consume.Message, reason error) error

func (f deadLetterFunc) DeadLetter(ctx context.Context, m *consume.Message, reason error) error {
	return f(ctx, m, reason)
}

// A drain finishes the messages in progress and acknowledges them; an
// immediate shutdown cancels them and gives them back.
func TestShutdownModes(t *testing.T) {
	for _, mode := range []consume.ShutdownMode{consume.Drain, consume.Immediate} {
		b := local.NewBroker()
		publish(t, b.Publisher(), "orders", 0, 4, 4)
		started := make(chan struct{}, 4)
		var completed atomic.Int64
		r := consume.NewRouter("billing")
		r.Event("orders", "", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
			started <- struct{}{}
			select {
			case <-time.After(300 * time.Millisecond):
				completed.Add(1)
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}))
		c, _ := consume.New(consume.Options{Name: "billing", Subscriber: b.Subscriber(), Handler: r, Shutdown: mode, Logger: quiet})
		stop := run(t, c)
		for range 4 {
			<-started
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		// What was acknowledged is gone; the rest comes to the next consumer.
		sub, _ := b.Subscriber().Subscribe(context.Background(), "orders", "billing")
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		left := 0
		for {
			if _, err := sub.Next(ctx); err != nil {
				break
			}
			left++
		}
		cancel()
		switch mode {
		case consume.Drain:
			if completed.Load() != 4 || left != 0 {
				t.Errorf("drain: %d completed, %d left; want 4 and 0", completed.Load(), left)
			}
		case consume.Immediate:
			if completed.Load() != 0 || left != 4 {
				t.Errorf("immediate: %d completed, %d left; want 0 and 4", completed.Load(), left)
			}
		}
	}
}

// Commands are sent to one named consumer, on its own topic.
func TestCommands(t *testing.T) {
	b := local.NewBroker()
	b.Publisher().Publish(context.Background(), consume.CommandTopic("billing"), &transport.Message{ID: "c1", Type: "ChargeCard", Payload: []byte("7")})
	got := make(chan string, 1)
	r := consume.NewRouter("billing")
	r.Command("ChargeCard", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		got <- m.ID + " from " + m.Source
		return nil
	}))
	if topics := r.Topics(); len(topics) != 1 || topics[0] != "commands.billing" {
		t.Fatalf("Topics() = %v", topics)
	}
	c, _ := consume.New(consume.Options{Name: "billing", Subscriber: b.Subscriber(), Handler: r, Logger: quiet})
	run(t, c)
	select {
	case s := <-got:
		if s != "c1 from commands.billing" {
			t.Errorf("handled %s", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command was not handled")
	}
}

// MaxPerPartition bounds the handlers one partition gets.
func TestMaxPerPartition(t *testing.T) {
	b := local.NewBroker()
	publish(t, b.Publisher(), "orders", 0, 200, 20)
	var running, peak, handled atomic.Int64
	r := consume.NewRouter("billing")
	r.Event("orders", "", consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		running.Add(-1)
		handled.Add(1)
		return nil
	}))
	c, _ := consume.New(consume.Options{Name: "billing", Subscriber: b.Subscriber(), Handler: r, Concurrency: 16, MaxPerPartition: 3, Logger: quiet})
	run(t, c)
	waitFor(t, "all 200", func() bool { return handled.Load() == 200 })
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("at most %d handled at once; want the bound, 3, reached and kept", p)
	}
}
