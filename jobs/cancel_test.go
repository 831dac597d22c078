package jobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/jobs"
)

// A job cancelled from another process: a running one has its context
// cancelled with ErrCancelled and does not run again; a waiting one never
// runs; a finished one cannot be cancelled.
func TestCancelFromAnotherProcess(t *testing.T) {
	st := postgresStore(t)
	started := make(chan string, 4)
	var runs atomic.Int64
	causes := make(chan error, 4)
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
		runs.Add(1)
		started <- job.Args.To
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	})
	queues := map[string]jobs.Queue{jobs.DefaultQueue: {Backoff: ferryBackoff()}}
	runner, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Node: "runner", Queues: queues})
	if err != nil {
		t.Fatal(err)
	}
	// The other process only inserts and cancels: its own workers, not run.
	otherWorkers := jobs.NewWorkers()
	jobs.AddWorker(otherWorkers, func(context.Context, *jobs.Job[SendEmail]) error { return nil })
	other, err := jobs.NewClient(st, jobs.Config{Workers: otherWorkers, Logger: quiet, Node: "other", Queues: queues})
	if err != nil {
		t.Fatal(err)
	}
	running := insert(t, st, other, SendEmail{To: "running"}, nil)
	waiting := insert(t, st, other, SendEmail{To: "waiting"}, &jobs.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	start(t, runner)
	if to := <-started; to != "running" {
		t.Fatalf("started %s", to)
	}
	began := time.Now()
	if err := other.Cancel(context.Background(), running); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, jobs.ErrCancelled) {
			t.Errorf("cause %v, want ErrCancelled", cause)
		}
		t.Logf("cancelled after %v", time.Since(began))
	case <-time.After(10 * time.Second):
		t.Fatal("the running job's context was not cancelled")
	}
	if err := other.Cancel(context.Background(), waiting); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // many backoffs: a cancelled job must not run again
	if n := runs.Load(); n != 1 {
		t.Errorf("the job ran %d times; a cancelled job runs no more", n)
	}
	for _, id := range []string{running, waiting} {
		if s := status(t, st, id).Status; s != ferry.StatusExcluded {
			t.Errorf("job %s is %s, want EXCLUDED", id, s)
		}
	}
	var nc *jobs.NotCancellableError
	if err := other.Cancel(context.Background(), running); !errors.As(err, &nc) || nc.Status != ferry.StatusExcluded {
		t.Errorf("second cancel: %v", err)
	}
	if err := other.Cancel(context.Background(), "no-such-job"); !errors.As(err, &nc) || nc.Status != "" {
		t.Errorf("cancel of an unknown job: %v", err)
	}
}

// Jobs share the outbox table with other messages: Cancel, given the id
// of a message that is not a job, says there is no such job and leaves
// the message to be delivered.
func TestCancelLeavesOtherMessagesAlone(t *testing.T) {
	st := postgresStore(t)
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(context.Context, *jobs.Job[SendEmail]) error { return nil })
	client := newClient(t, st, workers, jobs.Queue{})
	ctx := context.Background()
	order := ferry.Message{ID: ferry.NewID(), Lane: jobs.DefaultQueue, Topic: "orders", Payload: []byte(`{}`)}
	tx, err := st.SQLDB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ferry.NewOutbox(st).Write(ctx, tx, order); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var nc *jobs.NotCancellableError
	if err := client.Cancel(ctx, order.ID); !errors.As(err, &nc) || nc.Status != "" {
		t.Errorf("cancel of an outbox message that is not a job: %v, want there is no such job", err)
	}
	if s := status(t, st, order.ID).Status; s != ferry.StatusWaiting {
		t.Errorf("the outbox message is %s after Cancel, want WAITING", s)
	}
}
