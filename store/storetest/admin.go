package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
)

var cleanupCases = []testCase{
	{"DoneBeforeCutoff", testCleanup},
}

// testCleanup: Cleanup deletes DONE messages processed before the cutoff,
// at most limit of them, and nothing else; Seqs are not reused after.
func testCleanup(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("w", "", "k"), msg("f", "", "k"), msg("x", "", "k"),
		msg("d1", "", ""), msg("d2", "other", ""), msg("d3", "", "k2"), msg("d4", "", ""))
	e.fail(t, "boom", recs[1])
	e.exclude(t, recs[2])
	e.done(t, recs[3:]...)
	cleanup := func(cutoff time.Time, limit int) int {
		t.Helper()
		n, err := e.s.Cleanup(t.Context(), cutoff, limit)
		if err != nil {
			t.Fatalf("Cleanup(%v, %d): %v", cutoff, limit, err)
		}
		return n
	}
	if n := cleanup(time.Now().Add(-time.Hour), 100); n != 0 {
		t.Errorf("Cleanup with a cutoff an hour ago of messages done just now: want 0 deleted, got %d", n)
	}
	future := time.Now().Add(time.Hour)
	if n := cleanup(future, 3); n != 3 {
		t.Errorf("Cleanup with limit 3 of 4 DONE messages: want 3 deleted, got %d", n)
	}
	if got := e.list(t, ferry.Filter{Status: ferry.StatusDone}); len(got) != 1 {
		t.Errorf("after deleting 3 of 4 DONE messages: want 1 DONE left, got %v", idsOf(got))
	}
	if n := cleanup(future, 100); n != 1 {
		t.Errorf("Cleanup of the last DONE message: want 1 deleted, got %d", n)
	}
	if n := cleanup(future, 100); n != 0 {
		t.Errorf("Cleanup with no DONE messages left: want 0, got %d", n)
	}
	wantIDs(t, "List after Cleanup (WAITING, FAILED and EXCLUDED stay)", e.list(t, ferry.Filter{}), "w", "f", "x")

	// The deleted rows had the highest Seqs; a new message still gets a
	// higher one, so a relay's position stays valid.
	n := e.writeRecs(t, msg("new", "", ""))[0]
	if n.Seq <= recs[len(recs)-1].Seq {
		t.Errorf("a message written after Cleanup: want a Seq above every earlier one (%d), got %d", recs[len(recs)-1].Seq, n.Seq)
	}
}

var statsCases = []testCase{
	{"Lanes", testStats},
}

// testStats: per-lane counts, the oldest due message and recent
// deliveries; EXCLUDED messages are not counted, and a lane with nothing
// else is not listed.
func testStats(t *testing.T, open factory) {
	e := newEnv(t, open)
	stats := func() map[string]ferry.LaneStats {
		t.Helper()
		st, err := e.s.Stats(t.Context())
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		out := map[string]ferry.LaneStats{}
		for _, s := range st {
			if _, dup := out[s.Lane]; dup {
				t.Errorf("Stats: lane %s listed twice", s.Lane)
			}
			out[s.Lane] = s
		}
		return out
	}
	if st := stats(); len(st) != 0 {
		t.Errorf("Stats of an empty outbox: want no lanes, got %+v", st)
	}

	now := time.Now()
	old, older, ahead := msg("a-old", "a", "k1"), msg("a-older", "a", "k2"), msg("a-ahead", "a", "k3")
	old.DeliverAt, older.DeliverAt, ahead.DeliverAt = now.Add(-time.Hour), now.Add(-2*time.Hour), now.Add(time.Hour)
	recs := e.writeRecs(t, old, older, ahead, msg("a-now", "a", ""), msg("a-failed", "a", "k4"),
		msg("a-done1", "a", ""), msg("a-done2", "a", ""), msg("b-now", "b", ""), msg("c-done", "c", ""),
		msg("d-excluded", "d", ""), msg("a-excluded", "a", ""))
	e.fail(t, "boom", recs[4])
	e.done(t, recs[5], recs[6], recs[8])
	e.exclude(t, recs[9], recs[10])

	st := stats()
	check := func(lane string, waiting, failed, lastMinute int, oldestDue time.Time) {
		t.Helper()
		s, ok := st[lane]
		if !ok {
			t.Errorf("Stats: want lane %s, got lanes %v", lane, st)
			return
		}
		if s.Waiting != waiting || s.Failed != failed || s.LastMinute != lastMinute {
			t.Errorf("Stats of lane %s: want %d waiting, %d failed, %d done in the last minute; got %d, %d, %d",
				lane, waiting, failed, lastMinute, s.Waiting, s.Failed, s.LastMinute)
		}
		if oldestDue.IsZero() {
			zero(t, "OldestDue of lane "+lane, s.OldestDue)
		} else {
			near(t, "OldestDue of lane "+lane, s.OldestDue, oldestDue, timePrecision)
		}
	}
	check("a", 4, 1, 2, older.DeliverAt)
	check("b", 1, 0, 0, e.record(t, "b-now").AvailableAt)
	check("c", 0, 0, 1, time.Time{})
	if len(st) != 3 {
		t.Errorf("Stats: want lanes a, b and c (d has only an EXCLUDED message), got %d lanes: %v", len(st), st)
	}
}

