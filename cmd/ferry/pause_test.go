package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestPauseResume(t *testing.T) {
	url, path := newDB(t)
	st := seed(t, path)
	paused := func() []string {
		t.Helper()
		lanes, err := st.Paused(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return lanes
	}

	ferryRun(t, "pause", "--db", url).want(t, 2, "err:ferry pause: which lanes? name them: ferry pause --db URL LANE...")
	ferryRun(t, "resume", "--db", url).want(t, 2, "err:ferry resume: which lanes?")
	ferryRun(t, "pause", "--db", url, "").want(t, 2, `err:lane "" is not a lane name`)

	ferryRun(t, "pause", "--db", url, "batch").want(t, 0,
		"out:paused lane batch: relays start no new deliveries of it within about a second",
		"out:resume with: ferry resume --db "+url+" batch")
	if got := paused(); !slices.Equal(got, []string{"batch"}) {
		t.Fatalf("after ferry pause batch, the store's paused lanes are %q; want [batch]", got)
	}
	ferryRun(t, "pause", "--db", url, "batch").want(t, 0, "out:lane batch was already paused")
	// A lane with no messages is paused all the same, with a warning: it
	// may be a typo.
	ferryRun(t, "pause", "--db", url, "bacth").want(t, 0, "out:paused lane bacth", "err:warning: lane bacth has no messages; did you mean batch?")

	r := ferryRun(t, "inspect", "--db", url)
	r.want(t, 0, "out:batch (PAUSED) ", "out:bacth (PAUSED) ")
	r = ferryRun(t, "inspect", "--db", url, "--json")
	r.want(t, 0)
	var lanes []laneReport
	if err := json.Unmarshal([]byte(r.stdout), &lanes); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, r.stdout)
	}
	for _, l := range lanes {
		if want := l.Lane != "online"; l.Paused != want {
			t.Errorf("inspect --json: lane %s has paused %v, want %v", l.Lane, l.Paused, want)
		}
	}

	ferryRun(t, "resume", "--db", url, "batch", "online", "bacth").want(t, 0,
		"out:resumed lane batch: relays deliver it again within about a second",
		"out:lane online was not paused",
		"out:resumed lane bacth")
	if got := paused(); len(got) != 0 {
		t.Errorf("after ferry resume, the store's paused lanes are %q; want none", got)
	}
	if r := ferryRun(t, "inspect", "--db", url); r.code != 0 || strings.Contains(r.stdout, "PAUSED") {
		t.Errorf("inspect after resume still marks a lane:\n%s", r.stdout)
	}

	// A schema from before pausing existed (version 1): the advice is to
	// migrate, and that is enough.
	for _, stmt := range []string{"DROP TABLE ferry_outbox_paused", "UPDATE ferry_outbox_schema SET version = 1"} {
		if _, err := st.DB.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	ferryRun(t, "pause", "--db", url, "batch").want(t, 1,
		"err:the table ferry_outbox_paused, where paused lanes are kept, does not exist in "+url+": create or upgrade the schema with\n  ferry migrate --db "+url+"\n")
	ferryRun(t, "inspect", "--db", url).want(t, 1, "err:ferry migrate --db "+url)
	ferryRun(t, "migrate", "--db", url).want(t, 0)
	ferryRun(t, "pause", "--db", url, "batch").want(t, 0, "out:paused lane batch")
}
