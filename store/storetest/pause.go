package storetest

import (
	"slices"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry"
)

var pauseCases = []testCase{
	{"PauseResume", testPauseResume},
	{"Concurrent", testPauseConcurrent},
	{"Stats", testPauseStats},
	{"UpgradeFromVersion1", testPauseUpgrade},
}

// paused calls Paused and fails t on error.
func (e *env) paused(t *testing.T) []string {
	t.Helper()
	lanes, err := e.s.Paused(t.Context())
	if err != nil {
		t.Fatalf("Paused: %v", err)
	}
	return lanes
}

// wantPaused checks the paused lanes, in order.
func (e *env) wantPaused(t *testing.T, what string, lanes ...string) {
	t.Helper()
	if got := e.paused(t); !slices.Equal(got, lanes) {
		if lanes == nil {
			lanes = []string{}
		}
		t.Errorf("%s: want paused lanes %q, got %q", what, lanes, got)
	}
}

// pause calls Pause and fails t on error.
func (e *env) pause(t *testing.T, lane string) {
	t.Helper()
	if err := e.s.Pause(t.Context(), lane); err != nil {
		t.Fatalf("Pause(%q): %v", lane, err)
	}
}

// resume calls Resume and fails t on error.
func (e *env) resume(t *testing.T, lane string) {
	t.Helper()
	if err := e.s.Resume(t.Context(), lane); err != nil {
		t.Fatalf("Resume(%q): %v", lane, err)
	}
}

// testPauseResume: Pause and Resume change what Paused returns, for
// every instance, lane by lane (case-sensitive, as lanes are), and
// repeating either is not an error. Messages are untouched.
func testPauseResume(t *testing.T, open factory) {
	e := newEnv(t, open)
	e.wantPaused(t, "Paused of a new outbox")
	e.write(t, msg("b1", "b", "k"))

	e.pause(t, "b")
	e.pause(t, "a")
	e.pause(t, "b") // again
	e.pause(t, "B") // another lane
	e.wantPaused(t, "after pausing b, a, b again and B", "B", "a", "b")
	e.again(t).wantPaused(t, "Paused from a second instance", "B", "a", "b")
	wantIDs(t, "Fetch of a paused lane (the relay decides what pausing means, the store keeps the messages)", e.fetchLane(t, "b"), "b1")

	e.resume(t, "a")
	e.resume(t, "a") // again
	e.resume(t, "never-paused")
	e.wantPaused(t, "after resuming a, a again and a lane never paused", "B", "b")
	e.again(t).resume(t, "b")
	e.wantPaused(t, "after resuming b from a second instance", "B")

	if err := e.s.Pause(t.Context(), ""); err == nil {
		t.Errorf("Pause of an empty lane name: want an error, got nil")
	}
	e.wantPaused(t, "after a refused Pause", "B")
}

// testPauseConcurrent: instances pausing and resuming the same lane at
// once all succeed, and the lane ends up as the last call left it.
func testPauseConcurrent(t *testing.T, open factory) {
	e := newEnv(t, open)
	envs := []*env{e, e.again(t), e.again(t)}
	errs := make(chan error, 4*len(envs))
	var wg sync.WaitGroup
	for _, x := range envs {
		for range 4 {
			wg.Go(func() { errs <- x.s.Pause(t.Context(), "a") })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Pause of one lane from several instances at once: want nil, got %v", err)
		}
	}
	e.wantPaused(t, "after concurrent Pause calls", "a")

	errs = make(chan error, 4*len(envs))
	for _, x := range envs {
		for range 4 {
			wg.Go(func() { errs <- x.s.Resume(t.Context(), "a") })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Resume of one lane from several instances at once: want nil, got %v", err)
		}
	}
	e.wantPaused(t, "after concurrent Resume calls")
}

// testPauseStats: Stats marks paused lanes, and lists a paused lane that
// has no messages, so whoever paused it can see that it is.
func testPauseStats(t *testing.T, open factory) {
	e := newEnv(t, open)
	e.write(t, msg("a1", "a", ""), msg("c1", "c", ""))
	e.pause(t, "c")
	e.pause(t, "b") // no messages
	st, err := e.s.Stats(t.Context())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	var got []string
	for _, s := range st {
		got = append(got, s.Lane)
		want := s.Lane != "a"
		if s.Paused != want {
			t.Errorf("Stats of lane %s: want Paused %v, got %v", s.Lane, want, s.Paused)
		}
		if s.Lane == "b" && (s.Waiting != 0 || s.Failed != 0 || s.LastMinute != 0) {
			t.Errorf("Stats of paused lane b, which has no messages: want zero counts, got %+v", s)
		}
		if s.Lane == "c" && s.Waiting != 1 {
			t.Errorf("Stats of paused lane c: want 1 WAITING, got %+v", s)
		}
	}
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Stats with lane a, paused lane b without messages and paused lane c: want lanes [a b c] in order, got %q", got)
	}
}

// testPauseUpgrade: a schema created before pausing existed (version 1:
// no paused table) is upgraded by Migrate, keeping its messages.
func testPauseUpgrade(t *testing.T, open factory) {
	e := newEnv(t, open)
	e.write(t, msg("m1", "", "k"))
	for _, stmt := range []string{
		"DROP TABLE " + e.table + "_paused",
		"UPDATE " + e.table + "_schema SET version = 1",
	} {
		if _, err := e.db.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("turn the schema back into version 1: %s: %v", stmt, err)
		}
	}
	if _, err := e.s.Paused(t.Context()); err == nil {
		t.Fatalf("Paused on a version 1 schema (no paused table): want an error, got nil")
	}
	if err := e.s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate from version 1: %v", err)
	}
	e.pause(t, "a")
	e.wantPaused(t, "after Migrate from version 1 and Pause", "a")
	wantIDs(t, "Fetch after Migrate from version 1", e.fetchLane(t, ferry.DefaultLane), "m1")
}