var adminCases = []testCase{
	{"List", testList},
	{"ListDefaultLimit", testListDefaultLimit},
	{"Retry", testRetry},
	{"Exclude", testExclude},
}

// testList: each Filter field selects what it says, in Seq order, and
// AfterSeq pages through the result.
func testList(t *testing.T, open factory) {
	e := newEnv(t, open)
	in := []ferry.Message{
		{ID: "m1", Lane: "a", Topic: "t1", Key: "k1"},
		{ID: "m2", Lane: "a", Topic: "t2", Key: "k2"},
		{ID: "m3", Lane: "b", Topic: "t1", Key: "k1"},
		{ID: "m4", Lane: "b", Topic: "t2"},
		{ID: "m5", Lane: "a", Topic: "t1", Key: "k1"},
	}
	recs := e.writeRecs(t, in...)
	e.fail(t, "boom", recs[1])
	e.done(t, recs[2])
	e.exclude(t, recs[4])

	for _, c := range []struct {
		what string
		f    ferry.Filter
		want []string
	}{
		{"no filter", ferry.Filter{}, []string{"m1", "m2", "m3", "m4", "m5"}},
		{"IDs", ferry.Filter{IDs: []string{"m3", "m1", "nope"}}, []string{"m1", "m3"}},
		{"Seqs", ferry.Filter{Seqs: []int64{recs[3].Seq, recs[1].Seq}}, []string{"m2", "m4"}},
		{"Lane", ferry.Filter{Lane: "a"}, []string{"m1", "m2", "m5"}},
		{"Topic", ferry.Filter{Topic: "t1"}, []string{"m1", "m3", "m5"}},
		{"Key", ferry.Filter{Key: "k1"}, []string{"m1", "m3", "m5"}},
		{"Status WAITING", ferry.Filter{Status: ferry.StatusWaiting}, []string{"m1", "m4"}},
		{"Status FAILED", ferry.Filter{Status: ferry.StatusFailed}, []string{"m2"}},
		{"Status DONE", ferry.Filter{Status: ferry.StatusDone}, []string{"m3"}},
		{"Status EXCLUDED", ferry.Filter{Status: ferry.StatusExcluded}, []string{"m5"}},
		{"Lane, Topic and Key", ferry.Filter{Lane: "a", Topic: "t1", Key: "k1"}, []string{"m1", "m5"}},
		{"Lane and Status", ferry.Filter{Lane: "b", Status: ferry.StatusWaiting}, []string{"m4"}},
		{"IDs and Lane", ferry.Filter{IDs: []string{"m1", "m3"}, Lane: "b"}, []string{"m3"}},
		{"Limit 2", ferry.Filter{Limit: 2}, []string{"m1", "m2"}},
		{"AfterSeq", ferry.Filter{AfterSeq: recs[2].Seq}, []string{"m4", "m5"}},
		{"unknown lane", ferry.Filter{Lane: "zz"}, nil},
	} {
		wantIDs(t, fmt.Sprintf("List with %s (%+v)", c.what, c.f), e.list(t, c.f), c.want...)
	}

	var paged []string
	var after int64
	for page := 0; ; page++ {
		got := e.list(t, ferry.Filter{Limit: 2, AfterSeq: after})
		if len(got) == 0 || page > 5 {
			break
		}
		if len(got) > 2 {
			t.Errorf("List page %d with Limit 2: got %d records", page, len(got))
		}
		paged = append(paged, idsOf(got)...)
		after = got[len(got)-1].Seq
	}
	if fmt.Sprint(paged) != "[m1 m2 m3 m4 m5]" {
		t.Errorf("List in pages of 2 by AfterSeq: want [m1 m2 m3 m4 m5], got %v", paged)
	}

	if got, err := e.s.List(t.Context(), ferry.Filter{Status: "SENT"}); err == nil {
		t.Errorf("List with an unknown status: want an error, got %d records", len(got))
	}
}

// testListDefaultLimit: a zero Limit lists 100.
func testListDefaultLimit(t *testing.T, open factory) {
	e := newEnv(t, open)
	msgs := make([]ferry.Message, 120)
	for i := range msgs {
		msgs[i] = msg(fmt.Sprintf("m%03d", i), "", "")
	}
	e.write(t, msgs...)
	if got := e.list(t, ferry.Filter{}); len(got) != 100 || got[0].ID != "m000" || got[99].ID != "m099" {
		t.Errorf("List without a Limit of 120 messages: want the first 100 (m000..m099), got %d", len(got))
	}
	if got := e.list(t, ferry.Filter{Limit: 500}); len(got) != 120 {
		t.Errorf("List with Limit 500 of 120 messages: want 120, got %d", len(got))
	}
}

