package ferry

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned when an operation names a message, lane or
// filter that matches nothing.
var ErrNotFound = errors.New("ferry: not found")

// ErrClosed is returned by a store or relay used after Close.
var ErrClosed = errors.New("ferry: closed")

// InvalidMessageError reports a message the outbox refuses to write.
// Nothing of the write is stored: the caller's transaction decides.
type InvalidMessageError struct {
	ID      string // the message's id (generated if it had none)
	Index   int    // its position among the messages of the Write call
	Field   string // the field at fault: Topic, Lane, Key, ...
	Problem string
}

func (e *InvalidMessageError) Error() string {
	return fmt.Sprintf("ferry: message %s (#%d of the write): %s %s", e.ID, e.Index, e.Field, e.Problem)
}

// PayloadTooLargeError reports a payload over the outbox's limit.
type PayloadTooLargeError struct {
	ID    string
	Index int    // its position among the messages of the Write call
	Topic string // so that a message with a generated id can be found
	Size  int
	Limit int
}

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("ferry: message %s (#%d of the write, topic %q): payload is %d bytes, over the limit of %d; send a reference to the data instead, or raise the outbox's MaxPayload",
		e.ID, e.Index, e.Topic, e.Size, e.Limit)
}

// UnknownLaneError reports a message written to a lane the outbox was not
// told about (see WithLanes).
type UnknownLaneError struct {
	ID    string
	Lane  string
	Known []string
}

func (e *UnknownLaneError) Error() string {
	return fmt.Sprintf("ferry: message %s: lane %q is not configured (configured lanes: %v); add it to the relay config or use one of those",
		e.ID, e.Lane, e.Known)
}

// PermanentError marks a delivery error that retrying cannot fix, such as
// a message the destination rejects as malformed. The relay moves the
// message to FAILED at once instead of spending its retry budget.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the relay does not retry it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryLaterError asks the relay to wait at least After before the next
// attempt at a message: a webhook receiver's Retry-After, a broker's
// throttle. The relay waits the longer of After and its own backoff, but
// never more than the lane's maximum backoff, so that a receiver cannot
// park a message for days.
type RetryLaterError struct {
	Err   error
	After time.Duration
}

func (e *RetryLaterError) Error() string { return e.Err.Error() }
func (e *RetryLaterError) Unwrap() error { return e.Err }

// RetryLater wraps err with the wait the destination asked for.
// RetryLater(nil, d) is nil.
func RetryLater(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryLaterError{Err: err, After: after}
}

// PostponedError asks the relay to try a message again after After
// without counting a failed attempt: the destination did not fail, it is
// not ready for the message yet (a rate limit, a job that snoozes). The
// message keeps its place in its key's order meanwhile.
type PostponedError struct {
	Reason string
	After  time.Duration
}

func (e *PostponedError) Error() string {
	return fmt.Sprintf("postponed for %v: %s", e.After, e.Reason)
}

// Postpone returns the error that makes the relay try a message again
// after d, without spending its retry budget; reason says why, for logs
// and the stored last error.
func Postpone(d time.Duration, reason string) error {
	return &PostponedError{Reason: reason, After: max(d, 0)}
}
