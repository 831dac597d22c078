package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/jobs"
)

// Each failed attempt leaves its error in the history, whatever failed
// it: an error, a panic, a timeout. A dead job retried runs again with a
// fresh budget, and keeps its history.
func TestHistoryOneEntryPerAttempt(t *testing.T) {
	forEachJobDB(t, true, func(t *testing.T, open opener) {
		ctx := context.Background()
		st := open(t)
		var runs atomic.Int64
		attempts := make(chan int, 10)
		workers := jobs.NewWorkers()
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
			attempts <- job.Attempt
			switch runs.Add(1) {
			case 1:
				return errors.New("smtp: 421 try again later")
			case 2:
				var m map[string]int
				m["boom"]++ // panics
			case 3:
				<-ctx.Done() // the queue's timeout
				return ctx.Err()
			case 4:
				return errors.New("smtp: 550 no such mailbox")
			}
			return nil // after a person fixed the mailbox and retried
		})
		c := newClient(t, st, workers, jobs.Queue{MaxAttempts: 4, Timeout: 300 * time.Millisecond, Backoff: ferryBackoff()})
		id := insert(t, st, c, SendEmail{To: "ann@example.com"}, nil)
		start(t, c)
		waitFor(t, "the job dead", func() bool { return jobInfo(t, c, id).State == jobs.StateDead })

		// Read from another process.
		info, err := jobs.Lookup(ctx, open(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status != ferry.StatusFailed || info.Attempts != 4 || !strings.Contains(info.LastError, "550") || info.FailedAt.IsZero() {
			t.Errorf("dead job: %+v", info)
		}
		want := []string{"smtp: 421 try again later", "panicked: assignment to entry in nil map", "context deadline exceeded", "smtp: 550 no such mailbox"}
		if len(info.Errors) != len(want) {
			t.Fatalf("%d errors in the history, want one per failed attempt (%d): %+v", len(info.Errors), len(want), info.Errors)
		}
		for i, e := range info.Errors {
			if e.Attempt != i+1 || !strings.Contains(e.Error, want[i]) || e.At.IsZero() || (i > 0 && e.At.Before(info.Errors[i-1].At)) {
				t.Errorf("error %d: attempt %d at %v: %q; want attempt %d, after the one before, saying %q", i, e.Attempt, e.At, e.Error, i+1, want[i])
			}
		}
		if d := info.Errors[3].At.Sub(info.Errors[2].At); d < 0 || d > time.Minute {
			t.Errorf("attempts 3 and 4 failed %v apart; the times are not the database's clock", d)
		}

		if err := c.Retry(ctx, id); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the retried job completed", func() bool { return jobInfo(t, c, id).State == jobs.StateCompleted })
		info = jobInfo(t, c, id)
		if info.Attempts != 1 || len(info.Errors) != 4 {
			t.Errorf("after the retry: %d attempts (want 1: a fresh budget), %d errors (want the 4 before it)", info.Attempts, len(info.Errors))
		}
		close(attempts)
		var seen []int
		for a := range attempts {
			seen = append(seen, a)
		}
		if got := fmt.Sprint(seen); got != "[1 2 3 4 1]" {
			t.Errorf("the worker saw attempts %s, want [1 2 3 4 1]", got)
		}

		var se *jobs.StateError
		if err := c.Retry(ctx, id); !errors.As(err, &se) || se.State != jobs.StateCompleted || se.ID != id || !strings.Contains(err.Error(), "is completed, not dead") {
			t.Errorf("Retry of a completed job: %v", err)
		}
		if err := c.Retry(ctx, "no-such-job"); !errors.Is(err, jobs.ErrNoJob) {
			t.Errorf("Retry of an unknown job: %v", err)
		}
	})
}