// testRetry: Retry moves FAILED messages matching the filter to WAITING,
// due now with a fresh retry budget, and nothing else.
func testRetry(t *testing.T, open factory) {
	e := newEnv(t, open)
	f1, f2 := msg("f1", "", "k1"), msg("f2", "", "k2")
	f1.DeliverAt = time.Now().Add(time.Hour) // retried: due now regardless
	recs := e.writeRecs(t, f1, f2, msg("w", "", "k3"), msg("d", "", "k3"), msg("x", "", "k3"))
	e.complete(t,
		ferry.Outcome{Seq: recs[0].Seq, Status: ferry.StatusFailed, Attempts: 7, Error: "gave up"},
		ferry.Outcome{Seq: recs[1].Seq, Status: ferry.StatusFailed, Attempts: 7, Error: "gave up"},
		ferry.Outcome{Seq: recs[3].Seq, Status: ferry.StatusDone},
	)
	e.exclude(t, recs[4])

	if n, err := e.s.Retry(t.Context(), ferry.Filter{Status: ferry.StatusDone}); err == nil {
		t.Errorf("Retry with Status DONE: want an error (Retry acts on FAILED messages), got %d, nil", n)
	}
	e.wantStatus(t, "after a refused Retry", "d", ferry.StatusDone)
	e.wantStatus(t, "after a refused Retry", "f1", ferry.StatusFailed)

	before := time.Now()
	if n, err := e.s.Retry(t.Context(), ferry.Filter{Key: "k1"}); err != nil || n != 1 {
		t.Errorf("Retry of key k1: want 1, nil; got %d, %v", n, err)
	}
	r := e.wantStatus(t, "after Retry", "f1", ferry.StatusWaiting)
	if r.Attempts != 0 {
		t.Errorf("after Retry: want 0 attempts (a fresh budget), got %d", r.Attempts)
	}
	near(t, "AvailableAt after Retry (due now)", r.AvailableAt, before, clockSlack)
	e.wantStatus(t, "Retry of key k1", "f2", ferry.StatusFailed)
	wantIDs(t, "Fetch skipping delayed messages, after Retry of one delayed an hour", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipDelayed: true, Limit: 10}), "f1", "w")

	if n, err := e.s.Retry(t.Context(), ferry.Filter{Status: ferry.StatusFailed}); err != nil || n != 1 {
		t.Errorf("Retry of every FAILED message: want 1 (f2), nil; got %d, %v", n, err)
	}
	e.wantStatus(t, "after Retry of all", "d", ferry.StatusDone)
	e.wantStatus(t, "after Retry of all", "x", ferry.StatusExcluded)
	if n, err := e.s.Retry(t.Context(), ferry.Filter{}); err != nil || n != 0 {
		t.Errorf("Retry with nothing FAILED: want 0, nil; got %d, %v", n, err)
	}
}

// testExclude: Exclude moves FAILED messages, or WAITING ones when asked,
// to EXCLUDED, and nothing else.
func testExclude(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("f1", "a", "k1"), msg("f2", "b", "k2"), msg("w1", "a", "k3"), msg("w2", "a", "k4"), msg("d", "a", ""))
	e.fail(t, "boom", recs[0], recs[1])
	e.done(t, recs[4])

	for _, st := range []ferry.Status{ferry.StatusDone, ferry.StatusExcluded} {
		if n, err := e.s.Exclude(t.Context(), ferry.Filter{Status: st}); err == nil {
			t.Errorf("Exclude with Status %s: want an error, got %d, nil", st, n)
		}
	}
	e.wantStatus(t, "after a refused Exclude", "d", ferry.StatusDone)

	if n, err := e.s.Exclude(t.Context(), ferry.Filter{IDs: []string{"f1", "w1"}}); err != nil || n != 1 {
		t.Errorf("Exclude of f1 and w1 without a status: want 1 (only the FAILED one), nil; got %d, %v", n, err)
	}
	e.wantStatus(t, "after Exclude", "f1", ferry.StatusExcluded)
	e.wantStatus(t, "Exclude without a status leaves WAITING messages", "w1", ferry.StatusWaiting)
	e.wantStatus(t, "Exclude by id", "f2", ferry.StatusFailed)

	if n, err := e.s.Exclude(t.Context(), ferry.Filter{}); err != nil || n != 1 {
		t.Errorf("Exclude of every FAILED message: want 1 (f2), nil; got %d, %v", n, err)
	}
	e.wantStatus(t, "after Exclude of all FAILED", "f2", ferry.StatusExcluded)

	if n, err := e.s.Exclude(t.Context(), ferry.Filter{Status: ferry.StatusWaiting, Seqs: []int64{recs[2].Seq}}); err != nil || n != 1 {
		t.Errorf("Exclude of WAITING w1: want 1, nil; got %d, %v", n, err)
	}
	e.wantStatus(t, "after Exclude of WAITING w1", "w1", ferry.StatusExcluded)
	wantIDs(t, "Fetch of lane a after excluding w1", e.fetchLane(t, "a"), "w2")
	e.wantStatus(t, "after every Exclude", "d", ferry.StatusDone)
	if n, err := e.s.Retry(t.Context(), ferry.Filter{}); err != nil || n != 0 {
		t.Errorf("Retry after excluding: want 0 (EXCLUDED is final), got %d, %v", n, err)
	}
}
