package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/mysql"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

type SendEmail struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

func (SendEmail) Kind() string { return "send_email" }

type store interface {
	ferry.Store
	SQLDB() *sql.DB
}

func sqliteStore(t *testing.T) store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), sqlstore.Options{Table: "ferry_jobs"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func postgresStore(t *testing.T) store {
	t.Helper()
	table := testdb.Table(t)
	st, err := postgres.Open(context.Background(), testdb.PostgresDSN(t), sqlstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testdb.DropOutbox(st.DB, table, st.Dialect())
		st.Close()
	})
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

var quiet = slog.New(slog.DiscardHandler)

// start runs c until the test ends.
func start(t *testing.T, c *jobs.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func insert(t *testing.T, st store, c *jobs.Client, args jobs.Args, opts *jobs.InsertOpts) string {
	t.Helper()
	ctx := context.Background()
	tx, err := st.SQLDB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Insert(ctx, tx, args, opts)
	if err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(t *testing.T, st store, id string) ferry.Record {
	t.Helper()
	recs, err := st.List(context.Background(), ferry.Filter{IDs: []string{id}})
	if err != nil || len(recs) != 1 {
		t.Fatalf("List(%s) = %v, %v", id, recs, err)
	}
	return recs[0]
}

func mysqlStore(t *testing.T) store {
	t.Helper()
	table := testdb.Table(t)
	st, err := mysql.Open(context.Background(), testdb.MySQLDSN(t), sqlstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testdb.DropOutbox(st.DB, table, st.Dialect())
		st.Close()
	})
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// forEachStore runs f on each database the jobs can live in.
func forEachStore(t *testing.T, f func(t *testing.T, st store)) {
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); f(t, sqliteStore(t)) })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); f(t, postgresStore(t)) })
	t.Run("mysql", func(t *testing.T) { t.Parallel(); f(t, mysqlStore(t)) })
}

// A job inserted in a transaction that rolls back never runs; one that
// commits runs once with its arguments.
func TestInsertInTransaction(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store) {
		workers := jobs.NewWorkers()
		got := make(chan *jobs.Job[SendEmail], 10)
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
			got <- job
			return nil
		})
		c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		tx, _ := st.SQLDB().BeginTx(ctx, nil)
		if _, err := c.Insert(ctx, tx, SendEmail{To: "rolled@back"}, nil); err != nil {
			t.Fatal(err)
		}
		tx.Rollback()
		id := insert(t, st, c, SendEmail{To: "ann@example.com", Subject: "Welcome"}, nil)
		start(t, c)
		select {
		case job := <-got:
			if job.ID != id || job.Args.To != "ann@example.com" || job.Args.Subject != "Welcome" || job.Attempt != 1 || job.Queue != jobs.DefaultQueue {
				t.Errorf("job = %+v", job)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the job did not run")
		}
		waitFor(t, "the job DONE", func() bool { return status(t, st, id).Status == ferry.StatusDone })
		select {
		case job := <-got:
			t.Errorf("another job ran: %+v", job)
		case <-time.After(100 * time.Millisecond):
		}
	})
}

// Bad input is an error at insert and inserts nothing.
func TestInsertErrors(t *testing.T) {
	st := sqliteStore(t)
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(context.Context, *jobs.Job[SendEmail]) error { return nil })
	c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx, _ := st.SQLDB().BeginTx(ctx, nil)
	defer tx.Rollback()
	var unknown *jobs.UnknownKindError
	if _, err := c.Insert(ctx, tx, resizeImage{}, nil); !errors.As(err, &unknown) || unknown.Kind != "resize_image" {
		t.Errorf("unknown kind: %v", err)
	}
	var lane *ferry.UnknownLaneError
	if _, err := c.Insert(ctx, tx, SendEmail{}, &jobs.InsertOpts{Queue: "reports"}); !errors.As(err, &lane) {
		t.Errorf("unknown queue: %v", err)
	}
	if _, err := c.Insert(ctx, tx, SendEmail{}, &jobs.InsertOpts{Unique: &jobs.Unique{}}); err == nil || !strings.Contains(err.Error(), "Unique needs ByArgs or a Key") {
		t.Errorf("empty Unique: %v", err)
	}
	if _, err := c.InsertMany(ctx, tx, []jobs.InsertParams{{Args: SendEmail{}}, {Args: resizeImage{}}}); err == nil || !strings.Contains(err.Error(), "job 2 of 2") {
		t.Errorf("bad job in a bulk insert: %v", err)
	}
}