// Discard gives up on a dead job, and cancels a waiting, scheduled or
// retrying one; it refuses a completed or cancelled job, naming its
// state. Arguments that do not decode are in the history too.
func TestDeadJobDiscard(t *testing.T) {
	forEachJobDB(t, false, func(t *testing.T, open opener) {
		ctx := context.Background()
		st := open(t)
		var runs atomic.Int64
		workers := jobs.NewWorkers()
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
			runs.Add(1)
			switch job.Args.To {
			case "invalid":
				return jobs.NoRetry(errors.New("no such mailbox"))
			case "busy":
				return jobs.Snooze(time.Hour)
			}
			return nil
		})
		c := newClient(t, st, workers, jobs.Queue{})
		dead := insert(t, st, c, SendEmail{To: "invalid"}, nil)
		busy := insert(t, st, c, SendEmail{To: "busy"}, nil)
		done := insert(t, st, c, SendEmail{To: "ann"}, nil)
		later := insert(t, st, c, SendEmail{To: "bob"}, &jobs.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
		// A producer in another language wrote arguments that do not decode.
		tx, _ := st.SQLDB().Begin()
		ferry.NewOutbox(st).Write(ctx, tx, ferry.Message{ID: "garbled", Topic: jobs.Topic, Type: "send_email", Payload: []byte(`{"to": 7`)})
		tx.Commit()
		start(t, c)
		waitFor(t, "the jobs ran", func() bool {
			return jobInfo(t, c, dead).State == jobs.StateDead && jobInfo(t, c, "garbled").State == jobs.StateDead &&
				jobInfo(t, c, busy).State == jobs.StateScheduled && runs.Load() >= 3 && jobInfo(t, c, done).State == jobs.StateCompleted
		})
		garbled := jobInfo(t, c, "garbled")
		if len(garbled.Errors) != 1 || !strings.Contains(garbled.Errors[0].Error, `decode the arguments of "send_email" job garbled`) {
			t.Errorf("garbled job's history: %+v", garbled.Errors)
		}
		if _, err := json.Marshal(garbled); err != nil || string(garbled.Args) != `"{\"to\": 7"` {
			t.Errorf("garbled job's arguments %s: %v", garbled.Args, err)
		}
		// A snooze is not a failure: no attempt spent, nothing in the history.
		if info := jobInfo(t, c, busy); info.Attempts != 0 || !info.RunAt.After(time.Now().Add(50*time.Minute)) || len(info.Errors) != 0 {
			t.Errorf("snoozed job: %+v", info)
		}
		if s := jobInfo(t, c, later).State; s != jobs.StateScheduled {
			t.Errorf("a job scheduled in an hour is %s", s)
		}

		for _, id := range []string{dead, "garbled", busy, later} {
			if err := c.Discard(ctx, id); err != nil {
				t.Errorf("Discard(%s): %v", id, err)
			}
			if info := jobInfo(t, c, id); info.State != jobs.StateCancelled || info.Status != ferry.StatusExcluded {
				t.Errorf("discarded job %s is %s (%s)", id, info.State, info.Status)
			}
		}
		var se *jobs.StateError
		if err := c.Discard(ctx, done); !errors.As(err, &se) || se.State != jobs.StateCompleted || !strings.Contains(err.Error(), "discard job "+done+": the job is completed already") {
			t.Errorf("Discard of a completed job: %v", err)
		}
		if err := c.Discard(ctx, dead); !errors.As(err, &se) || se.State != jobs.StateCancelled {
			t.Errorf("second Discard: %v", err)
		}
		if err := c.Retry(ctx, dead); !errors.As(err, &se) || se.State != jobs.StateCancelled || !strings.Contains(err.Error(), "is cancelled, not dead") {
			t.Errorf("Retry of a discarded job: %v", err)
		}
		if err := c.Discard(ctx, "no-such-job"); !errors.Is(err, jobs.ErrNoJob) {
			t.Errorf("Discard of an unknown job: %v", err)
		}
		if _, err := c.Job(ctx, "no-such-job"); !errors.Is(err, jobs.ErrNoJob) || !strings.Contains(err.Error(), "no-such-job") {
			t.Errorf("Job of an unknown job: %v", err)
		}
		n := runs.Load()
		time.Sleep(200 * time.Millisecond)
		if runs.Load() != n {
			t.Errorf("a discarded job ran")
		}
	})
}

// syncBuffer is a bytes.Buffer for a logger several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Without the job tables (the outbox migrated, not the jobs), jobs run,
// fail and retry as before; what cannot be stored is logged, and an
// output that cannot be stored fails its job with an error saying so.
func TestHistoryWithoutTables(t *testing.T) {
	open, _ := emptyDB(t, "postgres")
	st := open(t)
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
		if job.Attempt == 1 {
			return errors.New("smtp: 421 try again later")
		}
		if job.Args.To == "output" {
			return job.SetOutput("sent")
		}
		return nil
	})
	c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Queues: map[string]jobs.Queue{jobs.DefaultQueue: {MaxAttempts: 2, Backoff: ferryBackoff()}}})
	if err != nil {
		t.Fatal(err)
	}
	plain := insert(t, st, c, SendEmail{To: "plain"}, nil)
	output := insert(t, st, c, SendEmail{To: "output"}, nil)
	start(t, c)
	waitFor(t, "the plain job DONE", func() bool { return status(t, st, plain).Status == ferry.StatusDone })
	waitFor(t, "the job with an output dead", func() bool { return status(t, st, output).Status == ferry.StatusFailed })
	if r := status(t, st, output); !strings.Contains(r.LastError, `jobs: store the output of "send_email" job `+output) || !strings.Contains(r.LastError, "_results") {
		t.Errorf("the job's error: %q", r.LastError)
	}
	for _, want := range []string{"the job tables cannot be read", "create them with Client.Migrate or ferry migrate --jobs",
		"the error of a failed attempt is not in the job's history"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
	if _, err := c.Job(context.Background(), plain); err == nil || !strings.Contains(err.Error(), "_results") {
		t.Errorf("Job without the tables: %v", err)
	}
}
