package storetest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ferry-dev/ferry"
)

var fetchCases = []testCase{
	{"OnlyWaiting", testFetchOnlyWaiting},
	{"OnlyLane", testFetchOnlyLane},
	{"SeqOrder", testFetchSeqOrder},
	{"Bounds", testFetchBounds},
	{"Limit", testFetchLimit},
	{"SkipDelayed", testFetchSkipDelayed},
	{"Shards", testFetchShards},
	{"SkipKeys", testFetchSkipKeys},
	{"WaitingKeys", testWaitingKeys},
	{"FetchWithOlder", testFetchWithOlder},
}

// testFetchWithOlder: a store that implements ferry.OlderFetcher returns
// what Fetch and WaitingKeys return, at most perKey older messages of
// each key. Other stores skip this case.
func testFetchWithOlder(t *testing.T, open factory) {
	e := newEnv(t, open)
	of, ok := e.s.(ferry.OlderFetcher)
	if !ok {
		t.Skipf("%T does not implement ferry.OlderFetcher (optional)", e.s)
	}
	delayed := msg("delayed", "", "a")
	delayed.DeliverAt = time.Now().Add(time.Hour)
	recs := e.writeRecs(t, msg("a1", "", "a"), msg("b1", "", "b"), msg("c1", "", "c"), msg("a2", "", "a"),
		msg("a-done", "", "a"), delayed, msg("other-lane", "x", "a"), msg("a3", "", "a"), msg("b2", "", "b"),
		msg("a4", "", "a"), msg("c2", "", "c"), msg("u1", "", ""), msg("b3", "", "b"))
	e.done(t, recs[4])
	cursor := recs[8].Seq // b2
	q := ferry.FetchQuery{Lane: ferry.DefaultLane, AfterSeq: cursor, Limit: 10}
	rows, older, err := of.FetchWithOlder(t.Context(), q, 2)
	if err != nil {
		t.Fatalf("FetchWithOlder: %v", err)
	}
	wantIDs(t, "FetchWithOlder", rows, "a4", "c2", "u1", "b3")
	want := []ferry.KeySeq{{Key: "a", Seq: recs[0].Seq}, {Key: "b", Seq: recs[1].Seq}, {Key: "c", Seq: recs[2].Seq}, {Key: "a", Seq: recs[3].Seq}, {Key: "b", Seq: recs[8].Seq}}
	if !slices.Equal(older, want) {
		t.Errorf("FetchWithOlder past b2, 2 per key: older %v; want %v (a1, a2 but not a3; b1, b2; c1; in Seq order)", older, want)
	}
	rows, older, err = of.FetchWithOlder(t.Context(), ferry.FetchQuery{Lane: ferry.DefaultLane, AfterSeq: recs[12].Seq, Limit: 10}, 2)
	if err != nil || len(rows) != 0 || len(older) != 0 {
		t.Errorf("FetchWithOlder past the last message: %v, %v, %v; want nothing", rows, older, err)
	}
}

