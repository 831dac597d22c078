package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
)

// Workers holds the worker of each job kind. Register workers with
// AddWorker before the client inserts or runs.
type Workers struct {
	mu    sync.RWMutex
	kinds map[string]func(ctx context.Context, r *ferry.Record) error
}

// NewWorkers returns an empty set of workers.
func NewWorkers() *Workers {
	return &Workers{kinds: map[string]func(context.Context, *ferry.Record) error{}}
}

// AddWorker registers work as the worker of the jobs whose arguments are
// of type A. It panics if A's kind is empty or already has a worker:
// programming errors that should stop the program at start.
//
// A nil error completes the job. An error makes the job run again after
// a backoff, until the queue's MaxAttempts; then it is dead (FAILED), with
// the error, until a person retries it (ferry retry) or discards it
// (ferry exclude). NoRetry(err) kills it at once; Snooze(d) runs it again
// after d.
func AddWorker[A Args](w *Workers, work func(ctx context.Context, job *Job[A]) error) {
	var zero A
	kind := zero.Kind()
	if kind == "" {
		panic(fmt.Sprintf("jobs: AddWorker: %T.Kind() is empty", zero))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.kinds[kind]; dup {
		panic(fmt.Sprintf("jobs: AddWorker: job kind %q already has a worker", kind))
	}
	w.kinds[kind] = func(ctx context.Context, r *ferry.Record) error {
		job := &Job[A]{ID: r.ID, Queue: r.Lane, Key: r.Key, Attempt: r.Attempts + 1, InsertedAt: r.OccurredAt}
		if err := json.Unmarshal(r.Payload, &job.Args); err != nil {
			return NoRetry(fmt.Errorf("jobs: decode the arguments of %q job %s: %w; the job is dead: fix the producer, then discard or retry it", kind, r.ID, err))
		}
		return work(ctx, job)
	}
}

func (w *Workers) has(kind string) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	_, ok := w.kinds[kind]
	return ok
}

// Deliver runs the worker of r's kind: Workers is the relay's destination
// for jobs. A panic in a worker fails the attempt instead of the process.
func (w *Workers) Deliver(ctx context.Context, r *ferry.Record) (err error) {
	w.mu.RLock()
	work, ok := w.kinds[r.Type]
	w.mu.RUnlock()
	if !ok {
		return ferry.Permanent(&UnknownKindError{Kind: r.Type})
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("jobs: %q job %s panicked: %v", r.Type, r.ID, p)
		}
	}()
	return work(ctx, r)
}

// NoRetry wraps err so that the job is dead at once instead of retried:
// for errors that retrying cannot fix.
func NoRetry(err error) error { return ferry.Permanent(err) }

// Snooze returns the error that runs the job again after d. The snooze
// counts as an attempt.
func Snooze(d time.Duration) error {
	return ferry.RetryLater(fmt.Errorf("jobs: snoozed for %v", d), d)
}
