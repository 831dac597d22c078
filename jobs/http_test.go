package jobs_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/jobs"
)

// A service in another language inserts jobs over HTTP; bad requests are
// 400 with a message saying what is wrong, and insert nothing.
func TestHTTPInsert(t *testing.T) {
	st := sqliteStore(t)
	workers := jobs.NewWorkers()
	got := make(chan *jobs.Job[SendEmail], 4)
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendEmail]) error { got <- job; return nil })
	c, err := jobs.NewClient(st, jobs.Config{Workers: workers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	post := func(body string) (int, map[string]string) {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]string
		data, _ := io.ReadAll(resp.Body)
		json.Unmarshal(data, &out)
		return resp.StatusCode, out
	}

	code, out := post(`{"kind": "send_email", "args": {"to": "ann@example.com", "subject": "Hi"}, "key": "account-7", "unique": {"by_args": true, "period": "1h"}}`)
	if code != http.StatusCreated || !strings.HasPrefix(out["id"], "unique:send_email:") {
		t.Fatalf("insert: %d %v", code, out)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"kind": "resize_image", "args": {}}`, `no worker for job kind "resize_image"`},
		{`{"kind": "send_email", "args": {"to": 7}}`, `the arguments of a "send_email" job do not decode into jobs_test.SendEmail`},
		{`{"kind": "send_email", "args": {"too": "x"}}`, `unknown field "too"`},
		{`{"kind": "send_email", "args": {}, "queue": "reports"}`, `queue "reports" is not one this client runs`},
		{`{"kind": "send_email", "args": {}, "unique": {"period": "1h"}}`, `unique needs "by_args": true or a "key"`},
		{`{"kind": "send_email", "args": {}, "unique": {"by_args": true, "period": "soon"}}`, `unique.period "soon" is not a positive duration`},
		{`{"kind": "send_email"}`, `a job needs "kind" and "args"`},
		{`{"kind": "send_email", "args": {}, "priority": 1}`, `unknown field "priority"`},
		{`not json`, `the request is not a job`},
	} {
		code, out := post(tc.body)
		if code != http.StatusBadRequest || !strings.Contains(out["error"], tc.want) {
			t.Errorf("%s: %d %v, want 400 with %q", tc.body, code, out, tc.want)
		}
	}
	resp, _ := http.Get(srv.URL)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}

	start(t, c)
	select {
	case job := <-got:
		if job.Args.To != "ann@example.com" || job.Key != "account-7" {
			t.Errorf("job %+v", job)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the job inserted over HTTP did not run")
	}
	select {
	case job := <-got:
		t.Errorf("a rejected request inserted a job: %+v", job)
	case <-time.After(200 * time.Millisecond):
	}
}