// testWaitingKeys: WaitingKeys lists the WAITING messages of the given
// keys up to a Seq, in Seq order, without delayed ones but with retries,
// and honours its limit.
func testWaitingKeys(t *testing.T, open factory) {
	e := newEnv(t, open)
	delayed := msg("delayed", "", "a")
	delayed.DeliverAt = time.Now().Add(time.Hour)
	recs := e.writeRecs(t, msg("a1", "", "a"), msg("b1", "", "b"), msg("c1", "", "c"), msg("a2", "", "a"),
		msg("a-done", "", "a"), delayed, msg("other-lane", "x", "a"), msg("a3", "", "a"), msg("b2", "", "b"))
	e.done(t, recs[4])
	e.complete(t, ferry.Outcome{Seq: recs[3].Seq, Status: ferry.StatusWaiting, Attempts: 1,
		AvailableAt: time.Now().Add(time.Hour), Error: "retry later"})
	got, err := e.s.WaitingKeys(t.Context(), ferry.DefaultLane, []string{"a", "b"}, recs[7].Seq, 100)
	if err != nil {
		t.Fatalf("WaitingKeys: %v", err)
	}
	want := []ferry.KeySeq{{Key: "a", Seq: recs[0].Seq}, {Key: "b", Seq: recs[1].Seq}, {Key: "a", Seq: recs[3].Seq}, {Key: "a", Seq: recs[7].Seq}}
	if !slices.Equal(got, want) {
		t.Errorf("WaitingKeys(a, b up to a3) = %v; want %v (a1, b1, a2 waiting for a retry, a3: not c, not DONE, not delayed, not other lanes, not past a3)", got, want)
	}
	got, err = e.s.WaitingKeys(t.Context(), ferry.DefaultLane, []string{"a", "b"}, recs[8].Seq, 2)
	if err != nil || len(got) != 2 {
		t.Errorf("WaitingKeys with limit 2 returned %v, %v; want 2 entries", got, err)
	}
}

// testFetchOnlyWaiting: DONE, FAILED and EXCLUDED messages are not fetched.
func testFetchOnlyWaiting(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("done", "", "k"), msg("failed", "", "k"), msg("excluded", "", ""), msg("waiting", "", "k"))
	e.done(t, recs[0])
	e.fail(t, "boom", recs[1])
	e.exclude(t, recs[2])
	wantIDs(t, "Fetch", e.fetchLane(t, ferry.DefaultLane), "waiting")
	wantIDs(t, "Fetch skipping delayed messages", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipDelayed: true, Limit: 10}), "waiting")
}

// testFetchOnlyLane: Fetch returns the messages of the lane asked for.
func testFetchOnlyLane(t *testing.T, open factory) {
	e := newEnv(t, open)
	e.write(t, msg("a1", "a", "k"), msg("b1", "b", "k"), msg("a2", "a", ""), msg("d1", "", "k"))
	e.write(t, msg("b2", "b", ""), msg("a3", "a", "k"))
	wantIDs(t, "Fetch of lane a", e.fetchLane(t, "a"), "a1", "a2", "a3")
	wantIDs(t, "Fetch of lane b", e.fetchLane(t, "b"), "b1", "b2")
	wantIDs(t, "Fetch of the default lane", e.fetchLane(t, ferry.DefaultLane), "d1")
	wantIDs(t, "Fetch of a lane without messages", e.fetchLane(t, "none"))
}

// testFetchSeqOrder: Fetch returns messages in Seq order, which is write
// order for one writer, whatever their keys.
func testFetchSeqOrder(t *testing.T, open factory) {
	e := newEnv(t, open)
	var want []string
	for tx := range 3 {
		var msgs []ferry.Message
		for i := range 4 {
			id := fmt.Sprintf("o%d-%d", tx, i)
			msgs = append(msgs, msg(id, "", []string{"z", "a", "", "m"}[i]))
			want = append(want, id)
		}
		e.write(t, msgs...)
	}
	recs := e.fetchLane(t, ferry.DefaultLane)
	wantIDs(t, "Fetch", recs, want...)
	wantSeqOrder(t, "Fetch", recs)
}

// testFetchBounds: AfterSeq < Seq <= UpToSeq, and UpToSeq 0 means no upper
// bound.
func testFetchBounds(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("s0", "", "k"), msg("s1", "", ""), msg("s2", "", "k"), msg("s3", "", ""), msg("s4", "", "k"))
	s := seqsOf(recs)
	q := func(after, upTo int64) []ferry.Record {
		return e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, AfterSeq: after, UpToSeq: upTo, Limit: 100})
	}
	wantIDs(t, "Fetch with AfterSeq of s0 and UpToSeq of s3", q(s[0], s[3]), "s1", "s2", "s3")
	wantIDs(t, "Fetch with AfterSeq of s1 and no UpToSeq", q(s[1], 0), "s2", "s3", "s4")
	wantIDs(t, "Fetch with UpToSeq of s2", q(0, s[2]), "s0", "s1", "s2")
	wantIDs(t, "Fetch with AfterSeq of s4", q(s[4], 0))
	wantIDs(t, "Fetch with AfterSeq = UpToSeq", q(s[2], s[2]))
}