type resizeImage struct{}

func (resizeImage) Kind() string { return "resize_image" }

// Ten concurrent identical inserts of a unique job make one job.
func TestUniqueJobs(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store) {
		workers := jobs.NewWorkers()
		var runs atomic.Int64
		jobs.AddWorker(workers, func(context.Context, *jobs.Job[SendEmail]) error { runs.Add(1); return nil })
		c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet})
		var wg sync.WaitGroup
		ids := make([]string, 10)
		for i := range ids {
			wg.Go(func() {
				ids[i] = insert(t, st, c, SendEmail{To: "ann@example.com"}, &jobs.InsertOpts{Unique: &jobs.Unique{ByArgs: true, Period: time.Hour}})
			})
		}
		wg.Wait()
		other := insert(t, st, c, SendEmail{To: "bob@example.com"}, &jobs.InsertOpts{Unique: &jobs.Unique{ByArgs: true, Period: time.Hour}})
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("ids %v: the same unique job has one id", ids)
			}
		}
		if other == ids[0] {
			t.Fatal("jobs with other arguments got the same id")
		}
		start(t, c)
		waitFor(t, "both jobs", func() bool { return runs.Load() >= 2 })
		time.Sleep(100 * time.Millisecond)
		if runs.Load() != 2 {
			t.Errorf("%d runs, want 2: ten identical inserts are one job", runs.Load())
		}
	})
}

// A failing job is retried; one whose error says not to retry, or whose
// arguments do not decode, is dead at once with its error, and a person
// can retry it.
func TestRetriesAndDeadJobs(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store) {
		workers := jobs.NewWorkers()
		var mu sync.Mutex
		attempts := map[string]int{}
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
			mu.Lock()
			attempts[job.Args.To]++
			n := attempts[job.Args.To]
			mu.Unlock()
			switch job.Args.To {
			case "flaky":
				if job.Attempt < 3 {
					return errors.New("smtp: 421 try again later")
				}
			case "invalid":
				if n == 1 { // until a person fixed the mailbox and retried
					return jobs.NoRetry(errors.New("no such mailbox"))
				}
			}
			return nil
		})
		c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Queues: map[string]jobs.Queue{
			jobs.DefaultQueue: {Backoff: ferryBackoff()}}})
		flaky := insert(t, st, c, SendEmail{To: "flaky"}, nil)
		invalid := insert(t, st, c, SendEmail{To: "invalid"}, nil)
		// A producer in another language wrote arguments that do not decode.
		tx, _ := st.SQLDB().Begin()
		ferry.NewOutbox(st).Write(context.Background(), tx, ferry.Message{ID: "garbled", Topic: jobs.Topic, Type: "send_email", Payload: []byte(`{"to": 7`)})
		tx.Commit()
		start(t, c)
		waitFor(t, "the flaky job DONE", func() bool { return status(t, st, flaky).Status == ferry.StatusDone })
		waitFor(t, "the invalid job dead", func() bool { return status(t, st, invalid).Status == ferry.StatusFailed })
		waitFor(t, "the garbled job dead", func() bool { return status(t, st, "garbled").Status == ferry.StatusFailed })
		if r := status(t, st, invalid); r.LastError != "no such mailbox" || r.Attempts != 1 {
			t.Errorf("dead job: attempts %d, error %q", r.Attempts, r.LastError)
		}
		if r := status(t, st, "garbled"); !strings.Contains(r.LastError, `decode the arguments of "send_email" job garbled`) {
			t.Errorf("garbled job's error: %q", r.LastError)
		}
		mu.Lock()
		if attempts["flaky"] != 3 {
			t.Errorf("flaky job ran %d times, want 3", attempts["flaky"])
		}
		mu.Unlock()

		if n, err := st.Retry(context.Background(), ferry.Filter{IDs: []string{invalid}}); err != nil || n != 1 {
			t.Fatalf("Retry = %d, %v", n, err)
		}
		waitFor(t, "the retried job DONE", func() bool { return status(t, st, invalid).Status == ferry.StatusDone })
	})
}

