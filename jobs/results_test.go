package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/store/mysql"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// opener opens a handle on one test database and table, as another
// process would; the first one has created the schema with jobs.Migrate.
type opener func(t *testing.T) store

// jobDB returns the opener of a new database of dialect ("sqlite",
// "postgres" or "mysql") whose tables are dropped when t ends, with the
// schema jobs need.
func jobDB(t *testing.T, dialect string) opener {
	t.Helper()
	open, first := emptyDB(t, dialect)
	if err := jobs.Migrate(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	return open
}

// emptyDB is jobDB without the schema; first is a handle already open.
func emptyDB(t *testing.T, dialect string) (open opener, first store) {
	t.Helper()
	ctx := context.Background()
	var connect func() (store, error)
	table := testdb.Table(t)
	switch dialect {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "jobs.db")
		connect = func() (store, error) { return sqlite.Open(ctx, path, sqlstore.Options{Table: table}) }
	case "postgres":
		dsn := testdb.PostgresDSN(t)
		connect = func() (store, error) { return postgres.Open(ctx, dsn, sqlstore.Options{Table: table}) }
	case "mysql":
		dsn := testdb.MySQLDSN(t)
		connect = func() (store, error) { return mysql.Open(ctx, dsn, sqlstore.Options{Table: table}) }
	}
	open = func(t *testing.T) store {
		t.Helper()
		st, err := connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	first = open(t)
	t.Cleanup(func() { // before first closes
		testdb.DropOutbox(first.SQLDB(), table, first.Dialect())
		first.SQLDB().Exec("DROP TABLE IF EXISTS " + table + "_results")
		first.SQLDB().Exec("DROP TABLE IF EXISTS " + table + "_errors")
	})
	return open, first
}

// forEachJobDB runs f on SQLite and PostgreSQL, and on MariaDB if
// withMySQL.
func forEachJobDB(t *testing.T, withMySQL bool, f func(t *testing.T, open opener)) {
	dialects := []string{"sqlite", "postgres"}
	if withMySQL {
		dialects = append(dialects, "mysql")
	}
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) { t.Parallel(); f(t, jobDB(t, d)) })
	}
}

func newClient(t *testing.T, st store, workers *jobs.Workers, queue jobs.Queue) *jobs.Client {
	t.Helper()
	c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Queues: map[string]jobs.Queue{jobs.DefaultQueue: queue}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func jobInfo(t *testing.T, c *jobs.Client, id string) *jobs.JobInfo {
	t.Helper()
	info, err := c.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return info
}

// The progress a running job reports is readable from another process
// at once; its output when it completes, and never without it once the
// job is seen completed.
func TestResultOutputAndProgress(t *testing.T) {
	forEachJobDB(t, true, func(t *testing.T, open opener) {
		ctx := context.Background()
		st := open(t)
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		workers := jobs.NewWorkers()
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Export]) error {
			if err := job.Progress(ctx, map[string]int{"done": 1, "of": 3}); err != nil {
				return err
			}
			<-release
			if err := job.SetOutput(map[string]any{"rows": 1, "file": "draft.csv"}); err != nil {
				return err
			}
			return job.SetOutput(map[string]any{"rows": 42, "file": "2026-10.csv"}) // the last one counts
		})
		c := newClient(t, st, workers, jobs.Queue{})
		id := insert(t, st, c, Export{Month: "2026-10"}, nil)

		// Another process: its own handle on the database, and its own
		// client, which runs nothing.
		other := open(t)
		otherWorkers := jobs.NewWorkers()
		jobs.AddWorker(otherWorkers, func(context.Context, *jobs.Job[Export]) error { return nil })
		otherClient := newClient(t, other, otherWorkers, jobs.Queue{})
		if info := jobInfo(t, otherClient, id); info.State != jobs.StateWaiting || info.Progress != nil || info.Output != nil {
			t.Fatalf("before it runs: %+v", info)
		}

		start(t, c)
		var info *jobs.JobInfo
		waitFor(t, "the progress", func() bool { info = jobInfo(t, otherClient, id); return info.Progress != nil })
		if string(info.Progress) != `{"done":1,"of":3}` || info.Output != nil || info.State != jobs.StateWaiting || info.Attempts != 0 || info.UpdatedAt.IsZero() {
			t.Errorf("while it runs: state %s, attempts %d, progress %s, output %s, updated %v", info.State, info.Attempts, info.Progress, info.Output, info.UpdatedAt)
		}
		if info.Kind != "export" || info.Queue != jobs.DefaultQueue || string(info.Args) != `{"month":"2026-10"}` || info.InsertedAt.IsZero() || info.RunAt.IsZero() {
			t.Errorf("job: %+v", info)
		}

		once.Do(func() { close(release) })
		waitFor(t, "the job completed", func() bool {
			got, err := jobs.Lookup(ctx, other, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.State == jobs.StateCompleted && got.Output == nil {
				t.Fatalf("completed without its output: %+v", got)
			}
			info = got
			return got.State == jobs.StateCompleted
		})
		if string(info.Output) != `{"file":"2026-10.csv","rows":42}` || string(info.Progress) != `{"done":1,"of":3}` {
			t.Errorf("output %s, progress %s", info.Output, info.Progress)
		}
		if info.Status != ferry.StatusDone || info.Attempts != 1 || len(info.Errors) != 0 || info.CompletedAt.IsZero() || !info.RunAt.IsZero() {
			t.Errorf("completed: %+v", info)
		}
	})
}

