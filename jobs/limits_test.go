package jobs_test

import (
	"context"
	"database/sql"
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
	"github.com/ferry-dev/ferry/relay"
)

type Charge struct {
	Account string `json:"account"`
	Cents   int    `json:"cents"`
}

func (Charge) Kind() string { return "charge" }

// A kind's own MaxAttempts and retry policy replace its queue's: the
// queue's backoff is an hour, so the retry can only come from the policy.
func TestKindAttemptsAndRetryPolicy(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store) {
		workers := jobs.NewWorkers()
		var runs atomic.Int64
		var mu sync.Mutex
		var asked []int
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Charge]) error {
			runs.Add(1)
			return errors.New("card declined")
		}, jobs.MaxAttempts(3), jobs.RetryWith(func(attempt int, err error) time.Duration {
			mu.Lock()
			asked = append(asked, attempt)
			mu.Unlock()
			if err.Error() != "card declined" {
				t.Errorf("policy got error %q", err)
			}
			return 10 * time.Millisecond
		}))
		c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Queues: map[string]jobs.Queue{
			jobs.DefaultQueue: {MaxAttempts: 25, Backoff: relay.Backoff{Initial: time.Hour, Max: time.Hour}}}})
		if err != nil {
			t.Fatal(err)
		}
		id := insert(t, st, c, Charge{Account: "a-1", Cents: 500}, nil)
		start(t, c)
		waitFor(t, "the job dead", func() bool { return status(t, st, id).Status == ferry.StatusFailed })
		r := status(t, st, id)
		if runs.Load() != 3 || r.Attempts != 3 {
			t.Errorf("ran %d times, %d attempts recorded; want 3 (the kind's MaxAttempts)", runs.Load(), r.Attempts)
		}
		if !strings.Contains(r.LastError, "attempt 3 of 3: card declined") {
			t.Errorf("last error %q", r.LastError)
		}
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(asked) != "[1 2]" {
			t.Errorf("the policy was asked after attempts %v, want [1 2]", asked)
		}
	})
}

// A snooze runs the job again later without spending an attempt: with a
// budget of one attempt, a job that snoozes twice still completes.
func TestSnoozeSpendsNoAttempt(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store) {
		workers := jobs.NewWorkers()
		var runs atomic.Int64
		var attempts []int
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Charge]) error {
			attempts = append(attempts, job.Attempt)
			if runs.Add(1) <= 2 {
				return jobs.Snooze(20 * time.Millisecond)
			}
			return nil
		})
		c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Queues: map[string]jobs.Queue{
			jobs.DefaultQueue: {MaxAttempts: 1}}})
		id := insert(t, st, c, Charge{Account: "a-1"}, nil)
		start(t, c)
		waitFor(t, "the job done", func() bool { return status(t, st, id).Status != ferry.StatusWaiting })
		if r := status(t, st, id); r.Status != ferry.StatusDone || runs.Load() != 3 {
			t.Fatalf("job %s after %d runs: %s", r.Status, runs.Load(), r.LastError)
		}
		if fmt.Sprint(attempts) != "[1 1 1]" {
			t.Errorf("Job.Attempt on each run: %v, want [1 1 1]", attempts)
		}
	})
}

// Unique among states: a pending job blocks a duplicate, a finished one
// does not; without States a finished one blocks too.
func TestUniqueAmongStates(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store) {
		workers := jobs.NewWorkers()
		var runs atomic.Int64
		jobs.AddWorker(workers, func(context.Context, *jobs.Job[Charge]) error { runs.Add(1); return nil })
		c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet})
		whilePending := &jobs.InsertOpts{Unique: &jobs.Unique{ByArgs: true, States: []ferry.Status{ferry.StatusWaiting}}}
		forever := &jobs.InsertOpts{Unique: &jobs.Unique{ByArgs: true}}

		first := insert(t, st, c, Charge{Account: "a-1"}, whilePending)
		if again := insert(t, st, c, Charge{Account: "a-1"}, whilePending); again != first {
			t.Fatalf("a duplicate of a waiting job got id %s, want %s", again, first)
		}
		once := insert(t, st, c, Charge{Account: "b-2"}, forever)
		start(t, c)
		waitFor(t, "two jobs done", func() bool { return runs.Load() == 2 })
		waitFor(t, "both DONE", func() bool {
			return status(t, st, first).Status == ferry.StatusDone && status(t, st, once).Status == ferry.StatusDone
		})

		// Ten concurrent inserts after the first completed make one new
		// job (it runs a little later, so that it is pending meanwhile).
		later := *whilePending
		later.ScheduledAt = time.Now().Add(time.Second)
		var wg sync.WaitGroup
		ids := make([]string, 10)
		for i := range ids {
			wg.Go(func() { ids[i] = insert(t, st, c, Charge{Account: "a-1"}, &later) })
		}
		wg.Wait()
		if again := insert(t, st, c, Charge{Account: "b-2"}, forever); again != once {
			t.Errorf("a duplicate of a done job without States got id %s, want %s", again, once)
		}
		for _, id := range ids {
			if id != first {
				t.Fatalf("ids %v: the new job takes the unique id %s", ids, first)
			}
		}
		waitFor(t, "the new job done", func() bool { return runs.Load() == 3 })
		time.Sleep(100 * time.Millisecond)
		if runs.Load() != 3 {
			t.Errorf("%d runs, want 3: ten concurrent inserts are one job, a done unique job blocks", runs.Load())
		}
		recs, err := st.List(context.Background(), ferry.Filter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, r := range recs {
			if strings.HasPrefix(r.ID, first+"~") {
				kept = append(kept, r.ID)
			}
		}
		if len(recs) != 3 || len(kept) != 1 {
			t.Errorf("%d jobs stored (want 3), earlier jobs kept under new ids: %v", len(recs), kept)
		}
		if r := status(t, st, first); r.Status != ferry.StatusDone {
			t.Errorf("the id now names a %s job", r.Status)
		}

		if _, err := c.Insert(context.Background(), mustBegin(t, st), Charge{}, &jobs.InsertOpts{Unique: &jobs.Unique{ByArgs: true, States: []ferry.Status{"RUNNING"}}}); err == nil ||
			!strings.Contains(err.Error(), `"RUNNING" is not a state`) {
			t.Errorf("an unknown state: %v", err)
		}
	})
}