// A job that outlives its timeout has its context cancelled.
func TestTimeoutCancels(t *testing.T) {
	st := sqliteStore(t)
	workers := jobs.NewWorkers()
	cancelled := make(chan error, 1)
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
		<-ctx.Done()
		cancelled <- ctx.Err()
		return ctx.Err()
	})
	c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Queues: map[string]jobs.Queue{
		jobs.DefaultQueue: {Timeout: 100 * time.Millisecond, MaxAttempts: 1}}})
	id := insert(t, st, c, SendEmail{To: "slow"}, nil)
	start(t, c)
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ctx.Err() = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the job's context was never cancelled")
	}
	waitFor(t, "the job dead", func() bool { return status(t, st, id).Status == ferry.StatusFailed })
	if r := status(t, st, id); !strings.Contains(r.LastError, "deadline exceeded") {
		t.Errorf("last error %q", r.LastError)
	}
}

// Jobs of one key run one at a time, in insert order; a scheduled job
// waits for its time.
func TestKeysAndSchedules(t *testing.T) {
	st := sqliteStore(t)
	workers := jobs.NewWorkers()
	var (
		mu      sync.Mutex
		running int
		order   []string
		ranAt   = map[string]time.Time{}
	)
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error {
		mu.Lock()
		running++
		if running > 1 && job.Key != "" {
			t.Errorf("two jobs of key %s at once", job.Key)
		}
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		running--
		order = append(order, job.Args.To)
		ranAt[job.Args.To] = time.Now()
		mu.Unlock()
		return nil
	})
	c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet})
	for i := range 5 {
		insert(t, st, c, SendEmail{To: fmt.Sprint("k", i)}, &jobs.InsertOpts{Key: "account-7"})
	}
	inserted := time.Now()
	insert(t, st, c, SendEmail{To: "later"}, &jobs.InsertOpts{ScheduledAt: inserted.Add(500 * time.Millisecond)})
	start(t, c)
	waitFor(t, "all six jobs", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 6 })
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order[:5], " "); got != "k0 k1 k2 k3 k4" {
		t.Errorf("keyed jobs ran in order %s", got)
	}
	if ranAt["later"].Sub(inserted) < 450*time.Millisecond {
		t.Errorf("the scheduled job ran %v after insert, before its time", ranAt["later"].Sub(inserted))
	}
}

func ferryBackoff() relay.Backoff {
	return relay.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
}

// A job inserted as JSON by a tool runs with the typed worker, and a
// unique one has the id a Go insert of the same arguments has, whatever
// the key order and spacing of the JSON.
func TestInsertJSON(t *testing.T) {
	st := sqliteStore(t)
	workers := jobs.NewWorkers()
	got := make(chan SendEmail, 2)
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error { got <- job.Args; return nil })
	c, _ := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet})
	unique := &jobs.InsertOpts{Unique: &jobs.Unique{ByArgs: true}}
	goID := insert(t, st, c, SendEmail{To: "ann", Subject: "Hi"}, unique)

	ctx := context.Background()
	tx, _ := st.SQLDB().BeginTx(ctx, nil)
	jsonID, err := jobs.InsertJSON(ctx, tx, st, "send_email", []byte(` {"subject": "Hi",  "to": "ann"} `), unique)
	if err != nil {
		t.Fatal(err)
	}
	otherID, err := jobs.InsertJSON(ctx, tx, st, "send_email", []byte(`{"to": "bob"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.InsertJSON(ctx, tx, st, "send_email", []byte(`"ann"`), nil); err == nil || !strings.Contains(err.Error(), "must be a JSON object") {
		t.Errorf("arguments that are not an object: %v", err)
	}
	tx.Commit()
	if jsonID != goID || otherID == goID {
		t.Fatalf("ids %s (JSON) and %s (Go) for the same unique job; %s for another", jsonID, goID, otherID)
	}
	start(t, c)
	seen := map[string]bool{}
	for range 2 {
		select {
		case a := <-got:
			seen[a.To] = true
		case <-time.After(30 * time.Second):
			t.Fatal("the jobs did not run")
		}
	}
	if !seen["ann"] || !seen["bob"] {
		t.Errorf("ran %v", seen)
	}
	select {
	case a := <-got:
		t.Errorf("a third job ran: %+v; the unique one was inserted twice", a)
	case <-time.After(200 * time.Millisecond):
	}
}
