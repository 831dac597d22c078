package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/relay"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

func TestJobsEnqueue(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "app.db")
	ferryRun(t, "migrate", "--db", url, "--table", "ferry_jobs").want(t, 0)

	first := ferryRun(t, "jobs", "enqueue", "--db", url, "--kind", "send_email", "--args", `{"to": "ann"}`, "--unique-args", "--in", "1h")
	first.want(t, 0)
	again := ferryRun(t, "jobs", "enqueue", "--db", url, "--kind", "send_email", "--args", `{ "to":"ann" }`, "--unique-args")
	again.want(t, 0)
	if !strings.HasPrefix(first.stdout, "unique:send_email:") || again.stdout != first.stdout {
		t.Errorf("ids %q and %q: the same unique job", first.stdout, again.stdout)
	}
	list := ferryRun(t, "list", "--db", url, "--table", "ferry_jobs")
	if strings.Count(list.stdout, "unique:send_email:") != 1 {
		t.Errorf("list:\n%s", list.stdout)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--args", "{}"}, "--kind is required"},
		{[]string{"--kind", "k"}, "--args is required"},
		{[]string{"--kind", "k", "--args", "[]"}, "must be a JSON object"},
		{[]string{"--kind", "k", "--args", "{}", "--in", "1h", "--at", "2026-01-01T00:00:00Z"}, "give --in or --at, not both"},
		{[]string{"--kind", "k", "--args", "{}", "--at", "tomorrow"}, `--at "tomorrow" is not an RFC 3339 time`},
		{[]string{"--kind", "k", "--args", "{}", "--unique-period", "1h"}, "--unique-period needs --unique-args or --unique-key"},
	} {
		r := ferryRun(t, append([]string{"jobs", "enqueue", "--db", url}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d\n%s\nwant %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

type sendEmail struct {
	To string `json:"to"`
}

func (sendEmail) Kind() string { return "send_email" }

func TestJobsShow(t *testing.T) {
	dir := t.TempDir()
	url := "sqlite:" + filepath.Join(dir, "app.db")
	missing := "err:the job tables (ferry_jobs, ferry_jobs_results, ferry_jobs_errors) do not all exist in " + url +
		": create them with\n  ferry migrate --jobs --db " + url + " --table ferry_jobs\n"
	ferryRun(t, "jobs", "show", "--db", url, "some-id").want(t, 1,
		"err:the SQLite database "+filepath.Join(dir, "app.db")+" does not exist: check the path, or create the outbox with\n  ferry migrate --jobs --db "+url+" --table ferry_jobs\n")
	ferryRun(t, "migrate", "--db", url, "--table", "ferry_jobs").want(t, 0)
	id := strings.TrimSpace(ferryRun(t, "jobs", "enqueue", "--db", url, "--kind", "send_email", "--args", `{"to": "ann"}`, "--key", "account-7").stdout)
	// The jobs' table is there, the tables beside it not yet.
	ferryRun(t, "jobs", "show", "--db", url, id).want(t, 1, missing)
	ferryRun(t, "migrate", "--jobs", "--db", url).want(t, 0, "out:(table ferry_jobs): the outbox schema is up to date", "out:(table ferry_jobs): the job tables are up to date")

	// A worker fails once, then reports progress and an output.
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"), sqlstore.Options{Table: "ferry_jobs"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[sendEmail]) error {
		if job.Attempt == 1 {
			return errors.New("smtp: 421 try again later")
		}
		if err := job.Progress(ctx, map[string]int{"sent": 1}); err != nil {
			return err
		}
		return job.SetOutput(map[string]string{"message_id": "42@mail"})
	})
	client, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: slog.New(slog.DiscardHandler),
		Queues: map[string]jobs.Queue{jobs.DefaultQueue: {Backoff: relay.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}}}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	finished := make(chan error)
	go func() { finished <- client.Run(runCtx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := client.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if info.State == jobs.StateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not complete: %+v", info)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-finished; err != nil {
		t.Fatal(err)
	}

	r := ferryRun(t, "jobs", "show", "--db", url, id)
	r.want(t, 0, "out:job          "+id+"\n", "out:kind         send_email\n", "out:key          account-7\n",
		"out:state        completed (DONE), 2 attempts\n", `out:args         {"to": "ann"}`, `out:progress     {"sent":1}`,
		`out:output       {"message_id":"42@mail"}`, "out:errors (1):\n  attempt 1  20", "out:smtp: 421 try again later\n")
	if !regexp.MustCompile(`attempt 1  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC  smtp`).MatchString(r.stdout) {
		t.Errorf("the error's time is not shown:\n%s", r.stdout)
	}

	r = ferryRun(t, "jobs", "show", "--db", url, "--json", id)
	r.want(t, 0)
	var info jobs.JobInfo
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if info.ID != id || info.State != jobs.StateCompleted || info.Attempts != 2 || len(info.Errors) != 1 || info.Errors[0].Attempt != 1 ||
		info.Errors[0].At.IsZero() || compact(info.Output) != `{"message_id":"42@mail"}` || compact(info.Progress) != `{"sent":1}` {
		t.Errorf("--json: %+v", info)
	}

	ferryRun(t, "jobs", "show", "--db", url, "nope").want(t, 1, "err:no job nope in "+url+" (table ferry_jobs): it was never inserted")
	ferryRun(t, "jobs", "show", "--db", url).want(t, 2, "err:give the job's id")
	ferryRun(t, "jobs", "show", "--db", url, id, "other").want(t, 2, `err:unexpected argument "other": give one job id`)
	ferryRun(t, "jobs", "list", "--db", url).want(t, 2, "err:give a subcommand: ferry jobs enqueue")
}

// compact returns JSON without spaces.
func compact(data []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return err.Error()
	}
	return b.String()
}