// testFetchLimit: Limit bounds the rows and must be positive.
func testFetchLimit(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("l0", "", "k"), msg("l1", "", ""), msg("l2", "", "k"), msg("l3", "", ""), msg("l4", "", "k"))
	wantIDs(t, "Fetch with Limit 2", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, Limit: 2}), "l0", "l1")
	wantIDs(t, "Fetch with Limit 2 after l1", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, AfterSeq: recs[1].Seq, Limit: 2}), "l2", "l3")
	wantIDs(t, "Fetch with Limit 1", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, Limit: 1}), "l0")
	for _, limit := range []int{0, -1} {
		if got, err := e.s.Fetch(t.Context(), ferry.FetchQuery{Lane: ferry.DefaultLane, Limit: limit}); err == nil {
			t.Errorf("Fetch with Limit %d: want an error (the limit must be positive), got %d records", limit, len(got))
		}
	}
}

// testFetchSkipDelayed: SkipDelayed leaves out messages delayed into the
// future (DeliverAt), but not messages waiting for a retry, which hold
// back their key.
func testFetchSkipDelayed(t *testing.T, open factory) {
	e := newEnv(t, open)
	now := time.Now()
	later, earlier, retrying := msg("later", "", "k1"), msg("earlier", "", "k2"), msg("retrying", "", "k3")
	later.DeliverAt, earlier.DeliverAt = now.Add(time.Hour), now.Add(-time.Hour)
	recs := e.writeRecs(t, msg("now", "", ""), later, earlier, retrying)
	e.complete(t, ferry.Outcome{Seq: recs[3].Seq, Status: ferry.StatusWaiting, Attempts: 1, AvailableAt: now.Add(time.Hour), Error: "retry later"})
	wantIDs(t, "Fetch skipping delayed messages (one delayed an hour, one retrying in an hour)",
		e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipDelayed: true, Limit: 10}), "now", "earlier", "retrying")
	wantIDs(t, "Fetch with delayed messages", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, Limit: 10}), "now", "later", "earlier", "retrying")
}

// testFetchShards: Shards limits the result to those shards; an empty
// non-nil list means none, nil means all.
func testFetchShards(t *testing.T, open factory) {
	e := newEnv(t, open)
	var msgs []ferry.Message
	byShard := map[int][]string{}
	for i := range 200 {
		key := fmt.Sprintf("key-%d", i)
		if i%5 == 0 {
			key = "" // unkeyed: the shard of the id
		}
		m := msg(fmt.Sprintf("m%03d", i), "", key)
		msgs = append(msgs, m)
		sh := ferry.ShardOf(m.Key, m.ID)
		byShard[sh] = append(byShard[sh], m.ID)
	}
	e.write(t, msgs...)
	shards := slices.Sorted(maps.Keys(byShard))
	pick := []int{shards[0], shards[len(shards)/2], shards[len(shards)-1]}
	var want []string
	for _, m := range msgs {
		if slices.Contains(pick, ferry.ShardOf(m.Key, m.ID)) {
			want = append(want, m.ID)
		}
	}
	got := e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, Shards: pick, Limit: 1000})
	wantIDs(t, fmt.Sprintf("Fetch of shards %v", pick), got, want...)
	for _, r := range got {
		if !slices.Contains(pick, r.Shard) {
			t.Errorf("Fetch of shards %v returned %s of shard %d", pick, r.ID, r.Shard)
		}
	}
	wantIDs(t, "Fetch with an empty, non-nil Shards", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, Shards: []int{}, Limit: 1000}))
	if got := e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, Shards: nil, Limit: 1000}); len(got) != len(msgs) {
		t.Errorf("Fetch with nil Shards: want all %d messages, got %d", len(msgs), len(got))
	}
	if got := e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, Shards: allShards(), Limit: 1000}); len(got) != len(msgs) {
		t.Errorf("Fetch with every shard listed: want all %d messages, got %d", len(msgs), len(got))
	}
	var empty int
	for empty = 0; empty < ferry.Shards && len(byShard[empty]) > 0; empty++ {
	}
	if empty < ferry.Shards {
		wantIDs(t, fmt.Sprintf("Fetch of shard %d, which has no messages", empty), e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, Shards: []int{empty}, Limit: 1000}))
	}
}

