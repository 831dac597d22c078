package jobs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferry-dev/ferry/jobs"
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
	st.Migrate(ctx)

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
