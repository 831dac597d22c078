package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferry-dev/ferry"
)

// ErrNoJob is the error (errors.Is) of Job, Lookup, Retry and Discard for
// an id that names no job: never inserted, or deleted since, as the
// relay deletes completed jobs after Config.Retention.
var ErrNoJob = errors.New("jobs: no such job")

func noJob(id string) error {
	return fmt.Errorf("%w: %s (never inserted, or deleted after it completed and its retention passed)", ErrNoJob, id)
}

// State is where a job is in its life, as its outbox row tells.
type State string

// The states of a job. A job's outbox row says WAITING from insert until
// its last attempt ends, so a running job is StateWaiting (or
// StateRetrying once an attempt has failed): the database does not
// record which jobs a worker holds. Progress tells a running job from a
// waiting one if its worker reports it.
const (
	// StateScheduled: inserted to run later, or snoozed, and not yet due.
	StateScheduled State = "scheduled"
	// StateWaiting: due, waiting for a worker or running.
	StateWaiting State = "waiting"
	// StateRetrying: an attempt failed and the next one is not yet due.
	StateRetrying State = "retrying"
	// StateCompleted: a worker returned nil (outbox status DONE).
	StateCompleted State = "completed"
	// StateDead: its attempts are spent, or its error said not to retry
	// (FAILED). Retry runs it again; Discard gives up on it.
	StateDead State = "dead"
	// StateCancelled: cancelled or discarded (EXCLUDED).
	StateCancelled State = "cancelled"
)