// testFetchSkipKeys: SkipKeys leaves out those keys; unkeyed messages are
// still returned.
func testFetchSkipKeys(t *testing.T, open factory) {
	e := newEnv(t, open)
	e.write(t, msg("k1a", "", "k1"), msg("k2a", "", "k2"), msg("none", "", ""), msg("k1b", "", "k1"), msg("k3a", "", "k3"))
	q := func(skip ...string) []ferry.Record {
		return e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipKeys: skip, Limit: 100})
	}
	wantIDs(t, "Fetch skipping k1 and k3", q("k1", "k3"), "k2a", "none")
	wantIDs(t, "Fetch skipping k2", q("k2"), "k1a", "none", "k1b", "k3a")
	wantIDs(t, "Fetch skipping a key with no messages", q("zz"), "k1a", "k2a", "none", "k1b", "k3a")
}

var completeCases = []testCase{
	{"Done", testCompleteDone},
	{"DoneDelete", testCompleteDoneDelete},
	{"Retry", testCompleteRetry},
	{"Failed", testCompleteFailed},
	{"NotWaiting", testCompleteNotWaiting},
	{"Mixed", testCompleteMixed},
	{"ManyDone", testCompleteManyDone},
	{"LongError", testCompleteLongError},
	{"BadStatus", testCompleteBadStatus},
}

// testCompleteDone: a DONE outcome sets ProcessedAt and takes the message
// out of Fetch.
func testCompleteDone(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("a", "", "k"), msg("b", "", "k"))
	before := time.Now()
	e.done(t, recs[0])
	r := e.wantStatus(t, "after a DONE outcome", "a", ferry.StatusDone)
	near(t, "ProcessedAt after DONE", r.ProcessedAt, before, clockSlack)
	if r.Attempts != 0 || r.LastError != "" {
		t.Errorf("after DONE: want 0 attempts and no error, got %d attempts, error %q", r.Attempts, r.LastError)
	}
	wantIDs(t, "Fetch after DONE", e.fetchLane(t, ferry.DefaultLane), "b")
}

// testCompleteDoneDelete: a DONE outcome with Delete removes the message,
// but only a WAITING one.
func testCompleteDoneDelete(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("a", "", "k"), msg("b", "", "k"), msg("excluded", "", ""))
	e.exclude(t, recs[2])
	e.complete(t, ferry.Outcome{Seq: recs[0].Seq, Status: ferry.StatusDone, Delete: true},
		ferry.Outcome{Seq: recs[2].Seq, Status: ferry.StatusDone, Delete: true})
	e.absent(t, "a delivered message with Delete", "a")
	e.wantStatus(t, "an EXCLUDED message after a late Delete outcome", "excluded", ferry.StatusExcluded)
	wantIDs(t, "Fetch after a Delete outcome", e.fetchLane(t, ferry.DefaultLane), "b")
}

