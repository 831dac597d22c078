package jobs_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/jobs"
)

type Report struct{}

func (Report) Kind() string { return "report" }

// Two processes with the same periodic job: it runs once per tick.
func TestPeriodicOncePerTick(t *testing.T) {
	st := postgresStore(t)
	var (
		mu    sync.Mutex
		ticks = map[string]int{}
	)
	newClient := func(node string) *jobs.Client {
		workers := jobs.NewWorkers()
		jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Report]) error {
			mu.Lock()
			ticks[job.ID]++
			mu.Unlock()
			return nil
		})
		c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet, Node: node,
			Periodic: []jobs.PeriodicJob{{Name: "nightly-report", Schedule: "@every 1s", Args: Report{}}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	start(t, newClient("a"))
	start(t, newClient("b"))
	waitFor(t, "three ticks", func() bool { mu.Lock(); defer mu.Unlock(); return len(ticks) >= 3 })
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for id, n := range ticks {
		if n != 1 {
			t.Errorf("tick %s ran %d times", id, n)
		}
		if !strings.HasPrefix(id, "periodic:nightly-report:") {
			t.Errorf("tick id %q", id)
		}
	}
}

func TestPeriodicErrors(t *testing.T) {
	st := sqliteStore(t)
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(context.Context, *jobs.Job[Report]) error { return nil })
	for _, tc := range []struct {
		p    jobs.PeriodicJob
		want string
	}{
		{jobs.PeriodicJob{Name: "r", Schedule: "0 25 * * *", Args: Report{}}, `schedule "0 25 * * *" does not parse`},
		{jobs.PeriodicJob{Name: "r", Schedule: "@every 10ms", Args: Report{}}, "@every needs a duration of at least 1s"},
		{jobs.PeriodicJob{Name: "r", Schedule: "CRON_TZ=Mars/Olympus 0 2 * * *", Args: Report{}}, "does not parse"},
		{jobs.PeriodicJob{Schedule: "@daily", Args: Report{}}, "needs a Name"},
		{jobs.PeriodicJob{Name: "r", Schedule: "@daily", Args: SendEmail{}}, `no worker for job kind "send_email"`},
	} {
		_, err := jobs.NewClient(st, jobs.Config{Workers: workers, Periodic: []jobs.PeriodicJob{tc.p}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
	if _, err := jobs.NewClient(st, jobs.Config{Workers: workers, Periodic: []jobs.PeriodicJob{
		{Name: "r", Schedule: "CRON_TZ=Europe/Paris 0 2 * * *", Args: Report{}}}}); err != nil {
		t.Errorf("a schedule with a time zone: %v", err)
	}
}
