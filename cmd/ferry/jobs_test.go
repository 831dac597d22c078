package main

import (
	"path/filepath"
	"strings"
	"testing"
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