// testCompleteRetry: a WAITING outcome records the attempt and keeps the
// message WAITING until AvailableAt.
func testCompleteRetry(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("a", "", "k"), msg("b", "", ""))
	retryAt := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	before := time.Now()
	e.complete(t, ferry.Outcome{Seq: recs[0].Seq, Status: ferry.StatusWaiting, Attempts: 3, AvailableAt: retryAt, Error: "broker: timeout ✗"})
	r := e.wantStatus(t, "after a WAITING outcome", "a", ferry.StatusWaiting)
	if r.Attempts != 3 || r.LastError != "broker: timeout ✗" {
		t.Errorf("after a WAITING outcome: want 3 attempts, error %q; got %d attempts, error %q", "broker: timeout ✗", r.Attempts, r.LastError)
	}
	near(t, "AvailableAt after a WAITING outcome", r.AvailableAt, retryAt, timePrecision)
	near(t, "FailedAt after a WAITING outcome", r.FailedAt, before, clockSlack)
	zero(t, "ProcessedAt after a WAITING outcome", r.ProcessedAt)
	wantIDs(t, "Fetch skipping delayed messages, after a retry an hour ahead (it still holds its key)",
		e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipDelayed: true, Limit: 10}), "a", "b")
	wantIDs(t, "Fetch after a retry", e.fetchLane(t, ferry.DefaultLane), "a", "b")

	// A later retry is recorded over the first, with the Seq unchanged.
	e.complete(t, ferry.Outcome{Seq: recs[0].Seq, Status: ferry.StatusWaiting, Attempts: 4, AvailableAt: time.Now().Add(-time.Second), Error: "again"})
	got := e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipDelayed: true, Limit: 10})
	wantIDs(t, "Fetch skipping delayed messages, after a second retry", got, "a", "b")
	if len(got) > 0 && (got[0].Seq != recs[0].Seq || got[0].Attempts != 4 || got[0].LastError != "again") {
		t.Errorf("fetched retry: want Seq %d, 4 attempts, error again; got Seq %d, %d attempts, error %q", recs[0].Seq, got[0].Seq, got[0].Attempts, got[0].LastError)
	}
}

// testCompleteFailed: a FAILED outcome records the status, the attempts
// and the error.
func testCompleteFailed(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("a", "", "k"), msg("b", "", "k"))
	before := time.Now()
	e.complete(t, ferry.Outcome{Seq: recs[0].Seq, Status: ferry.StatusFailed, Attempts: 5, Error: "rejected: malformed"})
	r := e.wantStatus(t, "after a FAILED outcome", "a", ferry.StatusFailed)
	if r.Attempts != 5 || r.LastError != "rejected: malformed" {
		t.Errorf("after FAILED: want 5 attempts, error %q; got %d attempts, error %q", "rejected: malformed", r.Attempts, r.LastError)
	}
	near(t, "FailedAt after FAILED", r.FailedAt, before, clockSlack)
	zero(t, "ProcessedAt after FAILED", r.ProcessedAt)
	wantIDs(t, "Fetch after FAILED", e.fetchLane(t, ferry.DefaultLane), "b")
}

// testCompleteNotWaiting: outcomes for messages that are no longer WAITING
// change nothing, and an unknown Seq is no error.
func testCompleteNotWaiting(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("excluded", "", "k"), msg("done", "", "k"), msg("failed", "", "k"))
	e.exclude(t, recs[0])
	e.done(t, recs[1])
	e.complete(t, ferry.Outcome{Seq: recs[2].Seq, Status: ferry.StatusFailed, Attempts: 2, Error: "first"})
	before := map[string]ferry.Record{}
	for _, r := range e.records(t, "excluded", "done", "failed") {
		before[r.ID] = r
	}
	for _, r := range recs {
		for _, o := range []ferry.Outcome{
			{Seq: r.Seq, Status: ferry.StatusDone},
			{Seq: r.Seq, Status: ferry.StatusWaiting, Attempts: 9, AvailableAt: time.Now().Add(time.Hour), Error: "late retry"},
			{Seq: r.Seq, Status: ferry.StatusFailed, Attempts: 9, Error: "late failure"},
		} {
			e.complete(t, o)
			got, was := e.record(t, r.ID), before[r.ID]
			if got.Status != was.Status || got.Attempts != was.Attempts || got.LastError != was.LastError ||
				!got.ProcessedAt.Equal(was.ProcessedAt) || !got.AvailableAt.Equal(was.AvailableAt) {
				t.Errorf("%s outcome for a %s message: want it ignored (%s, %d attempts, error %q), got %s, %d attempts, error %q, processed %v, available %v",
					o.Status, was.Status, was.Status, was.Attempts, was.LastError, got.Status, got.Attempts, got.LastError, got.ProcessedAt, got.AvailableAt)
			}
		}
	}
	if err := e.s.Complete(t.Context(), []ferry.Outcome{{Seq: recs[2].Seq + 1000, Status: ferry.StatusDone}}); err != nil {
		t.Errorf("Complete for a Seq that does not exist: want nil (ignored), got %v", err)
	}
}