func mustBegin(t *testing.T, st store) *sql.Tx {
	t.Helper()
	tx, err := st.SQLDB().Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	return tx
}

// KeyConcurrency caps the jobs of one key running at once across two
// processes (clients), and the worker sees the key it was inserted with.
func TestKeyConcurrencyAcrossProcesses(t *testing.T) {
	st := postgresStore(t)
	const limit = 3
	var running, peak atomic.Int64
	var done atomic.Int64
	newClient := func(node string) *jobs.Client {
		workers := jobs.NewWorkers()
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Charge]) error {
			if job.Key != "tenant-1" {
				t.Errorf("Job.Key = %q", job.Key)
			}
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
			done.Add(1)
			return nil
		})
		c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Node: node,
			Queues: map[string]jobs.Queue{jobs.DefaultQueue: {KeyConcurrency: limit}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := newClient("a"), newClient("b")
	const n = 60
	for i := range n {
		insert(t, st, a, Charge{Account: "tenant-1", Cents: i}, &jobs.InsertOpts{Key: "tenant-1"})
	}
	start(t, a)
	start(t, b)
	waitFor(t, "all jobs", func() bool { return done.Load() == n })
	if p := peak.Load(); p > limit || p < 2 {
		t.Errorf("at most %d jobs of the key ran at once; want 2..%d", p, limit)
	}
}

// KeyRate spaces the jobs of one key; waiting for the rate spends no
// attempt, and other keys are not held back.
func TestKeyRate(t *testing.T) {
	st := sqliteStore(t)
	workers := jobs.NewWorkers()
	var mu sync.Mutex
	started := map[string][]time.Time{}
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Charge]) error {
		if job.Attempt != 1 {
			t.Errorf("job %s on attempt %d: waiting for the rate spent attempts", job.ID, job.Attempt)
		}
		mu.Lock()
		started[job.Key] = append(started[job.Key], time.Now())
		mu.Unlock()
		return nil
	})
	const rate = 40.0
	c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet,
		Queues: map[string]jobs.Queue{jobs.DefaultQueue: {KeyRate: rate, KeyBurst: 1, MaxAttempts: 1}}})
	const n = 21
	for i := range n {
		insert(t, st, c, Charge{Account: "slow", Cents: i}, &jobs.InsertOpts{Key: "slow"})
		insert(t, st, c, Charge{Account: "other", Cents: i}, &jobs.InsertOpts{Key: fmt.Sprint("other-", i)})
	}
	start(t, c)
	waitFor(t, "all jobs", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(started["slow"]) == n && len(started)-1 == n
	})
	mu.Lock()
	defer mu.Unlock()
	s := started["slow"]
	// n jobs at 40/s with a burst of 1 take at least (n-1)/40 s.
	if span, least := s[n-1].Sub(s[0]), time.Duration(float64(n-1)/rate*float64(time.Second)); span < least*9/10 {
		t.Errorf("%d jobs of one key started within %v; the rate allows no less than %v", n, span, least)
	}
}

// A job that ignores its context past the deadline is reported while it
// runs, and again when it returns; its attempt fails with the deadline.
func TestJobIgnoringDeadlineIsReported(t *testing.T) {
	st := sqliteStore(t)
	var logs syncBuffer
	workers := jobs.NewWorkers()
	release := make(chan struct{})
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Charge]) error {
		<-release // ignores ctx
		return nil
	})
	c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Queues: map[string]jobs.Queue{jobs.DefaultQueue: {Timeout: 50 * time.Millisecond, MaxAttempts: 1}}})
	id := insert(t, st, c, Charge{Account: "stuck"}, nil)
	start(t, c)
	waitFor(t, "the report", func() bool { return strings.Contains(logs.String(), "a job ignores its deadline") })
	if !strings.Contains(logs.String(), "id="+id) {
		t.Errorf("the report does not name the job:\n%s", logs.String())
	}
	close(release)
	waitFor(t, "the job dead", func() bool { return status(t, st, id).Status == ferry.StatusFailed })
	if r := status(t, st, id); !strings.Contains(r.LastError, "deadline exceeded") {
		t.Errorf("last error %q", r.LastError)
	}
	if !strings.Contains(logs.String(), "a job that ignored its deadline returned") {
		t.Errorf("no report of the return:\n%s", logs.String())
	}
}