// An output or progress over MaxOutput, or that is not JSON, is an error
// naming the job; the job fails with it like with any error.
func TestResultTooLarge(t *testing.T) {
	st := jobDB(t, "sqlite")(t)
	errs := make(chan error, 3)
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Export]) error {
		errs <- job.Progress(ctx, strings.Repeat("x", jobs.MaxOutput))
		errs <- job.SetOutput(make(chan int))
		err := job.SetOutput(map[string]string{"csv": strings.Repeat("x", jobs.MaxOutput)})
		errs <- err
		return jobs.NoRetry(err)
	})
	c := newClient(t, st, workers, jobs.Queue{})
	id := insert(t, st, c, Export{Month: "2026-10"}, nil)
	start(t, c)

	var tooLarge *jobs.OutputTooLargeError
	if err := <-errs; !errors.As(err, &tooLarge) || tooLarge.ID != id || tooLarge.What != "progress" || tooLarge.Size != jobs.MaxOutput+2 {
		t.Errorf("progress too large: %v", err)
	}
	if err := <-errs; err == nil || !strings.Contains(err.Error(), `encode the output of "export" job `+id) {
		t.Errorf("output that is not JSON: %v", err)
	}
	err := <-errs
	if !errors.As(err, &tooLarge) || tooLarge.What != "output" || tooLarge.Kind != "export" {
		t.Fatalf("output too large: %v", err)
	}
	for _, want := range []string{`the output of "export" job ` + id, "over the limit of 65536 (jobs.MaxOutput)", "store a large result elsewhere"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	waitFor(t, "the job dead", func() bool { return jobInfo(t, c, id).State == jobs.StateDead })
	info := jobInfo(t, c, id)
	if info.Output != nil || info.Progress != nil || len(info.Errors) != 1 || !strings.Contains(info.Errors[0].Error, "jobs.MaxOutput") {
		t.Errorf("dead job: output %s, progress %s, errors %+v", info.Output, info.Progress, info.Errors)
	}

	// A Job built by hand, in a unit test of a worker: the values are
	// checked, and stored nowhere.
	job := &jobs.Job[Export]{ID: "by-hand"}
	if err := job.SetOutput(1); err != nil {
		t.Errorf("SetOutput on a Job built by hand: %v", err)
	}
	if err := job.Progress(context.Background(), 1); err != nil {
		t.Errorf("Progress on a Job built by hand: %v", err)
	}
	if err := job.SetOutput(strings.Repeat("x", jobs.MaxOutput)); !errors.As(err, &tooLarge) || tooLarge.ID != "by-hand" {
		t.Errorf("too large on a Job built by hand: %v", err)
	}
}

