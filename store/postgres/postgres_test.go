package postgres

import (
	"context"
	"crypto/md5"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/store/storetest"
	"github.com/jackc/pgx/v5"
)

// open opens and migrates a store on table and drops the table and its
// companions when t ends.
func open(t testing.TB, dsn, table string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, sqlstore.Options{Table: table})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		drop(t, s)
		s.Close()
	})
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// drop removes what Migrate created. IF EXISTS: another instance on the
// same table may have dropped it already.
func drop(t testing.TB, s *Store) {
	t.Helper()
	for _, stmt := range []string{
		`DROP TABLE IF EXISTS {{t}}, {{shards}}, {{nodes}}, {{paused}}, {{t}}_polled, {{schema}}`,
		`DROP FUNCTION IF EXISTS {{t}}_wake_insert(), {{t}}_wake_retry()`,
	} {
		if _, err := s.DB.ExecContext(context.Background(), s.Q(stmt)); err != nil {
			t.Errorf("drop the tables of %s: %v", s.Table, err)
		}
	}
}

func TestConformance(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	storetest.Run(t, func(t *testing.T, table string) ferry.Store {
		return open(t, dsn, table)
	})
}

// msgs returns n valid messages with ids prefix-0, prefix-1, ... spread
// over 10 keys.
func msgs(prefix string, n int) []ferry.Message {
	out := make([]ferry.Message, n)
	for i := range out {
		out[i] = ferry.Message{
			ID:      fmt.Sprintf("%s-%d", prefix, i),
			Lane:    ferry.DefaultLane,
			Topic:   "orders",
			Key:     fmt.Sprintf("key-%d", i%10),
			Payload: []byte(fmt.Sprintf(`{"n":%d}`, i)),
		}
	}
	return out
}

