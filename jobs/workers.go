package jobs

import (
	"bytes"
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
	kinds map[string]kind
}

// kind is what Workers knows of one job kind.
type kind struct {
	work func(ctx context.Context, r *ferry.Record) error
	// decode reads arguments from JSON, for inserts that come as JSON
	// (the HTTP endpoint).
	decode func(data []byte) (Args, error)
}

// NewWorkers returns an empty set of workers.
func NewWorkers() *Workers {
	return &Workers{kinds: map[string]kind{}}
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
	name := zero.Kind()
	if name == "" {
		panic(fmt.Sprintf("jobs: AddWorker: %T.Kind() is empty", zero))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.kinds[name]; dup {
		panic(fmt.Sprintf("jobs: AddWorker: job kind %q already has a worker", name))
	}
	w.kinds[name] = kind{
		work: func(ctx context.Context, r *ferry.Record) error {
			job := &Job[A]{ID: r.ID, Queue: r.Lane, Key: r.Key, Attempt: r.Attempts + 1, InsertedAt: r.OccurredAt}
			if err := json.Unmarshal(r.Payload, &job.Args); err != nil {
				return NoRetry(fmt.Errorf("jobs: decode the arguments of %q job %s: %w; the job is dead: fix the producer, then discard or retry it", name, r.ID, err))
			}
			return work(ctx, job)
		},
		decode: func(data []byte) (Args, error) {
			var args A
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&args); err != nil {
				return nil, fmt.Errorf("jobs: the arguments of a %q job do not decode into %T: %w", name, args, err)
			}
			return args, nil
		},
	}
}

// decode reads the arguments of a job of kind k from JSON.
func (w *Workers) decode(k string, data []byte) (Args, error) {
	w.mu.RLock()
	kd, ok := w.kinds[k]
	w.mu.RUnlock()
	if !ok {
		return nil, &UnknownKindError{Kind: k}
	}
	return kd.decode(data)
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
	kd, ok := w.kinds[r.Type]
	w.mu.RUnlock()
	if !ok {
		return ferry.Permanent(&UnknownKindError{Kind: r.Type})
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("jobs: %q job %s panicked: %v", r.Type, r.ID, p)
		}
	}()
	return kd.work(ctx, r)
}

// NoRetry wraps err so that the job is dead at once instead of retried:
// for errors that retrying cannot fix.
func NoRetry(err error) error { return ferry.Permanent(err) }

// Snooze returns the error that runs the job again after d. The snooze
// counts as an attempt.
func Snooze(d time.Duration) error {
	return ferry.RetryLater(fmt.Errorf("jobs: snoozed for %v", d), d)
}