// The output, progress and errors of a job go when the job does; a
// unique job inserted again under the same id starts with none of them.
func TestResultsOfDeletedJobs(t *testing.T) {
	forEachJobDB(t, true, func(t *testing.T, open opener) {
		ctx := context.Background()
		st := open(t)
		workers := jobs.NewWorkers()
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Export]) error {
			if job.Attempt == 1 {
				return errors.New("the warehouse is closed")
			}
			job.Progress(ctx, "half way")
			return job.SetOutput(job.Args.Month)
		})
		c := newClient(t, st, workers, jobs.Queue{Backoff: ferryBackoff()})
		unique := &jobs.Unique{ByArgs: true}
		gone := insert(t, st, c, Export{Month: "2026-09"}, &jobs.InsertOpts{Unique: unique})
		start(t, c)
		waitFor(t, "the job completed", func() bool { return jobInfo(t, c, gone).State == jobs.StateCompleted })
		if info := jobInfo(t, c, gone); string(info.Output) != `"2026-09"` || info.Progress == nil || len(info.Errors) != 1 {
			t.Fatalf("job %s: %+v", gone, info)
		}
		// The relay's retention deletes completed jobs.
		if n, err := st.Cleanup(ctx, time.Now().Add(time.Hour), 100); err != nil || n != 1 {
			t.Fatalf("Cleanup = %d, %v", n, err)
		}
		if _, err := c.Job(ctx, gone); !errors.Is(err, jobs.ErrNoJob) || !strings.Contains(err.Error(), gone) {
			t.Fatalf("Job of a deleted job: %v", err)
		}
		again := insert(t, st, c, Export{Month: "2026-09"}, &jobs.InsertOpts{Unique: unique, ScheduledAt: time.Now().Add(time.Hour)})
		if again != gone {
			t.Fatalf("the unique job has id %s, then %s", gone, again)
		}
		if info := jobInfo(t, c, again); info.State != jobs.StateScheduled || info.Output != nil || info.Progress != nil || len(info.Errors) != 0 {
			t.Errorf("a new job under an old id has the old one's results: %+v", info)
		}
		kept := insert(t, st, c, Export{Month: "2026-10"}, nil)
		waitFor(t, "the job completed", func() bool { return jobInfo(t, c, kept).State == jobs.StateCompleted })

		if err := jobs.Sweep(ctx, c); err != nil {
			t.Fatal(err)
		}
		db := st.SQLDB()
		table := st.(interface{ Q(string) string }).Q("{{t}}")
		for _, suffix := range []string{"_results", "_errors"} {
			if n := count(t, db, "SELECT COUNT(*) FROM "+table+suffix); n != 1 {
				t.Errorf("%s has %d rows after the sweep, want 1: the deleted job's are gone, the other job's stay", table+suffix, n)
			}
		}
		if info := jobInfo(t, c, kept); string(info.Output) != `"2026-10"` || len(info.Errors) != 1 {
			t.Errorf("the sweep took a live job's results: %+v", info)
		}
	})
}

func count(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Several processes migrating at once all succeed, and so does a second
// migration.
func TestResultTablesMigrateConcurrently(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			open, first := emptyDB(t, d)
			handles := []store{first, open(t), open(t), open(t)}
			errs := make(chan error, len(handles))
			for _, st := range handles {
				go func() { errs <- jobs.Migrate(context.Background(), st) }()
			}
			for range handles {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if err := jobs.Migrate(context.Background(), first); err != nil {
				t.Errorf("again: %v", err)
			}
		})
	}
}