// testCompleteMixed: one call with outcomes of every kind applies each.
func testCompleteMixed(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("d1", "", "k1"), msg("w1", "", "k2"), msg("f1", "", "k3"), msg("d2", "", ""), msg("untouched", "", ""))
	retryAt := time.Now().Add(time.Hour)
	e.complete(t,
		ferry.Outcome{Seq: recs[0].Seq, Status: ferry.StatusDone},
		ferry.Outcome{Seq: recs[1].Seq, Status: ferry.StatusWaiting, Attempts: 1, AvailableAt: retryAt, Error: "retry"},
		ferry.Outcome{Seq: recs[2].Seq, Status: ferry.StatusFailed, Attempts: 1, Error: "fail"},
		ferry.Outcome{Seq: recs[3].Seq, Status: ferry.StatusDone},
	)
	e.wantStatus(t, "mixed batch", "d1", ferry.StatusDone)
	e.wantStatus(t, "mixed batch", "d2", ferry.StatusDone)
	if r := e.wantStatus(t, "mixed batch", "w1", ferry.StatusWaiting); r.Attempts != 1 || r.LastError != "retry" {
		t.Errorf("mixed batch: want w1 with 1 attempt, error retry; got %d, %q", r.Attempts, r.LastError)
	}
	if r := e.wantStatus(t, "mixed batch", "f1", ferry.StatusFailed); r.LastError != "fail" {
		t.Errorf("mixed batch: want f1 with error fail, got %q", r.LastError)
	}
	if r := e.wantStatus(t, "mixed batch", "untouched", ferry.StatusWaiting); r.Attempts != 0 || r.LastError != "" {
		t.Errorf("mixed batch: want the message without an outcome untouched, got %d attempts, error %q", r.Attempts, r.LastError)
	}
	wantIDs(t, "Fetch skipping delayed messages, after a mixed batch", e.fetch(t, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipDelayed: true, Limit: 10}), "w1", "untouched")
}

// testCompleteManyDone: 2,000 DONE outcomes in one call.
func testCompleteManyDone(t *testing.T, open factory) {
	e := newEnv(t, open)
	const n = 2000
	msgs := make([]ferry.Message, n+1)
	for i := range msgs {
		msgs[i] = msg(fmt.Sprintf("m%04d", i), "", fmt.Sprintf("k%d", i%50))
	}
	e.write(t, msgs...)
	recs := e.fetchLane(t, ferry.DefaultLane)
	if len(recs) != n+1 {
		t.Fatalf("Fetch: want %d messages, got %d", n+1, len(recs))
	}
	e.done(t, recs[:n]...)
	wantIDs(t, fmt.Sprintf("Fetch after %d DONE outcomes in one call", n), e.fetchLane(t, ferry.DefaultLane), msgs[n].ID)
	if got := e.list(t, ferry.Filter{Status: ferry.StatusDone, Limit: 2 * n}); len(got) != n {
		t.Errorf("List of DONE messages after %d DONE outcomes: want %d, got %d", n, n, len(got))
	}
}

