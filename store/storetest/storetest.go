// Package storetest is the conformance suite of ferry.Store: the behaviour
// every database's store must have, checked the way a user would check it.
// SQLite, PostgreSQL and MariaDB/MySQL all pass it, and a new database is
// supported when its package does too.
//
// A new database is a new folder under store/ (say store/cockroach) with an
// Open function and a test that hands Run a factory:
//
//	func TestConformance(t *testing.T) {
//		dsn := testdb.PostgresDSN(t) // or how this database is reached in tests
//		storetest.Run(t, func(t *testing.T, table string) ferry.Store {
//			s, err := cockroach.Open(t.Context(), dsn, sqlstore.Options{Table: table})
//			if err != nil {
//				t.Fatalf("open: %v", err)
//			}
//			t.Cleanup(func() { s.Close() })
//			if err := s.Migrate(t.Context()); err != nil {
//				t.Fatalf("migrate: %v", err)
//			}
//			return s
//		})
//	}
//
// The factory's contract:
//
//   - It returns a migrated store whose outbox table is named table. Run
//     picks a name no other test uses (testdb.Table), so the cases run in
//     parallel on one database.
//   - Each call returns a new store instance with its own connections.
//     Run calls it more than once with the same table name, sometimes from
//     several goroutines at once, to check that instances share the table
//     (concurrent migration, leases across relay instances). So a call must
//     reach the same database each time for the same t and table; an
//     embedded database keeps one file per test, not per call.
//   - It registers the store's cleanup with t.Cleanup. Dropping the tables
//     is optional, and must tolerate another instance having dropped them.
//   - It may fail t with t.Fatal. (Where Run calls it from another
//     goroutine, the failure still fails the test and Run stops there.)
//   - The store implements interface{ SQLDB() *sql.DB }, the handle on
//     which applications begin the transactions they pass to
//     ferry.Outbox.Write. Stores that embed *sqlstore.Store have it.
//
// Cases that depend on time use the database's clock as the stores do:
// the lease cases wait for a one-second lease to lapse, so the suite takes
// a few seconds. Nothing in it skips: a case that cannot run fails.
package storetest

import (
	"bytes"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
)

// Run runs the conformance suite against the stores open returns. Each
// case is a subtest with a table of its own, and the cases run in
// parallel. See the package documentation for what open must do.
func Run(t *testing.T, open func(t *testing.T, table string) ferry.Store) {
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"Migrate", migrateCases},
		{"Write", writeCases},
		{"Fetch", fetchCases},
		{"Complete", completeCases},
		{"HeldKeys", heldKeysCases},
		{"Lease", leaseCases},
		{"Cleanup", cleanupCases},
		{"Stats", statsCases},
		{"Admin", adminCases},
		{"Pause", pauseCases},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, open)
				})
			}
		})
	}
}

// testCase is one subtest of the suite.
type testCase struct {
	name string
	run  func(t *testing.T, open factory)
}

type factory = func(t *testing.T, table string) ferry.Store

// sqlDBer is what the suite needs beyond ferry.Store: the handle to begin
// the caller's transactions on.
type sqlDBer interface{ SQLDB() *sql.DB }

// env is one case's store on its own table.
type env struct {
	open  factory
	table string
	s     ferry.Store
	db    *sql.DB
	out   *ferry.Outbox
}

// newEnv opens a store on a fresh table.
func newEnv(t *testing.T, open factory) *env {
	t.Helper()
	return openEnv(t, open, testdb.Table(t))
}

// openEnv opens a store on table through the factory.
func openEnv(t *testing.T, open factory, table string) *env {
	t.Helper()
	s := open(t, table)
	if s == nil {
		t.Fatalf("the store factory returned a nil store for table %s", table)
	}
	h, ok := s.(sqlDBer)
	if !ok {
		t.Fatalf("store %T (%s) has no SQLDB() *sql.DB method; the suite needs it to begin the transactions Outbox.Write takes (embed *sqlstore.Store)", s, s.Dialect())
	}
	return &env{open: open, table: table, s: s, db: h.SQLDB(), out: ferry.NewOutbox(s)}
}

