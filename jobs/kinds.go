package jobs

import (
	"time"
)

// KindOption configures the jobs of one kind; pass options to AddWorker.
type KindOption func(*kindOpts)

type kindOpts struct {
	maxAttempts int
	retry       RetryPolicy
}

// MaxAttempts sets how many times a job of the kind runs before it is
// dead, instead of its queue's Queue.MaxAttempts: a charge that must not
// be tried twice gets 1, a flaky upstream 50.
func MaxAttempts(n int) KindOption {
	return func(o *kindOpts) { o.maxAttempts = n }
}

// RetryPolicy returns how long a job waits before it runs again after
// its attempt-th attempt failed with err. A policy replaces the queue's
// Backoff for the kinds it is given to (RetryWith).
type RetryPolicy func(attempt int, err error) time.Duration

// RetryWith makes p decide when the kind's failed jobs run again.
func RetryWith(p RetryPolicy) KindOption {
	return func(o *kindOpts) { o.retry = p }
}