// testCompleteLongError: an error text far longer than a column holds is
// stored shortened, not refused, so the outcome is not lost.
func testCompleteLongError(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("ascii", "", "k1"), msg("unicode", "", "k2"), msg("retry", "", "k3"))
	ascii := strings.Repeat("<html>error page</html> ", 5000)
	unicode := strings.Repeat("오류 ✗ 🚢 ", 10000)
	e.complete(t,
		ferry.Outcome{Seq: recs[0].Seq, Status: ferry.StatusFailed, Attempts: 1, Error: ascii},
		ferry.Outcome{Seq: recs[1].Seq, Status: ferry.StatusFailed, Attempts: 1, Error: unicode},
		ferry.Outcome{Seq: recs[2].Seq, Status: ferry.StatusWaiting, Attempts: 1, AvailableAt: time.Now(), Error: unicode},
	)
	for i, r := range e.records(t, "ascii", "unicode", "retry") {
		full := []string{ascii, unicode, unicode}[i]
		if r.Attempts != 1 || r.LastError == "" || !utf8.ValidString(r.LastError) || !strings.HasPrefix(full, r.LastError[:min(len(r.LastError), 64)]) {
			t.Errorf("message %s after a %d-byte error: want 1 attempt and a valid UTF-8 beginning of the error, got %d attempts and %d bytes (valid UTF-8: %v): %.80q",
				r.ID, len(full), r.Attempts, len(r.LastError), utf8.ValidString(r.LastError), r.LastError)
		}
	}
}

// testCompleteBadStatus: an outcome that is not DONE, WAITING or FAILED is
// an error.
func testCompleteBadStatus(t *testing.T, open factory) {
	e := newEnv(t, open)
	recs := e.writeRecs(t, msg("a", "", "k"))
	for _, st := range []ferry.Status{ferry.StatusExcluded, "", "SENT"} {
		if err := e.s.Complete(t.Context(), []ferry.Outcome{{Seq: recs[0].Seq, Status: st}}); err == nil {
			t.Errorf("Complete with status %q: want an error, got nil", st)
		}
	}
	e.wantStatus(t, "after refused outcomes", "a", ferry.StatusWaiting)
}

var heldKeysCases = []testCase{
	{"Lane", testHeldKeys},
}

// testHeldKeys: the keys with a FAILED message in the lane, each once,
// without unkeyed messages or other states and lanes.
func testHeldKeys(t *testing.T, open factory) {
	e := newEnv(t, open)
	held := func(lane string) []string {
		keys, err := e.s.HeldKeys(t.Context(), lane)
		if err != nil {
			t.Fatalf("HeldKeys(%s): %v", lane, err)
		}
		slices.Sort(keys)
		return keys
	}
	if keys := held("a"); len(keys) != 0 {
		t.Errorf("HeldKeys of an empty lane: want none, got %q", keys)
	}
	recs := e.writeRecs(t,
		msg("f1", "a", "k1"), msg("f2", "a", "k1"), msg("f3", "a", ""), msg("f4", "a", "키 ✓"),
		msg("w", "a", "k2"), msg("d", "a", "k3"), msg("x", "a", "k4"), msg("retried", "a", "k6"),
		msg("other", "b", "k5"))
	e.fail(t, "boom", recs[0], recs[1], recs[2], recs[3], recs[7], recs[8])
	e.done(t, recs[5])
	e.exclude(t, recs[6])
	if n, err := e.s.Retry(t.Context(), ferry.Filter{IDs: []string{"retried"}}); err != nil || n != 1 {
		t.Fatalf("Retry of one FAILED message: got %d, %v; want 1, nil", n, err)
	}
	if got, want := held("a"), []string{"k1", "키 ✓"}; !slices.Equal(got, want) {
		t.Errorf("HeldKeys(a): want %q (keys with a FAILED message, once each), got %q", want, got)
	}
	if got, want := held("b"), []string{"k5"}; !slices.Equal(got, want) {
		t.Errorf("HeldKeys(b): want %q, got %q", want, got)
	}
	if keys := held("c"); len(keys) != 0 {
		t.Errorf("HeldKeys of a lane without messages: want none, got %q", keys)
	}
}