// again opens a second instance of the store on the same table.
func (e *env) again(t *testing.T) *env {
	t.Helper()
	return openEnv(t, e.open, e.table)
}

// begin starts a transaction on the store's database.
func (e *env) begin(t *testing.T) *sql.Tx {
	t.Helper()
	tx, err := e.db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatalf("begin a transaction: %v", err)
	}
	return tx
}

// write writes msgs through the Outbox in one transaction and commits it.
func (e *env) write(t *testing.T, msgs ...ferry.Message) {
	t.Helper()
	tx := e.begin(t)
	if err := e.out.Write(t.Context(), tx, msgs...); err != nil {
		tx.Rollback()
		t.Fatalf("Outbox.Write of %d messages: %v", len(msgs), err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit after Outbox.Write of %d messages: %v", len(msgs), err)
	}
}

// writeRecs writes msgs (which must have IDs) and returns their records in
// the same order.
func (e *env) writeRecs(t *testing.T, msgs ...ferry.Message) []ferry.Record {
	t.Helper()
	e.write(t, msgs...)
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return e.records(t, ids...)
}

// list calls List and fails t on error.
func (e *env) list(t *testing.T, f ferry.Filter) []ferry.Record {
	t.Helper()
	recs, err := e.s.List(t.Context(), f)
	if err != nil {
		t.Fatalf("List(%+v): %v", f, err)
	}
	return recs
}

// records returns the records of ids in the order of ids; it fails t if
// one is missing.
func (e *env) records(t *testing.T, ids ...string) []ferry.Record {
	t.Helper()
	recs := e.list(t, ferry.Filter{IDs: ids, Limit: len(ids) + 1})
	byID := make(map[string]ferry.Record, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	out := make([]ferry.Record, len(ids))
	for i, id := range ids {
		r, ok := byID[id]
		if !ok {
			t.Fatalf("message %s is not stored: List by its id returned %d records (%v)", id, len(recs), idsOf(recs))
		}
		out[i] = r
	}
	return out
}

// record returns the record of id.
func (e *env) record(t *testing.T, id string) ferry.Record {
	t.Helper()
	return e.records(t, id)[0]
}

// absent fails t if any of ids is stored.
func (e *env) absent(t *testing.T, why string, ids ...string) {
	t.Helper()
	if recs := e.list(t, ferry.Filter{IDs: ids}); len(recs) > 0 {
		t.Errorf("%s: want messages %v absent, but List finds %v", why, ids, idsOf(recs))
	}
}

// fetch calls Fetch and fails t on error.
func (e *env) fetch(t *testing.T, q ferry.FetchQuery) []ferry.Record {
	t.Helper()
	recs, err := e.s.Fetch(t.Context(), q)
	if err != nil {
		t.Fatalf("Fetch(%+v): %v", q, err)
	}
	return recs
}

// fetchLane returns all WAITING messages of lane, due or not.
func (e *env) fetchLane(t *testing.T, lane string) []ferry.Record {
	t.Helper()
	return e.fetch(t, ferry.FetchQuery{Lane: lane, Limit: 100000})
}

// complete calls Complete and fails t on error.
func (e *env) complete(t *testing.T, outcomes ...ferry.Outcome) {
	t.Helper()
	if err := e.s.Complete(t.Context(), outcomes); err != nil {
		t.Fatalf("Complete(%d outcomes): %v", len(outcomes), err)
	}
}

// done records delivery of recs.
func (e *env) done(t *testing.T, recs ...ferry.Record) {
	t.Helper()
	outs := make([]ferry.Outcome, len(recs))
	for i, r := range recs {
		outs[i] = ferry.Outcome{Seq: r.Seq, Status: ferry.StatusDone}
	}
	e.complete(t, outs...)
}

// fail moves recs to FAILED with error text msg.
func (e *env) fail(t *testing.T, msg string, recs ...ferry.Record) {
	t.Helper()
	outs := make([]ferry.Outcome, len(recs))
	for i, r := range recs {
		outs[i] = ferry.Outcome{Seq: r.Seq, Status: ferry.StatusFailed, Attempts: 1, Error: msg}
	}
	e.complete(t, outs...)
}

// exclude moves WAITING recs to EXCLUDED.
func (e *env) exclude(t *testing.T, recs ...ferry.Record) {
	t.Helper()
	n, err := e.s.Exclude(t.Context(), ferry.Filter{Seqs: seqsOf(recs), Status: ferry.StatusWaiting})
	if err != nil || n != len(recs) {
		t.Fatalf("Exclude of %d WAITING messages: got %d, %v; want %d, nil", len(recs), n, err, len(recs))
	}
}

// msg returns a valid message with id in lane (topic "t").
func msg(id, lane, key string) ferry.Message {
	return ferry.Message{ID: id, Lane: lane, Topic: "t", Key: key, Payload: []byte("payload of " + id)}
}

// seqsOf returns the Seqs of recs.
func seqsOf(recs []ferry.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

// idsOf returns the IDs of recs.
func idsOf(recs []ferry.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// wantIDs checks that recs are exactly the messages ids, in that order.
func wantIDs(t *testing.T, what string, recs []ferry.Record, ids ...string) {
	t.Helper()
	if got := idsOf(recs); !slices.Equal(got, ids) {
		if ids == nil {
			ids = []string{}
		}
		t.Errorf("%s: want messages %v, got %v", what, ids, got)
	}
}

// wantSeqOrder checks that recs are in strictly ascending Seq order.
func wantSeqOrder(t *testing.T, what string, recs []ferry.Record) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Errorf("%s: want Seq ascending, but record %d (%s) has Seq %d after %d (%s)",
				what, i, recs[i].ID, recs[i].Seq, recs[i-1].Seq, recs[i-1].ID)
			return
		}
	}
}

// clockSlack is how far a time the database sets may be from this
// process's clock: both run on one machine, so a few seconds catch time
// zone and unit mistakes without flaking on a slow machine.
const clockSlack = 5 * time.Second

// timePrecision is how closely a stored time must match the time written:
// every database keeps at least milliseconds.
const timePrecision = time.Millisecond

// near checks that got is within slack of want.
func near(t *testing.T, what string, got, want time.Time, slack time.Duration) {
	t.Helper()
	if got.IsZero() {
		t.Errorf("%s: want %s (±%v), got the zero time", what, want.Format(time.RFC3339Nano), slack)
		return
	}
	if d := got.Sub(want); d < -slack || d > slack {
		t.Errorf("%s: want %s (±%v), got %s (off by %v)", what, want.Format(time.RFC3339Nano), slack, got.Format(time.RFC3339Nano), d)
	}
}

// zero checks that tm is the zero time.
func zero(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if !tm.IsZero() {
		t.Errorf("%s: want the zero time (unset), got %s", what, tm.Format(time.RFC3339Nano))
	}
}

// wantStatus checks the status of the record of id.
func (e *env) wantStatus(t *testing.T, what string, id string, want ferry.Status) ferry.Record {
	t.Helper()
	r := e.record(t, id)
	if r.Status != want {
		t.Errorf("%s: want message %s %s, got %s", what, id, want, r.Status)
	}
	return r
}

// bytesDiff describes how got differs from want.
func bytesDiff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return "equal"
	}
	n := min(len(got), len(want))
	for i := range n {
		if got[i] != want[i] {
			return fmt.Sprintf("%d bytes, want %d; first difference at byte %d: 0x%02x, want 0x%02x", len(got), len(want), i, got[i], want[i])
		}
	}
	return fmt.Sprintf("%d bytes, want %d; equal up to byte %d", len(got), len(want), n)
}

// allShards is 0..ferry.Shards-1.
func allShards() []int {
	out := make([]int, ferry.Shards)
	for i := range out {
		out[i] = i
	}
	return out
}

// shortList abbreviates a list of ints for messages.
func shortList(v []int) string {
	if len(v) <= 12 {
		return fmt.Sprint(v)
	}
	s := make([]string, 0, 13)
	for _, x := range v[:12] {
		s = append(s, fmt.Sprint(x))
	}
	return fmt.Sprintf("[%s ...] (%d)", strings.Join(s, " "), len(v))
}