// JobInfo is what the database knows of a job.
type JobInfo struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Queue string `json:"queue"`
	// Priority is the job's level in its queue, 1 first.
	Priority int    `json:"priority"`
	Key      string `json:"key,omitempty"`
	State    State  `json:"state"`
	// Status is the job's outbox status, which State refines.
	Status ferry.Status `json:"status"`
	// Attempts is how many attempts have ended: those that failed (the
	// outbox's fail count, which Retry sets back to zero), and the one
	// that succeeded for a completed job.
	Attempts int `json:"attempts"`
	// Args are the job's arguments as stored; arguments that are not
	// JSON (written by a producer in another language) appear as a JSON
	// string of their bytes.
	Args json.RawMessage `json:"args"`
	// Output is what the worker passed to SetOutput in the attempt that
	// succeeded; nil if it set none, or if no attempt succeeded.
	Output json.RawMessage `json:"output,omitempty"`
	// Progress is the last value passed to Progress, in any attempt.
	Progress json.RawMessage `json:"progress,omitempty"`
	// UpdatedAt is when Output or Progress was last stored.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Errors are the errors of the failed attempts, oldest first (the
	// newest 1000 of them); a snooze is not a failure and is not among
	// them. Attempt numbers start again at 1 after a Retry; an
	// attempt that ran twice (a process died after it failed, before its
	// outcome was recorded) can appear twice.
	Errors []AttemptError `json:"errors,omitempty"`
	// LastError is the error of the last failed attempt, as the outbox
	// row keeps it (truncated to 2000 bytes).
	LastError  string    `json:"last_error,omitempty"`
	InsertedAt time.Time `json:"inserted_at"`
	// RunAt is when a waiting job is due: its scheduled time or that of
	// its next attempt. Zero for jobs that will not run again.
	RunAt       time.Time `json:"run_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// FailedAt is when the last attempt failed.
	FailedAt time.Time `json:"failed_at,omitzero"`
}

// AttemptError is the error of one failed attempt.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	// Error is the error's text, truncated to 4000 bytes.
	Error string `json:"error"`
}

// maxErrors bounds the errors Job returns.
const maxErrors = 1000

// Job returns what the database knows of the job with id: its state,
// arguments, output, progress and error history. It reads the database,
// so it works from any process, and for jobs this client does not run.
// An id that names no job is ErrNoJob.
func (c *Client) Job(ctx context.Context, id string) (*JobInfo, error) {
	return lookup(ctx, c.store, c.tables, id)
}

// Lookup is Client.Job without a client, for tools (ferry jobs show): st
// is the store of the jobs' table.
func Lookup(ctx context.Context, st ferry.Store, id string) (*JobInfo, error) {
	t, err := newTables(st)
	if err != nil {
		return nil, err
	}
	return lookup(ctx, st, t, id)
}

func lookup(ctx context.Context, st ferry.Store, t *tables, id string) (*JobInfo, error) {
	// The outbox row first: the output is stored before the job is marked
	// completed, so reading in this order finds the output of a job seen
	// completed.
	r, err := record(ctx, st, id)
	if err != nil {
		return nil, err
	}
	info := &JobInfo{ID: r.ID, Kind: r.Type, Queue: queueOf(r.Lane), Priority: priorityOf(r.Lane), Key: jobKey(r), Status: r.Status, Attempts: r.Attempts,
		Args: json.RawMessage(r.Payload), LastError: r.LastError, InsertedAt: r.OccurredAt, FailedAt: r.FailedAt}
	if !json.Valid(info.Args) {
		// A RawMessage that is not JSON would make info impossible to
		// encode.
		info.Args, _ = json.Marshal(string(r.Payload))
	}
	if info.State, err = t.state(ctx, r); err != nil {
		return nil, fmt.Errorf("jobs: read job %s: %w", id, err)
	}
	switch r.Status {
	case ferry.StatusWaiting:
		info.RunAt = r.AvailableAt
	case ferry.StatusDone:
		info.Attempts++
		info.CompletedAt = r.ProcessedAt
	}
	var (
		output, progress sql.NullString
		updated          dbTime
	)
	err = t.db.QueryRowContext(ctx, t.readResult, r.Seq).Scan(&output, &progress, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("jobs: read the output of job %s from %s: %w", id, t.results, err)
	default:
		if output.Valid {
			info.Output = json.RawMessage(output.String)
		}
		if progress.Valid {
			info.Progress = json.RawMessage(progress.String)
		}
		info.UpdatedAt = updated.t
	}
	if info.Errors, err = t.attemptErrors(ctx, r.Seq); err != nil {
		return nil, fmt.Errorf("jobs: read the errors of job %s from %s: %w", id, t.errs, err)
	}
	return info, nil
}

// record returns the outbox row of the job with id.
func record(ctx context.Context, st ferry.Store, id string) (*ferry.Record, error) {
	recs, err := st.List(ctx, ferry.Filter{IDs: []string{id}, Topic: Topic, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("jobs: read job %s: %w", id, err)
	}
	if len(recs) == 0 {
		return nil, noJob(id)
	}
	return &recs[0], nil
}

// attemptErrors returns the newest maxErrors errors of the job of seq, oldest
// first.
func (t *tables) attemptErrors(ctx context.Context, seq int64) ([]AttemptError, error) {
	rows, err := t.db.QueryContext(ctx, t.readErrors, seq, maxErrors)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AttemptError
	for rows.Next() {
		var (
			e  AttemptError
			at dbTime
		)
		if err := rows.Scan(&e.Attempt, &at, &e.Error); err != nil {
			return nil, err
		}
		e.At = at.t
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// state returns the State of the job of r. A WAITING job's depends on
// whether it is due, by the database's clock, as the relay decides.
func (t *tables) state(ctx context.Context, r *ferry.Record) (State, error) {
	switch r.Status {
	case ferry.StatusDone:
		return StateCompleted, nil
	case ferry.StatusFailed:
		return StateDead, nil
	case ferry.StatusExcluded:
		return StateCancelled, nil
	}
	var now dbTime
	if err := t.db.QueryRowContext(ctx, t.q(`SELECT {{now}}`)).Scan(&now); err != nil {
		return "", fmt.Errorf("read the database clock: %w", err)
	}
	switch {
	case !r.AvailableAt.After(now.t):
		return StateWaiting, nil
	case r.Attempts > 0:
		return StateRetrying, nil
	default:
		return StateScheduled, nil
	}
}

// StateError is the error of Retry or Discard for a job whose state does
// not allow it: only a dead job can be retried, and a completed or
// cancelled one cannot be discarded.
type StateError struct {
	Op    string // "retry" or "discard"
	ID    string
	State State
}

func (e *StateError) Error() string {
	if e.Op == "discard" {
		return fmt.Sprintf("jobs: discard job %s: the job is %s already; only a dead or waiting job can be discarded", e.ID, e.State)
	}
	return fmt.Sprintf("jobs: %s job %s: the job is %s, not dead", e.Op, e.ID, e.State)
}

// Retry runs the dead job with id again, due now, with a fresh retry
// budget (ferry retry does the same from a shell). A job that is not dead
// is a *StateError; an unknown one ErrNoJob.
func (c *Client) Retry(ctx context.Context, id string) error {
	n, err := c.store.Retry(ctx, ferry.Filter{IDs: []string{id}, Topic: Topic})
	if err != nil {
		return fmt.Errorf("jobs: retry job %s: %w", id, err)
	}
	if n > 0 {
		return nil
	}
	r, err := record(ctx, c.store, id)
	if err != nil {
		return err
	}
	state, err := c.tables.state(ctx, r)
	if err != nil {
		return fmt.Errorf("jobs: retry job %s: %w", id, err)
	}
	return &StateError{Op: "retry", ID: id, State: state}
}

// Discard gives up on the job with id: a dead one stays dead for good, a
// waiting one is cancelled as Cancel does (a running one has its context
// cancelled). Either ends cancelled (EXCLUDED). A completed or cancelled
// job is a *StateError; an unknown one ErrNoJob.
func (c *Client) Discard(ctx context.Context, id string) error {
	// A waiting job can die between the two tries; twice is enough for
	// that race, which cannot go back (dead jobs do not wait again unless
	// a person retries them).
	for range 2 {
		n, err := c.store.Exclude(ctx, ferry.Filter{IDs: []string{id}, Topic: Topic, Status: ferry.StatusFailed})
		if err != nil {
			return fmt.Errorf("jobs: discard job %s: %w", id, err)
		}
		if n > 0 {
			return nil
		}
		err = c.Cancel(ctx, id)
		var nc *NotCancellableError
		if !errors.As(err, &nc) {
			return err
		}
		switch nc.Status {
		case "":
			return noJob(id)
		case ferry.StatusDone:
			return &StateError{Op: "discard", ID: id, State: StateCompleted}
		case ferry.StatusExcluded:
			return &StateError{Op: "discard", ID: id, State: StateCancelled}
		}
	}
	return fmt.Errorf("jobs: discard job %s: its state changed while it was being discarded; try again", id)
}
