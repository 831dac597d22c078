package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

type Welcome struct {
	User int `json:"user"`
}

func (Welcome) Kind() string { return "welcome" }

func Example() {
	dir, _ := os.MkdirTemp("", "jobs")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, filepath.Join(dir, "app.db"), sqlstore.Options{Table: "ferry_jobs"})
	defer st.Close()

	done := make(chan struct{})
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Welcome]) error {
		fmt.Printf("welcome user %d (attempt %d)\n", job.Args.User, job.Attempt)
		close(done)
		return nil
	})
	client, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The outbox table and the jobs' tables beside it.
	if err := client.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}

	tx, _ := st.DB.BeginTx(ctx, nil)
	// ... the sign-up's own writes in tx ...
	if _, err := client.Insert(ctx, tx, Welcome{User: 7}, nil); err != nil {
		fmt.Println(err)
		return
	}
	tx.Commit()

	runCtx, stop := context.WithCancel(ctx)
	finished := make(chan error)
	go func() { finished <- client.Run(runCtx) }()
	<-done
	stop()
	fmt.Println("run:", <-finished)
	// Output:
	// welcome user 7 (attempt 1)
	// run: <nil>
}

type Export struct {
	Month string `json:"month"`
}

func (Export) Kind() string { return "export" }

// A worker reports progress and leaves an output; any process reads them,
// and the error of each failed attempt, with Client.Job.
func ExampleClient_Job() {
	dir, _ := os.MkdirTemp("", "jobs")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, filepath.Join(dir, "app.db"), sqlstore.Options{Table: "ferry_jobs"})
	defer st.Close()

	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[Export]) error {
		if job.Attempt == 1 {
			return errors.New("the warehouse is closed")
		}
		for done := 1; done <= 3; done++ {
			// ... export a third of the month ...
			if err := job.Progress(ctx, map[string]int{"done": done, "of": 3}); err != nil {
				return err
			}
		}
		return job.SetOutput(map[string]any{"file": "exports/" + job.Args.Month + ".csv", "rows": 1250})
	})
	client, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet,
		Queues: map[string]jobs.Queue{jobs.DefaultQueue: {Backoff: relay.Backoff{Initial: 10 * time.Millisecond}}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := client.Migrate(ctx); err != nil {
		fmt.Println(err)
		return
	}
	tx, _ := st.DB.BeginTx(ctx, nil)
	id, err := client.Insert(ctx, tx, Export{Month: "2026-10"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	tx.Commit()

	runCtx, stop := context.WithCancel(ctx)
	finished := make(chan error)
	go func() { finished <- client.Run(runCtx) }()
	for {
		info, err := client.Job(ctx, id)
		if err != nil {
			fmt.Println(err)
			break
		}
		if info.State == jobs.StateCompleted {
			fmt.Printf("%s after %d attempts\n", info.State, info.Attempts)
			for _, e := range info.Errors {
				fmt.Printf("attempt %d failed: %s\n", e.Attempt, e.Error)
			}
			fmt.Println("progress:", string(info.Progress))
			fmt.Println("output:", string(info.Output))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-finished
	// Output:
	// completed after 2 attempts
	// attempt 1 failed: the warehouse is closed
	// progress: {"done":3,"of":3}
	// output: {"file":"exports/2026-10.csv","rows":1250}
}
