package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry"
)

// keyHeader carries a job's key when the queue spreads a key over several
// relay keys (Queue.KeyConcurrency above one).
const keyHeader = "ferry-job-key"

// unlimitedAttempts is the relay lane's budget: the client decides when a
// job is dead (per kind), the relay only records it.
const unlimitedAttempts = math.MaxInt32

// relayKey returns the relay key of a job with key in a queue that runs
// up to n jobs of one key at once. The relay runs the messages of one key
// one at a time across every process (the key's shard is leased to one
// process), so a key spread over n relay keys runs at most n at once,
// everywhere.
func relayKey(key string, n int) string {
	if key == "" || n <= 1 {
		return key
	}
	return key + "#" + strconv.Itoa(rand.IntN(n))
}

// jobKey returns the key the job was inserted with.
func jobKey(r *ferry.Record) string {
	if k, ok := r.Headers[keyHeader]; ok {
		return k
	}
	return r.Key
}

// runner is the relay's destination for jobs: it applies the per-kind
// attempt limits and the per-key rate limits around the workers.
type runner struct {
	log     *slog.Logger
	workers *Workers
	queues  map[string]Queue
	tables  *tables
	// keepOutput is false when completed jobs are deleted at once
	// (negative Retention): their output would have no job to read it by.
	keepOutput bool

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // by queue and relay key
}

func newRunner(log *slog.Logger, w *Workers, queues map[string]Queue, tb *tables, keepOutput bool) *runner {
	return &runner{log: log, workers: w, queues: queues, tables: tb, keepOutput: keepOutput, limiters: map[string]*rate.Limiter{}}
}

// Deliver runs r's job, or postpones it while its key is over its rate,
// and stores what the attempt leaves behind: the output of one that
// succeeds, the error of one that fails. Its error decides the job's
// outcome: nil done, permanent dead, postponed later without spending an
// attempt, any other retried.
func (ru *runner) Deliver(ctx context.Context, r *ferry.Record) error {
	queue := queueOf(r.Lane)
	q := ru.queues[queue]
	if q.KeyRate > 0 && r.Key != "" {
		if wait := ru.reserve(queue, r.Key, q); wait > 0 {
			return ferry.Postpone(wait, fmt.Sprintf("key %q is over its rate of %v jobs/s", jobKey(r), q.KeyRate))
		}
	}
	run := &attempt{rec: r, tables: ru.tables}
	err := ru.runReported(ctx, r, run)
	if err == nil && ctx.Err() != nil {
		// The relay fails an attempt that outlived its deadline even if
		// the worker returned nil; so does the history, and the output of
		// an attempt that failed is not stored.
		err = ctx.Err()
	}
	if out := run.result(); err == nil && out != nil && ru.keepOutput {
		// Stored before the relay records the job DONE: a reader who sees
		// it completed finds its output.
		if werr := ru.tables.store(ctx, ru.tables.setOutput, r, out); werr != nil {
			err = fmt.Errorf("jobs: store the output of %q job %s: %w; the job runs again", r.Type, r.ID, werr)
		}
	}
	var postponed *ferry.PostponedError
	if err == nil || errors.As(err, &postponed) {
		return err
	}
	if !ferry.IsPermanent(err) {
		limit := q.MaxAttempts
		if kd, ok := ru.workers.kindOf(r.Type); ok && kd.opts.maxAttempts > 0 {
			limit = kd.opts.maxAttempts
		}
		if attempt := r.Attempts + 1; attempt >= limit {
			err = ferry.Permanent(fmt.Errorf("attempt %d of %d: %w", attempt, limit, err))
		}
	}
	ru.record(ctx, r, err)
	return err
}

// overdueGrace is how long past its deadline a job may run before it is
// reported as ignoring its context.
const overdueGrace = time.Second

// runReported runs r's job and reports it if it goes on running past its
// deadline: Go cannot stop a goroutine, so a job that ignores its context
// holds its worker until it returns, and a person must know.
func (ru *runner) runReported(ctx context.Context, r *ferry.Record, run *attempt) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		return ru.workers.deliver(ctx, r, run)
	}
	var overdue atomic.Bool
	report := time.AfterFunc(time.Until(deadline)+overdueGrace, func() {
		overdue.Store(true)
		ru.log.Warn("jobs: a job ignores its deadline: it still runs after its timeout and holds a worker until it returns; make it return when its context is done",
			"kind", r.Type, "id", r.ID, "queue", queueOf(r.Lane), "past_deadline", overdueGrace)
	})
	err := ru.workers.deliver(ctx, r, run)
	if !report.Stop() && overdue.Load() {
		ru.log.Warn("jobs: a job that ignored its deadline returned", "kind", r.Type, "id", r.ID, "queue", queueOf(r.Lane),
			"past_deadline", time.Since(deadline).Round(time.Millisecond), "err", err)
	}
	return err
}

// retryDelay is the relay's RetryDelay for a queue: the kind's policy, or
// the queue's backoff (stretched to a RetryLater's wait, within the
// backoff's maximum).
func (ru *runner) retryDelay(q Queue) func(r *ferry.Record, err error) time.Duration {
	return func(r *ferry.Record, err error) time.Duration {
		if kd, ok := ru.workers.kindOf(r.Type); ok && kd.opts.retry != nil {
			return max(kd.opts.retry(r.Attempts, err), 0)
		}
		d := q.Backoff.Delay(r.Attempts)
		var later *ferry.RetryLaterError
		if errors.As(err, &later) && later.After > d {
			d = min(later.After, q.Backoff.Max)
		}
		return d
	}
}

// reserve takes a token of the key's bucket, or returns how long until
// one is free. A key spread over n relay keys gets 1/n of the rate on
// each, so the key as a whole keeps to it.
func (ru *runner) reserve(queue, key string, q Queue) time.Duration {
	id := queue + "\x00" + key
	ru.mu.Lock()
	lim := ru.limiters[id]
	if lim == nil {
		if len(ru.limiters) >= 10000 {
			ru.sweepLocked()
		}
		n := float64(max(q.KeyConcurrency, 1))
		lim = rate.NewLimiter(rate.Limit(q.KeyRate/n), max(1, int(float64(q.KeyBurst)/n)))
		ru.limiters[id] = lim
	}
	ru.mu.Unlock()
	res := lim.Reserve()
	wait := res.Delay()
	if wait > 0 {
		res.Cancel()
	}
	return wait
}

// sweepLocked forgets the buckets that are full: a new bucket would be
// the same.
func (ru *runner) sweepLocked() {
	for id, lim := range ru.limiters {
		if lim.Tokens() >= float64(lim.Burst()) {
			delete(ru.limiters, id)
		}
	}
}

// queueName is the queue of a job inserted into q: DefaultQueue for "".
func queueName(q string) string {
	if q == "" {
		return DefaultQueue
	}
	return q
}