func ids(recs []ferry.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func list(t *testing.T, s *Store, f ferry.Filter) []ferry.Record {
	t.Helper()
	recs, err := s.List(t.Context(), f)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return recs
}

func count(t *testing.T, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB.QueryRowContext(t.Context(), s.Q(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestMigrate runs Migrate from two stores on one new table at once, a
// few times each, and checks that the schema exists once.
func TestMigrate(t *testing.T) {
	dsn, table := testdb.PostgresDSN(t), testdb.Table(t)
	var stores [2]*Store
	for i := range stores {
		s, err := Open(t.Context(), dsn, sqlstore.Options{Table: table})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	t.Cleanup(func() { drop(t, stores[0]) })
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 3 {
		for _, s := range stores {
			wg.Go(func() { errs <- s.Migrate(t.Context()) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
	}
	s := stores[0]
	if v, want := count(t, s, `SELECT version FROM {{schema}}`), len(migrations(s.Table)); v != want {
		t.Errorf("schema version %d, want %d", v, want)
	}
	if n := count(t, s, `SELECT COUNT(*) FROM {{schema}}`); n != 1 {
		t.Errorf("%d rows in the schema table, want 1", n)
	}
	if n := count(t, s, `SELECT COUNT(*) FROM {{shards}}`); n != ferry.Shards {
		t.Errorf("%d shard rows, want %d", n, ferry.Shards)
	}
	if n := count(t, s, `SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, s.Table); n != 2 {
		t.Errorf("%d triggers on the table, want 2 (insert and retry wake-ups)", n)
	}
	if n := count(t, s, `SELECT COUNT(*) FROM pg_indexes WHERE tablename = $1`, s.Table); n != 6 {
		t.Errorf("%d indexes on the table, want 6 (id, message_id, waiting, key, failed, done)", n)
	}
	// A new instance on a migrated table still works and changes nothing.
	if err := stores[1].Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	// The lock was released on the connection that took it: another
	// session can take it now.
	var free bool
	if err := s.DB.QueryRowContext(t.Context(), `SELECT pg_try_advisory_xact_lock($1)`, migrationKey(s.channel)).Scan(&free); err != nil || !free {
		t.Errorf("the migration lock is still held after Migrate (%v)", err)
	}
}

// TestWriteSQLTx writes through a database/sql transaction: the messages
// exist if and only if it commits, and every field round-trips.
func TestWriteSQLTx(t *testing.T) {
	s := open(t, testdb.PostgresDSN(t), testdb.Table(t))
	due := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
	full := ferry.Message{ID: "full", Lane: "online", Topic: "orders", Key: "k1", Type: "OrderPlaced",
		Headers: map[string]string{"trace": "abc", "quote": `"\`}, Payload: []byte{0, 1, 2, 255}, DeliverAt: due}
	bare := ferry.Message{ID: "bare", Lane: ferry.DefaultLane, Topic: "orders"}

	tx, err := s.DB.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), tx, []ferry.Message{{ID: "rolled-back", Lane: "x", Topic: "t"}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	tx.Rollback()
	tx, err = s.DB.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), tx, []ferry.Message{full, bare}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n := len(list(t, s, ferry.Filter{})); n != 0 {
		t.Errorf("before commit another connection sees %d messages, want 0", n)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	recs := list(t, s, ferry.Filter{})
	if got := ids(recs); !slices.Equal(got, []string{"full", "bare"}) {
		t.Fatalf("stored %v, want [full bare] (the rolled-back write must be absent)", got)
	}
	r := recs[0]
	if r.Lane != "online" || r.Topic != "orders" || r.Key != "k1" || r.Type != "OrderPlaced" ||
		string(r.Payload) != string(full.Payload) || r.Headers["quote"] != `"\` || r.Headers["trace"] != "abc" ||
		!r.AvailableAt.Equal(due) || r.Status != ferry.StatusWaiting {
		t.Errorf("round trip: got %+v, want the fields of %+v", r, full)
	}
	b := recs[1]
	if b.Key != "" || b.Type != "" || b.Headers != nil || b.Payload == nil || len(b.Payload) != 0 {
		t.Errorf("bare message: got key %q type %q headers %v payload %v; want empty, nil headers, empty non-nil payload", b.Key, b.Type, b.Headers, b.Payload)
	}
	if d := time.Since(b.AvailableAt); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("zero DeliverAt: available_at %v, want the database's now", b.AvailableAt)
	}
	if n := count(t, s, `SELECT COUNT(*) FROM {{t}} WHERE message_id = 'bare' AND msg_key IS NULL AND message_type IS NULL AND headers IS NULL`); n != 1 {
		t.Errorf("empty key, type and headers must be stored as NULL")
	}
}

// TestWritePgx writes through a pgx transaction, committed and rolled back.
func TestWritePgx(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	s := open(t, dsn, testdb.Table(t))
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	out := ferry.NewOutbox(s)

	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := out.WritePgx(t.Context(), tx, ferry.Message{ID: "gone", Topic: "t"}); err != nil {
		t.Fatalf("WritePgx: %v", err)
	}
	tx.Rollback(t.Context())

	tx, err = conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := msgs("pgx", 1000)
	want[0].Headers = map[string]string{"h": "v"}
	want[1].DeliverAt = time.Now().Add(time.Hour)
	if err := out.WritePgx(t.Context(), tx, want...); err != nil {
		t.Fatalf("WritePgx: %v", err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs := list(t, s, ferry.Filter{Limit: 2000})
	if len(recs) != len(want) {
		t.Fatalf("stored %d messages, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r.ID != want[i].ID || r.Key != want[i].Key || string(r.Payload) != string(want[i].Payload) {
			t.Fatalf("record %d: %s key %q payload %q; want %s key %q payload %q", i, r.ID, r.Key, r.Payload, want[i].ID, want[i].Key, want[i].Payload)
		}
	}
	if recs[0].Headers["h"] != "v" || recs[1].AvailableAt.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("headers %v, available_at %v: want {h: v} and an hour from now", recs[0].Headers, recs[1].AvailableAt)
	}
}

// TestWriteDuplicates: a message_id already stored, or repeated within
// one write, is skipped without error on both paths, and the first
// message with that id is the one kept.
func TestWriteDuplicates(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	s := open(t, dsn, testdb.Table(t))
	m := func(id, payload string) ferry.Message {
		return ferry.Message{ID: id, Lane: ferry.DefaultLane, Topic: "t", Payload: []byte(payload)}
	}
	tx, _ := s.DB.BeginTx(t.Context(), nil)
	if err := s.Write(t.Context(), tx, []ferry.Message{m("a", "first"), m("b", "first"), m("a", "second")}); err != nil {
		t.Fatalf("Write with a repeated id: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx, _ = s.DB.BeginTx(t.Context(), nil)
	if err := s.Write(t.Context(), tx, []ferry.Message{m("a", "third"), m("c", "first")}); err != nil {
		t.Fatalf("Write of a stored id: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	ptx, _ := conn.Begin(t.Context())
	if err := s.WritePgx(t.Context(), ptx, []ferry.Message{m("b", "pgx"), m("d", "pgx"), m("d", "pgx again")}); err != nil {
		t.Fatalf("WritePgx of stored and repeated ids: %v", err)
	}
	if err := ptx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs := list(t, s, ferry.Filter{})
	var got []string
	for _, r := range recs {
		got = append(got, r.ID+"="+string(r.Payload))
	}
	if want := []string{"a=first", "b=first", "c=first", "d=pgx"}; !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

// TestWriteKeepsSliceOrder: one write's messages get ids in slice order,
// which is what per-key order within a write rests on. Both fast paths
// (a savepointed INSERT, COPY) and the ON CONFLICT path are checked.
func TestWriteKeepsSliceOrder(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	// Ids that do not sort in slice order, so that no index order can
	// produce the right answer by accident.
	shuffled := func(prefix string, n int) []ferry.Message {
		out := msgs(prefix, n)
		for i := range out {
			out[i].ID = fmt.Sprintf("%x-%s-%d", md5.Sum([]byte(fmt.Sprint(prefix, i))), prefix, i)
		}
		return out
	}
	for _, c := range []struct {
		name string
		n    int
		pgx  bool
	}{{"sql/fast", fastMin * 2, false}, {"sql/onconflict", fastMin - 1, false}, {"pgx/copy", fastMin * 2, true}, {"pgx/onconflict", fastMin - 1, true}} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, dsn, testdb.Table(t))
			want := shuffled(c.name, c.n)
			if c.pgx {
				writePgx(t, dsn, s, want)
			} else {
				write(t, s, want...)
			}
			recs := list(t, s, ferry.Filter{Limit: len(want) + 1})
			if len(recs) != len(want) {
				t.Fatalf("stored %d, want %d", len(recs), len(want))
			}
			for i := range recs {
				if recs[i].ID != want[i].ID {
					t.Fatalf("in Seq order, message %d is %s, want %s", i, recs[i].ID, want[i].ID)
				}
			}
		})
	}
}

// TestFastPaths checks that the fast statements work on their own: Write
// and WritePgx fall back silently when they fail, which would hide a bug
// in them as a slowdown.
func TestFastPaths(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	s := open(t, dsn, testdb.Table(t))
	in := msgs("fast", 100)
	in[0].DeliverAt = time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC)
	in[1].Headers = map[string]string{"a": "b"}
	c, err := newColumns(in[:50])
	if err != nil {
		t.Fatal(err)
	}
	tx, _ := s.DB.BeginTx(t.Context(), nil)
	if _, err := tx.ExecContext(t.Context(), s.insertFast, c.arrays()...); err != nil {
		t.Fatalf("the INSERT without ON CONFLICT: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	c, _ = newColumns(in[50:])
	if err := pgx.BeginFunc(t.Context(), conn, func(tx pgx.Tx) error { return s.copy(t.Context(), tx, c, time.Now()) }); err != nil {
		t.Fatalf("COPY: %v", err)
	}
	recs := list(t, s, ferry.Filter{Limit: 1000})
	if len(recs) != 100 || !recs[0].AvailableAt.Equal(in[0].DeliverAt) || recs[1].Headers["a"] != "b" {
		t.Errorf("got %d records, first due %v, second's headers %v", len(recs), recs[0].AvailableAt, recs[1].Headers)
	}
	for _, r := range recs[50:] {
		if d := time.Since(r.AvailableAt); d < -5*time.Second || d > 5*time.Second || r.Key == "" || r.Type != "" || r.Headers != nil {
			t.Fatalf("COPY wrote %+v", r)
		}
	}
}

// writePgx writes msgs with WritePgx in a transaction of its own.
func writePgx(t *testing.T, dsn string, s *Store, msgs []ferry.Message) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(t.Context(), conn, func(tx pgx.Tx) error { return s.WritePgx(t.Context(), tx, msgs) })
	if err != nil {
		t.Fatalf("WritePgx: %v", err)
	}
}

// TestWriteBulkDuplicates: a bulk write with a stored id falls back from
// the fast path and still writes the rest, on both paths, and the
// transaction stays usable.
func TestWriteBulkDuplicates(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	for _, usePgx := range []bool{false, true} {
		t.Run(fmt.Sprint("pgx=", usePgx), func(t *testing.T) {
			s := open(t, dsn, testdb.Table(t))
			first := msgs("dup", 10)
			write(t, s, first...)
			bulk := msgs("bulk", fastMin)
			bulk[fastMin/2] = first[3]
			bulk[fastMin/2].Payload = []byte("changed")
			bulk = append(bulk, bulk[7]) // and a repeat within the batch
			if usePgx {
				writePgx(t, dsn, s, bulk)
			} else {
				write(t, s, bulk...)
			}
			recs := list(t, s, ferry.Filter{Limit: 2 * fastMin})
			if len(recs) != 10+fastMin-1 {
				t.Fatalf("stored %d messages, want %d", len(recs), 10+fastMin-1)
			}
			if r := list(t, s, ferry.Filter{IDs: []string{first[3].ID}}); string(r[0].Payload) != string(first[3].Payload) {
				t.Errorf("the stored message was overwritten: payload %q", r[0].Payload)
			}
			// The savepoint is the caller's transaction's: rolling that back
			// undoes a bulk write too.
			tx, _ := s.DB.BeginTx(t.Context(), nil)
			if err := s.Write(t.Context(), tx, msgs("gone", fastMin)); err != nil {
				t.Fatal(err)
			}
			tx.Rollback()
			if n := len(list(t, s, ferry.Filter{Limit: 3 * fastMin})); n != len(recs) {
				t.Errorf("after a rolled-back bulk write, %d messages, want %d", n, len(recs))
			}
		})
	}
}

// TestWriteLarge writes more than one statement's worth of data: the
// batches go in order in the caller's transaction.
func TestWriteLarge(t *testing.T) {
	s := open(t, testdb.PostgresDSN(t), testdb.Table(t))
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i)
	}
	want := msgs("large", 70) // 70 MB: two statements
	for i := range want {
		want[i].Payload = payload
	}
	if n := len(batches(want, maxBatchRows, maxBatchBytes)); n != 2 {
		t.Fatalf("%d batches, want 2", n)
	}
	tx, _ := s.DB.BeginTx(t.Context(), nil)
	if err := s.Write(t.Context(), tx, want); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var got []string
	var size int64
	rows, err := s.DB.QueryContext(t.Context(), s.Q(`SELECT message_id, length(payload) FROM {{t}} ORDER BY id`))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int64
		rows.Scan(&id, &n)
		got, size = append(got, id), size+n
	}
	rows.Close()
	var wantIDs []string
	for _, m := range want {
		wantIDs = append(wantIDs, m.ID)
	}
	if !slices.Equal(got, wantIDs) || size != 70<<20 {
		t.Errorf("stored %d messages of %d bytes in all, want the %d written, in order, of %d", len(got), size, len(want), 70<<20)
	}
}

func TestBatches(t *testing.T) {
	m := func(size int) ferry.Message { return ferry.Message{Payload: make([]byte, size-64)} }
	in := []ferry.Message{m(100), m(100), m(300), m(100), m(70), m(70)}
	var got []int
	for _, b := range batches(in, 10, 200) {
		got = append(got, len(b))
	}
	if want := []int{2, 1, 2, 1}; !slices.Equal(got, want) {
		t.Errorf("batch sizes %v, want %v", got, want)
	}
	got = nil
	for _, b := range batches(slices.Repeat([]ferry.Message{m(64)}, 7), 3, 200) {
		got = append(got, len(b))
	}
	if want := []int{3, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("batch sizes by count %v, want %v", got, want)
	}
	if b := batches(nil, 10, 200); len(b) != 0 {
		t.Errorf("batches of nothing: %v", b)
	}
}

// TestWriteArrayLiterals sends the array literals that drivers other than
// pgx (lib/pq) get from Value, and checks that tricky values survive.
func TestWriteArrayLiterals(t *testing.T) {
	s := open(t, testdb.PostgresDSN(t), testdb.Table(t))
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	due := time.Date(2031, 5, 6, 7, 8, 9, 987654000, time.UTC)
	want := []ferry.Message{
		{ID: `q"uote\back,comma{brace}`, Lane: "NULL", Topic: " spaced ", Key: "NULL", Type: `'`, Payload: all,
			Headers: map[string]string{`"k"`: `\v{},`}, DeliverAt: due},
		{ID: "empty", Lane: "", Topic: "ünïcödé ✓", Payload: []byte{}},
	}
	c, err := newColumns(want)
	if err != nil {
		t.Fatal(err)
	}
	args := c.arrays()
	for i, a := range args {
		if args[i], err = a.(driver.Valuer).Value(); err != nil {
			t.Fatal(err)
		}
	}
	tx, _ := s.DB.BeginTx(t.Context(), nil)
	if _, err := tx.ExecContext(t.Context(), s.insert, args...); err != nil {
		t.Fatalf("insert with array literals %q: %v", args, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	recs := list(t, s, ferry.Filter{})
	if len(recs) != 2 {
		t.Fatalf("stored %d messages, want 2", len(recs))
	}
	r := recs[0]
	if r.ID != want[0].ID || r.Lane != "NULL" || r.Topic != " spaced " || r.Key != "NULL" || r.Type != `'` ||
		string(r.Payload) != string(all) || r.Headers[`"k"`] != `\v{},` || !r.AvailableAt.Equal(due) {
		t.Errorf("got %+v\nwant %+v", r, want[0])
	}
	if r := recs[1]; r.Lane != "" || r.Topic != "ünïcödé ✓" || r.Payload == nil || len(r.Payload) != 0 || r.Key != "" {
		t.Errorf("got %+v\nwant %+v", r, want[1])
	}
}

// TestShard: the generated shard is in 0..63, the same for every message
// of a key, the id's for unkeyed messages (and for an empty key written in
// plain SQL), and is the first byte of the MD5 digest modulo 64, so other
// programs can compute it.
func TestShard(t *testing.T) {
	s := open(t, testdb.PostgresDSN(t), testdb.Table(t))
	in := msgs("shard", 2000)
	for i := range in[:500] {
		in[i].Key = ""
	}
	tx, _ := s.DB.BeginTx(t.Context(), nil)
	if err := s.Write(t.Context(), tx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(t.Context(), s.Q(`INSERT INTO {{t}} (message_id, topic, msg_key, payload) VALUES ('plain', 't', '', '')`)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	recs := list(t, s, ferry.Filter{Limit: 5000})
	byKey := map[string]int{}
	seen := map[int]bool{}
	for _, r := range recs {
		basis := r.Key
		if basis == "" {
			basis = r.ID
		}
		if want := int(md5.Sum([]byte(basis))[0] & 63); r.Shard != want || r.Shard != ferry.ShardOf(r.Key, r.ID) {
			t.Fatalf("message %s (key %q): shard %d, want md5(%q)[0] & 63 = %d, as ferry.ShardOf", r.ID, r.Key, r.Shard, basis, want)
		}
		if r.Key != "" {
			if sh, ok := byKey[r.Key]; ok && sh != r.Shard {
				t.Fatalf("key %s in shards %d and %d", r.Key, sh, r.Shard)
			}
			byKey[r.Key] = r.Shard
		}
		seen[r.Shard] = true
	}
	if len(seen) != ferry.Shards {
		t.Errorf("500 unkeyed messages use %d shards, want all %d", len(seen), ferry.Shards)
	}
}

// wakeup is one call of Listen's wake.
type wakeup struct {
	lane string
	seq  int64
}

// listener runs Listen on s and sends each wake-up to the returned
// channel, after making sure the LISTEN is in place.
func listener(t *testing.T, s *Store) <-chan wakeup {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	lanes := make(chan wakeup, 1000)
	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx, func(lane string, seq int64) { lanes <- wakeup{lane, seq} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen returned %v after its context ended; want nil", err)
		}
	})
	// Notifications sent before LISTEN runs are lost: write until one
	// arrives.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		write(t, s, ferry.Message{ID: fmt.Sprintf("ready-%d", i), Lane: "ready", Topic: "t"})
		select {
		case w := <-lanes:
			if w.lane != "ready" {
				t.Fatalf("woken for lane %q, want ready", w.lane)
			}
			for len(lanes) > 0 {
				<-lanes
			}
			return lanes
		case err := <-done:
			t.Fatalf("Listen: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notification within 10s of writes")
		}
	}
}

func write(t *testing.T, s *Store, msgs ...ferry.Message) {
	t.Helper()
	tx, err := s.DB.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), tx, msgs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// drain returns the wake-ups within wait, sorted by lane.
func drain(lanes <-chan wakeup, wait time.Duration) []wakeup {
	var got []wakeup
	timeout := time.After(wait)
	for {
		select {
		case w := <-lanes:
			got = append(got, w)
		case <-timeout:
			slices.SortStableFunc(got, func(a, b wakeup) int { return strings.Compare(a.lane, b.lane) })
			return got
		}
	}
}

// lanesOf returns the lanes of ws, in order.
func lanesOf(ws []wakeup) []string {
	var lanes []string
	for _, w := range ws {
		lanes = append(lanes, w.lane)
	}
	return lanes
}

// TestListen: a committed write wakes each of its lanes once, a rolled
// back one wakes nobody, and plain-SQL inserts and retries wake too.
func TestListen(t *testing.T) {
	s := open(t, testdb.PostgresDSN(t), testdb.Table(t))
	lanes := listener(t, s)

	var batch []ferry.Message
	for i := range 300 {
		batch = append(batch, ferry.Message{ID: fmt.Sprint("b", i), Lane: []string{"a", "b", "c"}[i%3], Topic: "t"})
	}
	write(t, s, batch...)
	got := drain(lanes, 300*time.Millisecond)
	if !slices.Equal(lanesOf(got), []string{"a", "b", "c"}) {
		t.Errorf("a write to lanes a, b, c woke %v; want each once", got)
	}
	// Each wake-up names the lowest id written to its lane: the relay
	// compares it with its position to find late commits.
	for _, w := range got {
		recs := list(t, s, ferry.Filter{Lane: w.lane, Limit: 1000})
		first := recs[0].Seq
		for _, r := range recs {
			first = min(first, r.Seq)
		}
		if w.seq != first {
			t.Errorf("the wake-up of lane %s names id %d; want the lowest id written there, %d", w.lane, w.seq, first)
		}
	}

	tx, _ := s.DB.BeginTx(t.Context(), nil)
	if err := s.Write(t.Context(), tx, []ferry.Message{{ID: "rb", Lane: "rolled", Topic: "t"}}); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	if _, err := s.DB.ExecContext(t.Context(), s.Q(`INSERT INTO {{t}} (message_id, lane, topic, payload) VALUES ('plain', 'plain', 't', '')`)); err != nil {
		t.Fatal(err)
	}
	plain := list(t, s, ferry.Filter{Lane: "plain", Limit: 1})
	if got := drain(lanes, 300*time.Millisecond); len(plain) != 1 || !slices.Equal(got, []wakeup{{"plain", plain[0].Seq}}) {
		t.Errorf("a rolled-back write and a plain-SQL insert woke %v; want [{plain %d}]", got, plain[0].Seq)
	}

	// A transaction that writes row by row notifies each lane once, with
	// its first id; a savepoint rolled back takes its notification along.
	tx, _ = s.DB.BeginTx(t.Context(), nil)
	for i, lane := range []string{"rows", "rows", "rows", "other", "rows"} {
		if i == 0 {
			if _, err := tx.ExecContext(t.Context(), "SAVEPOINT first"); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Write(t.Context(), tx, []ferry.Message{{ID: fmt.Sprint("row-", i), Lane: lane, Topic: "t"}}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := tx.ExecContext(t.Context(), "ROLLBACK TO SAVEPOINT first"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows := list(t, s, ferry.Filter{Lane: "rows", Limit: 10})
	other := list(t, s, ferry.Filter{Lane: "other", Limit: 10})
	got = drain(lanes, 300*time.Millisecond)
	if len(rows) != 3 || len(other) != 1 {
		t.Fatalf("committed %d rows of lane rows and %d of other; want 3 and 1", len(rows), len(other))
	}
	want := []wakeup{{"other", other[0].Seq}, {"rows", rows[0].Seq}, {"rows", rows[2].Seq}}
	if !slices.Equal(got, want) {
		t.Errorf("row-by-row writes to lanes rows, rows, rows, other, rows (the first rolled back to a savepoint) woke %v; want %v: once per run of a lane, naming its first committed id", got, want)
	}

	// The relay's own updates wake nobody; a retry of FAILED messages does.
	recs := list(t, s, ferry.Filter{Lane: "a", Limit: 1000})
	var outs []ferry.Outcome
	for i, r := range recs {
		st := ferry.StatusDone
		if i%2 == 0 {
			st = ferry.StatusFailed
		}
		outs = append(outs, ferry.Outcome{Seq: r.Seq, Status: st, Error: "x"})
	}
	if err := s.Complete(t.Context(), outs); err != nil {
		t.Fatal(err)
	}
	if got := drain(lanes, 300*time.Millisecond); len(got) != 0 {
		t.Errorf("Complete woke %v; want nothing", got)
	}
	if n, err := s.Retry(t.Context(), ferry.Filter{Lane: "a"}); err != nil || n != 50 {
		t.Fatalf("Retry: %d, %v; want 50", n, err)
	}
	if got := drain(lanes, 300*time.Millisecond); !slices.Equal(got, []wakeup{{"a", 0}}) {
		t.Errorf("Retry of 50 messages of lane a woke %v; want [{a 0}]: once, naming no id", got)
	}
}

// TestListenLatency measures how soon after a commit an idle listener is
// woken. It reports the numbers; timing is not asserted (see
// BenchmarkNotify for the benchmark).
func TestListenLatency(t *testing.T) {
	s := open(t, testdb.PostgresDSN(t), testdb.Table(t))
	lanes := listener(t, s)
	var lat []time.Duration
	for i := range 20 {
		time.Sleep(20 * time.Millisecond) // let the listener go idle
		tx, _ := s.DB.BeginTx(t.Context(), nil)
		if err := s.Write(t.Context(), tx, []ferry.Message{{ID: fmt.Sprint("lat", i), Lane: "l", Topic: "t"}}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		select {
		case <-lanes:
			lat = append(lat, time.Since(committed))
		case <-time.After(10 * time.Second):
			t.Fatalf("write %d: no wake-up within 10s of commit", i)
		}
	}
	slices.Sort(lat)
	t.Logf("commit to wake-up over %d writes: min %v, median %v, max %v", len(lat), lat[0], lat[len(lat)/2], lat[len(lat)-1])
}

// TestListenConnectError: Listen reports a connection it cannot open.
func TestListenConnectError(t *testing.T) {
	s := open(t, testdb.PostgresDSN(t), testdb.Table(t))
	s.cfg = s.cfg.Copy()
	s.cfg.Port = 1
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := s.Listen(ctx, func(string, int64) {})
	if err == nil || !strings.Contains(err.Error(), "listen for "+s.Table) {
		t.Errorf("Listen on a closed port: %v; want an error naming the table", err)
	}
}

// TestOpenErrors: errors name what failed and never show the password.
func TestOpenErrors(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:s3cret@127.0.0.1:1/db?connect_timeout=5",
		"host=127.0.0.1 port=1 user=u password=s3cret connect_timeout=5",
		"host=127.0.0.1 password = s3cret port=notaport",
		"postgres://u:s3cret@127.0.0.1:notaport/db",
		"postgres://u@127.0.0.1/db?password=s3cret&sslmode=bogus",
	} {
		_, err := Open(t.Context(), dsn, sqlstore.Options{})
		if err == nil {
			t.Errorf("Open(%s): no error", redact(dsn))
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open's error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), "ferry: postgres:") {
			t.Errorf("Open's error does not say what failed: %v", err)
		}
		t.Log(err)
	}
	if _, err := Open(t.Context(), testdb.DefaultPostgres, sqlstore.Options{Table: "bad-name"}); err == nil {
		t.Errorf("Open with table bad-name: no error")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@h/db":                   "postgres://u:xxxxx@h/db",
		"postgresql://u@h/db?password=pw&x=1":    "postgresql://u@h/db?password=xxxxx&x=1",
		"host=h password=pw user=u":              "host=h password=xxxxx user=u",
		"host=h password = 'p w\\'x' user=u":     "host=h password = xxxxx user=u",
		"host=h sslpassword=pw":                  "host=h sslpassword=xxxxx",
		"cannot parse `host=h PASSWORD=pw`: bad": "cannot parse `host=h PASSWORD=xxxxx bad", // over-masks rather than guess where a password ends
		"postgres://u@h/db":                      "postgres://u@h/db",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
	err := redacted(fmt.Errorf("wrap: %w", context.Canceled))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("redacted error does not unwrap")
	}
}

// TestAnnouncePolling: while relays announce that they poll a lane,
// commits to it notify nobody, commits to other lanes still do, the
// announcement with tell reaches the listeners as seq -1, and once it
// lapses the lane's commits notify again.
func TestAnnouncePolling(t *testing.T) {
	s := open(t, testdb.PostgresDSN(t), testdb.Table(t))
	lanes := listener(t, s)
	ctx := t.Context()

	if left, err := s.Polled(ctx, "busy"); err != nil || left != 0 {
		t.Fatalf("Polled before any announcement: %v, %v; want 0", left, err)
	}
	left, err := s.AnnouncePolling(ctx, "busy", time.Second, true)
	if err != nil || left <= 0 || left > time.Second {
		t.Fatalf("AnnouncePolling for 1s: holds %v, %v; want up to 1s", left, err)
	}
	if got := drain(lanes, 300*time.Millisecond); !slices.Equal(got, []wakeup{{"busy", -1}}) {
		t.Errorf("the announcement with tell woke %v; want [{busy -1}]", got)
	}
	// A shorter announcement does not cut the longer one short; renewing
	// without tell notifies nobody.
	if left, err := s.AnnouncePolling(ctx, "busy", time.Millisecond, false); err != nil || left < 500*time.Millisecond {
		t.Errorf("a 1ms announcement after a 1s one holds %v, %v; want the rest of the 1s", left, err)
	}
	write(t, s, ferry.Message{ID: "quiet", Lane: "busy", Topic: "t"}, ferry.Message{ID: "loud", Lane: "other", Topic: "t"})
	other := list(t, s, ferry.Filter{Lane: "other", Limit: 1})
	if got := drain(lanes, 300*time.Millisecond); !slices.Equal(got, []wakeup{{"other", other[0].Seq}}) {
		t.Errorf("a commit to the polled lane busy and to lane other woke %v; want only other", got)
	}
	stats, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	polled := map[string]bool{}
	for _, st := range stats {
		polled[st.Lane] = st.Polled
	}
	if !polled["busy"] || polled["other"] {
		t.Errorf("Stats while lane busy is polled: %+v; want busy marked Polled, other not", stats)
	}

	for {
		left, err := s.Polled(ctx, "busy")
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		time.Sleep(left)
	}
	write(t, s, ferry.Message{ID: "loud-again", Lane: "busy", Topic: "t"})
	again := list(t, s, ferry.Filter{Lane: "busy", Limit: 10})
	if got := drain(lanes, 300*time.Millisecond); len(again) != 2 || !slices.Equal(got, []wakeup{{"busy", again[1].Seq}}) {
		t.Errorf("after the announcement lapsed, a commit to lane busy woke %v; want it named", got)
	}

	if _, err := s.AnnouncePolling(ctx, strings.Repeat("l", 8000), time.Second, true); err == nil {
		t.Error("an announcement for a lane too long to be notified: no error")
	}

	// On a schema before version 4, Stats has nothing polled to mark.
	if _, err := s.DB.ExecContext(ctx, s.Q(`DROP TABLE {{t}}_polled`)); err != nil {
		t.Fatal(err)
	}
	if stats, err := s.Stats(ctx); err != nil || len(stats) == 0 {
		t.Errorf("Stats without the _polled table: %+v, %v; want the lanes", stats, err)
	}
}
