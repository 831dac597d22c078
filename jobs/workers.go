package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
)

// Workers holds the worker of each job kind. Register workers with
// AddWorker before the client inserts or runs.
type Workers struct {
	mu      sync.RWMutex
	kinds   map[string]kind
	running map[string]context.CancelCauseFunc // by job id, for Cancel
}

// kind is what Workers knows of one job kind.
type kind struct {
	work func(ctx context.Context, r *ferry.Record, run *attempt) error
	// decode reads arguments from JSON, for inserts that come as JSON
	// (the HTTP endpoint).
	decode func(data []byte) (Args, error)
	opts   kindOpts
}

// NewWorkers returns an empty set of workers.
func NewWorkers() *Workers {
	return &Workers{kinds: map[string]kind{}, running: map[string]context.CancelCauseFunc{}}
}

// AddWorker registers work as the worker of the jobs whose arguments are
// of type A. It panics if A's kind is empty or already has a worker:
// programming errors that should stop the program at start.
//
// A nil error completes the job (with the output of Job.SetOutput). An
// error, kept in the job's history, makes the job run again after a
// backoff, until the queue's MaxAttempts; then it is dead (FAILED), with
// the error, until a person retries it (Client.Retry, ferry retry) or
// discards it (Client.Discard, ferry exclude). NoRetry(err) kills it at
// once; Snooze(d) runs it again after d.
//
// Options (MaxAttempts, RetryWith) set the kind's own attempt limit and
// retry policy.
func AddWorker[A Args](w *Workers, work func(ctx context.Context, job *Job[A]) error, opts ...KindOption) {
	var ko kindOpts
	for _, o := range opts {
		o(&ko)
	}
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
		work: func(ctx context.Context, r *ferry.Record, run *attempt) error {
			job := &Job[A]{ID: r.ID, Queue: queueOf(r.Lane), Priority: priorityOf(r.Lane), Key: jobKey(r), Attempt: r.Attempts + 1, InsertedAt: r.OccurredAt, run: run}
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
		opts: ko,
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

// Deliver runs the worker of r's kind, for a relay of your own whose
// destination is Workers; a Client's relay also stores outputs, progress
// and error history, which this alone does not. A panic in a worker fails
// the attempt instead of the process.
func (w *Workers) Deliver(ctx context.Context, r *ferry.Record) error {
	return w.deliver(ctx, r, nil)
}

// deliver is Deliver for one attempt, run, whose output and progress the
// worker's Job reaches; nil outside a Client.
func (w *Workers) deliver(ctx context.Context, r *ferry.Record, run *attempt) (err error) {
	w.mu.RLock()
	kd, ok := w.kinds[r.Type]
	w.mu.RUnlock()
	if !ok {
		return ferry.Permanent(&UnknownKindError{Kind: r.Type})
	}
	ctx, cancel := context.WithCancelCause(ctx)
	w.mu.Lock()
	w.running[r.ID] = cancel
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, r.ID)
		w.mu.Unlock()
		if errors.Is(context.Cause(ctx), ErrCancelled) {
			// Not a failure to retry: the job is EXCLUDED already, and the
			// relay must not run it again from memory.
			err = NoRetry(fmt.Errorf("jobs: %q job %s: %w", r.Type, r.ID, ErrCancelled))
		}
		cancel(nil)
		if p := recover(); p != nil {
			err = fmt.Errorf("jobs: %q job %s panicked: %v", r.Type, r.ID, p)
		}
	}()
	return kd.work(ctx, r, run)
}

// runningIDs returns the ids of the jobs running here.
func (w *Workers) runningIDs() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	ids := make([]string, 0, len(w.running))
	for id := range w.running {
		ids = append(ids, id)
	}
	return ids
}

// cancel cancels the job with id if it runs here.
func (w *Workers) cancel(id string) {
	w.mu.RLock()
	cancel := w.running[id]
	w.mu.RUnlock()
	if cancel != nil {
		cancel(ErrCancelled)
	}
}

// kindOf returns what w knows of kind k.
func (w *Workers) kindOf(k string) (kind, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	kd, ok := w.kinds[k]
	return kd, ok
}

// NoRetry wraps err so that the job is dead at once instead of retried:
// for errors that retrying cannot fix.
func NoRetry(err error) error { return ferry.Permanent(err) }

// Snooze returns the error that runs the job again after d. A snooze is
// not a failure: it spends none of the job's attempts, and Job.Attempt
// stays the same on the next run.
func Snooze(d time.Duration) error {
	return ferry.Postpone(d, "the job snoozed")
}
