package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/relay"
)

// The lanes of the north-star scenario.
const (
	laneOnline = "online"
	laneBatch  = "batch"
	// onlineWeight and batchWeight are the lanes' shares of the relay.
	onlineWeight = 4
	batchWeight  = 1
)

// scenario is the north-star scenario (seed 003) on one outbox table: an
// online service writes small transactions at a steady rate while a batch
// job floods the same outbox, and a relay (ferry's, or the FIFO baseline)
// delivers both to an in-process destination that records when each
// message arrives.
type scenario struct {
	tb     *testbed
	clock  clock
	online *tracker

	onlineGen, batchGen generator

	onlineWritten, batchWritten     atomic.Int64
	onlineDelivered, batchDelivered atomic.Int64
	// firstBatch and lastBatch are the clock offsets of the first batch
	// write's start and of the latest batch delivery; 0 if none yet.
	firstBatch, lastBatch atomic.Int64
	// batchWrote is the offset when the batch producer finished.
	batchWrote atomic.Int64
	// timings, if set, measures ferry's relay's store calls.
	timings *storeTimings
	// notices, if set, times the online lane's notifications (the notify
	// baseline); set before the relay starts.
	notices *noticeTracker
	// pollAbove is ferry's relay's Options.PollAbove.
	pollAbove float64
}

func newScenario(tb *testbed, customers, payload int) *scenario {
	c := newClock()
	return &scenario{
		tb:     tb,
		clock:  c,
		online: newTracker(c),
		onlineGen: generator{lane: laneOnline, topic: "orders", typ: "OrderPlaced", keyPrefix: "customer-",
			keys: customers, payload: payloadOf(payload)},
		batchGen: generator{lane: laneBatch, topic: "settlements", typ: "SettlementCreated", keyPrefix: "merchant-",
			keys: 10_000, payload: payloadOf(payload)},
	}
}

// Deliver is the scenario's destination: it records the delivery and
// accepts every message at once.
func (s *scenario) Deliver(_ context.Context, r *ferry.Record) error {
	if r.Lane == laneOnline {
		s.online.deliveredNow(r.ID)
		if s.notices != nil {
			s.notices.delivered(r.ID, r.Seq)
		}
		s.onlineDelivered.Add(1)
		return nil
	}
	now := int64(s.clock.now())
	s.batchDelivered.Add(1)
	for {
		last := s.lastBatch.Load()
		if now <= last || s.lastBatch.CompareAndSwap(last, now) {
			return nil
		}
	}
}

// startRelay starts system (SystemFerry or SystemFIFO) delivering the
// scenario's table.
func (s *scenario) startRelay(ctx context.Context, system string, log *slog.Logger) (*task, error) {
	var run func(ctx context.Context) error
	switch system {
	case SystemFerry:
		st := s.tb.relay
		if s.timings != nil {
			st = timed(st, s.timings)
		}
		r, err := relay.New(relay.Options{
			Store: st,
			Lanes: []relay.Lane{
				{Name: laneOnline, Weight: onlineWeight},
				{Name: laneBatch, Weight: batchWeight},
			},
			Routes:    []relay.Route{{Topic: "*", Destination: s}},
			PollAbove: s.pollAbove,
			Logger:    log,
		})
		if err != nil {
			return nil, err
		}
		run = r.Run
	case SystemFIFO:
		f, err := newFIFO(ctx, s.tb, s)
		if err != nil {
			return nil, err
		}
		run = f.run
	default:
		return nil, fmt.Errorf("unknown system %q; want %s or %s", system, SystemFerry, SystemFIFO)
	}
	return background(ctx, run), nil
}

// task is a goroutine running until stopped.
type task struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set when done is closed
}

// background runs f in a goroutine until stop is called or f returns.
func background(ctx context.Context, f func(ctx context.Context) error) *task {
	ctx, cancel := context.WithCancel(ctx)
	t := &task{cancel: cancel, done: make(chan struct{})}
	go func() {
		t.err = f(ctx)
		close(t.done)
	}()
	return t
}

// stop ends the task and returns its error, if any.
func (t *task) stop() error {
	t.cancel()
	<-t.done
	return t.err
}

// failed returns the task's error if it has ended with one.
func (t *task) failed() error {
	select {
	case <-t.done:
		if t.err != nil {
			return t.err
		}
	default:
	}
	return nil
}

// produceOnline writes online messages at rate per second, each in its own
// transaction, until ctx is done, recording each commit.
func (s *scenario) produceOnline(ctx context.Context, rate float64) error {
	// Enough writers that slow commits (a flood's WAL traffic delays
	// them) do not hold up the schedule, as a service's request handlers
	// commit concurrently.
	workers := max(4, min(16, int(rate/100)+2))
	_, err := pace(ctx, rate, workers, func(ctx context.Context, i int) error {
		m := s.onlineGen.message(i)
		at, err := s.tb.write(ctx, []ferry.Message{m})
		if err != nil {
			return fmt.Errorf("online producer: %w", err)
		}
		s.online.committed([]string{m.ID}, at)
		s.onlineWritten.Add(1)
		return nil
	})
	return err
}

// produceBatch writes n batch messages in transactions of chunk, one
// after the other, as a batch job would.
func (s *scenario) produceBatch(ctx context.Context, n, chunk int) error {
	s.firstBatch.Store(int64(max(1, s.clock.now())))
	for written := 0; written < n; {
		k := min(chunk, n-written)
		if _, err := s.tb.write(ctx, s.batchGen.messages(written, k)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("batch producer: after %d of %d messages: %w", written, n, err)
		}
		written += k
		s.batchWritten.Store(int64(written))
	}
	s.batchWrote.Store(int64(s.clock.now()))
	return nil
}

// waitOnline waits until every online message committed before to is
// delivered, for at most grace.
func (s *scenario) waitOnline(ctx context.Context, to, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for ctx.Err() == nil && time.Now().Before(deadline) && s.online.pendingBefore(to) > 0 {
		sleep(ctx, 10*time.Millisecond)
	}
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// firstErr returns the first non-nil error, ignoring context
// cancellation.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}
