package mysql

import (
	"bytes"
	"context"
	"crypto/md5"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/store/storetest"
	"github.com/go-sql-driver/mysql"
)

// open opens a store on a fresh table and drops its tables when t ends.
// It does not migrate.
func open(t testing.TB, dsn, table string) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, dsn, sqlstore.Options{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, suffix := range []string{"", "_shards", "_nodes", "_paused", "_schema"} {
			if _, err := s.DB.ExecContext(ctx, "DROP TABLE IF EXISTS "+table+suffix); err != nil {
				t.Errorf("drop %s%s: %v", table, suffix, err)
			}
		}
		s.Close()
	})
	return s
}

// migrated opens and migrates a store on a fresh table.
func migrated(t testing.TB) *Store {
	t.Helper()
	s := open(t, testdb.MySQLDSN(t), testdb.Table(t))
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// write writes msgs in one transaction on db and commits it.
func write(t testing.TB, s *Store, db *sql.DB, msgs ...ferry.Message) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, tx, msgs); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func list(t testing.TB, s *Store) []ferry.Record {
	t.Helper()
	recs, err := s.List(context.Background(), ferry.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func count(t testing.TB, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB.QueryRowContext(context.Background(), s.Q(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func msg(id, key string) ferry.Message {
	return ferry.Message{ID: id, Lane: ferry.DefaultLane, Topic: "orders", Key: key, Payload: []byte("p-" + id)}
}

func TestMigrateTwice(t *testing.T) {
	s := migrated(t)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if n := count(t, s, `SELECT version FROM {{schema}}`); n != 2 {
		t.Errorf("schema version %d, want 2", n)
	}
	if n := count(t, s, `SELECT COUNT(*) FROM {{schema}}`); n != 1 {
		t.Errorf("%d schema rows, want 1", n)
	}
	if n := count(t, s, `SELECT COUNT(*) FROM {{shards}}`); n != ferry.Shards {
		t.Errorf("%d shard rows, want %d", n, ferry.Shards)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	dsn, table := testdb.MySQLDSN(t), testdb.Table(t)
	stores := []*Store{open(t, dsn, table), open(t, dsn, table), open(t, dsn, table)}
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(context.Background()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	s := stores[0]
	if n := count(t, s, `SELECT COUNT(*) FROM {{schema}}`); n != 1 {
		t.Errorf("%d schema rows, want 1", n)
	}
	if n := count(t, s, `SELECT COUNT(*) FROM {{shards}}`); n != ferry.Shards {
		t.Errorf("%d shard rows, want %d", n, ferry.Shards)
	}
}

func TestMigrationLockIsPerTable(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	unlock, err := lockMigrations(ctx, conn, s.Table)
	if err != nil {
		t.Fatal(err)
	}
	// Another table migrates while this one's lock is held.
	migrated(t)
	// This table waits, and gives up when ctx ends.
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	err = s.Migrate(short)
	if err == nil || !strings.Contains(err.Error(), "migration lock") {
		t.Errorf("Migrate while locked: %v; want a migration lock error", err)
	}
	unlock()
	if err := s.Migrate(ctx); err != nil {
		t.Errorf("Migrate after unlock: %v", err)
	}
}

func TestWriteCommitAndRollback(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()

	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, tx, []ferry.Message{msg("rolled-back", "k")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if recs := list(t, s); len(recs) != 0 {
		t.Fatalf("after rollback: %d messages, want 0", len(recs))
	}

	payload := []byte{0, 1, 2, 0xff, '\'', '\\', '"', '\n', 0x1a}
	deliverAt := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	in := ferry.Message{ID: "m1", Lane: "online", Topic: "orders", Key: "order-7", Type: "OrderPlaced",
		Headers: map[string]string{"trace": "abc", "ünï": "cödé"}, Payload: payload, DeliverAt: deliverAt}
	before := time.Now().UTC().Add(-2 * time.Second)
	write(t, s, s.DB, in, msg("m2", ""))
	after := time.Now().UTC().Add(2 * time.Second)

	recs := list(t, s)
	if len(recs) != 2 {
		t.Fatalf("after commit: %d messages, want 2", len(recs))
	}
	r := recs[0]
	if r.ID != in.ID || r.Lane != in.Lane || r.Topic != in.Topic || r.Key != in.Key || r.Type != in.Type {
		t.Errorf("read back %+v, wrote %+v", r.Message, in)
	}
	if !bytes.Equal(r.Payload, payload) {
		t.Errorf("payload %q, want %q", r.Payload, payload)
	}
	if len(r.Headers) != 2 || r.Headers["ünï"] != "cödé" || r.Headers["trace"] != "abc" {
		t.Errorf("headers %v, want %v", r.Headers, in.Headers)
	}
	if !r.AvailableAt.Equal(deliverAt) || r.AvailableAt.Location() != time.UTC {
		t.Errorf("available_at %v, want %v in UTC", r.AvailableAt, deliverAt.UTC())
	}
	if r.OccurredAt.Before(before) || r.OccurredAt.After(after) {
		t.Errorf("occurred_at %v, want between %v and %v", r.OccurredAt, before, after)
	}
	if r.Status != ferry.StatusWaiting || r.Attempts != 0 || !r.ProcessedAt.IsZero() || !r.FailedAt.IsZero() {
		t.Errorf("new message state %+v", r)
	}
	if recs[1].Seq <= r.Seq {
		t.Errorf("seqs %d, %d: want increasing in insert order", r.Seq, recs[1].Seq)
	}
	if recs[1].Key != "" || recs[1].Type != "" || recs[1].Headers != nil {
		t.Errorf("empty key, type and headers read back as %q, %q, %v", recs[1].Key, recs[1].Type, recs[1].Headers)
	}
}

func TestWriteDuplicateIsNoop(t *testing.T) {
	s := migrated(t)
	first := msg("dup", "k")
	write(t, s, s.DB, first)
	again := first
	again.Payload = []byte("second")
	// Again in a later transaction, and twice in one statement.
	write(t, s, s.DB, again, msg("new", "k"), again)
	recs := list(t, s)
	if len(recs) != 2 {
		t.Fatalf("%d messages, want 2", len(recs))
	}
	if string(recs[0].Payload) != string(first.Payload) {
		t.Errorf("duplicate replaced the payload: %q", recs[0].Payload)
	}
}

func TestIDsAndKeysCompareByteExactly(t *testing.T) {
	s := migrated(t)
	// Under utf8mb4_bin "a" and "a " are equal, under the default
	// collation also "A": any of these would drop a message.
	write(t, s, s.DB, msg("a", "k"), msg("A", "K"), msg("a ", "k "), msg("ä", "ä"))
	if n := len(list(t, s)); n != 4 {
		t.Fatalf("%d messages, want 4", n)
	}
	ctx := context.Background()
	recs, err := s.List(ctx, ferry.Filter{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != "a" {
		t.Errorf("List(Key: k) = %v, want only message a", ids(recs))
	}
	recs, err = s.Fetch(ctx, ferry.FetchQuery{Lane: ferry.DefaultLane, SkipKeys: []string{"k"}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(recs), ","); got != "A,a ,ä" {
		t.Errorf("Fetch skipping key k = %s, want A,a ,ä", got)
	}
}

func ids(recs []ferry.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func TestWriteTooLongFails(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	long := msg("long", "")
	long.Topic = strings.Repeat("t", ferry.MaxNameLen+1)
	// A duplicate in the same statement must not hide the error.
	err = s.Write(ctx, tx, []ferry.Message{msg("ok", ""), long, msg("ok", "")})
	if err == nil {
		t.Fatal("writing a 201-character topic succeeded; want an error")
	}
	var myErr *mysql.MySQLError
	if !errors.As(err, &myErr) || myErr.Number != 1406 {
		t.Errorf("error %v; want MySQL error 1406 (data too long)", err)
	}
	for _, want := range []string{s.Table, "topic"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// TestWriteOnForeignConnection writes on a connection configured the way
// an application might have it: another loc, session time zone and a lax
// sql_mode. Times must still land in UTC.
func TestWriteOnForeignConnection(t *testing.T) {
	s := migrated(t)
	cfg, err := mysql.ParseDSN(testdb.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.FixedZone("KST", 9*3600)
	cfg.Params = map[string]string{"time_zone": "'+09:00'", "sql_mode": "''"}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	app := sql.OpenDB(conn)
	defer app.Close()

	deliverAt := time.Now().Add(time.Minute).Truncate(time.Microsecond)
	due := msg("due", "")
	later := msg("later", "")
	later.DeliverAt = deliverAt
	before := time.Now().UTC().Add(-2 * time.Second)
	write(t, s, app, due, later)
	after := time.Now().UTC().Add(2 * time.Second)

	recs := list(t, s)
	if len(recs) != 2 {
		t.Fatalf("%d messages, want 2", len(recs))
	}
	for _, r := range recs {
		if r.OccurredAt.Before(before) || r.OccurredAt.After(after) {
			t.Errorf("%s: occurred_at %v, want between %v and %v", r.ID, r.OccurredAt, before, after)
		}
	}
	if r := recs[0]; r.AvailableAt.Before(before) || r.AvailableAt.After(after) {
		t.Errorf("due: available_at %v, want between %v and %v", r.AvailableAt, before, after)
	}
	if r := recs[1]; !r.AvailableAt.Equal(deliverAt) {
		t.Errorf("later: available_at %v, want %v", r.AvailableAt, deliverAt.UTC())
	}
	got, err := s.Fetch(context.Background(), ferry.FetchQuery{Lane: ferry.DefaultLane, SkipDelayed: true, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "due" {
		t.Errorf("due messages %v, want [due]", ids(got))
	}
}

func TestWriteLargeBatch(t *testing.T) {
	s := migrated(t)
	// 30 MiB in one Write: as one statement, more than MariaDB's default
	// max_allowed_packet (16 MiB) but less than the driver's (64 MiB), so
	// the driver would send it and the server refuse it.
	var msgs []ferry.Message
	for i := range 30 {
		m := msg(fmt.Sprintf("big-%02d", i), "")
		m.Payload = bytes.Repeat([]byte{'a' + byte(i%26)}, 1<<20)
		msgs = append(msgs, m)
	}
	// Two escaped payloads: escaping must not push a statement over.
	for i := range 2 {
		m := msg(fmt.Sprintf("esc-%d", i), "")
		m.Payload = bytes.Repeat([]byte{'\'', 0}, 1<<19)
		msgs = append(msgs, m)
	}
	write(t, s, s.DB, msgs...)
	if n := count(t, s, `SELECT COUNT(*) FROM {{t}}`); n != len(msgs) {
		t.Fatalf("%d messages, want %d", n, len(msgs))
	}
	if n := count(t, s, `SELECT COUNT(*) FROM {{t}} WHERE LENGTH(payload) = ?`, len(msgs[0].Payload)); n != len(msgs) {
		t.Errorf("%d payloads intact, want %d", n, len(msgs))
	}
}

func TestShardIsMD5OfKey(t *testing.T) {
	s := migrated(t)
	keys := []string{"", "order-1", "order-2", "ключ", "🔑", strings.Repeat("k", ferry.MaxKeyLen)}
	var msgs []ferry.Message
	for i, k := range keys {
		msgs = append(msgs, msg(fmt.Sprintf("id-%d", i), k))
	}
	write(t, s, s.DB, msgs...)
	// A writer in another language inserts with plain SQL and gets the
	// same shard; an empty key counts as none.
	if _, err := s.DB.Exec(s.Q(`INSERT INTO {{t}} (message_id, topic, msg_key, payload) VALUES ('plain-sql', 'orders', '', 'x')`)); err != nil {
		t.Fatal(err)
	}
	recs := list(t, s)
	if len(recs) != len(keys)+1 {
		t.Fatalf("%d messages, want %d", len(recs), len(keys)+1)
	}
	for _, r := range recs {
		basis := r.Key
		if basis == "" {
			basis = r.ID
		}
		want := int(md5.Sum([]byte(basis))[0] & 63)
		if r.Shard != want || r.Shard < 0 || r.Shard >= ferry.Shards {
			t.Errorf("message %s key %q: shard %d, want %d", r.ID, r.Key, r.Shard, want)
		}
	}
}

func TestOpenForms(t *testing.T) {
	dsn := testdb.MySQLDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName, RawQuery: "connectionAttributes=program_name%3Aferry%2Ftest&readTimeout=30s"}
	if cfg.User != "" {
		u.User = url.UserPassword(cfg.User, cfg.Passwd)
		if cfg.Passwd == "" {
			u.User = url.User(cfg.User)
		}
	}
	mariadb := u
	mariadb.Scheme = "mariadb"
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	upper := u
	upper.Scheme = "MySQL"
	for _, form := range []string{dsn, dsn + sep + "charset=latin1&parseTime=false&loc=Local", u.String(), mariadb.String(), upper.String()} {
		t.Run(form, func(t *testing.T) {
			s := open(t, form, testdb.Table(t))
			var tz, mode, charset string
			err := s.DB.QueryRow(`SELECT @@session.time_zone, @@session.sql_mode, @@character_set_connection`).Scan(&tz, &mode, &charset)
			if err != nil {
				t.Fatal(err)
			}
			if tz != "+00:00" || !strings.Contains(mode, "STRICT_ALL_TABLES") || charset != "utf8mb4" {
				t.Errorf("session time_zone %q, sql_mode %q, charset %q; want +00:00, strict, utf8mb4", tz, mode, charset)
			}
			var now time.Time // needs parseTime
			if err := s.DB.QueryRow(`SELECT UTC_TIMESTAMP(6)`).Scan(&now); err != nil {
				t.Fatal(err)
			}
			if now.Location() != time.UTC || time.Since(now).Abs() > time.Minute {
				t.Errorf("database clock read as %v", now)
			}
		})
	}
}

func TestParseDSN(t *testing.T) {
	for _, c := range []struct{ in, addr, user, pass, db string }{
		{"mysql://u:p%40ss%2Fw0rd@db.example:3307/app?tls=false", "db.example:3307", "u", "p@ss/w0rd", "app"},
		{"mariadb://u@db.example/app", "db.example:3306", "u", "", "app"},
		{"mysql://u:pw@[::1]:3306/app", "[::1]:3306", "u", "pw", "app"},
		{"u:p@ss@tcp(db.example:3307)/app", "db.example:3307", "u", "p@ss", "app"},
		{"u:x://y@tcp(db.example)/app?parseTime=false", "db.example:3306", "u", "x://y", "app"},
		{"u@unix(/run/mysqld/mysqld.sock)/app", "/run/mysqld/mysqld.sock", "u", "", "app"},
	} {
		cfg, err := parseDSN(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if cfg.Addr != c.addr || cfg.User != c.user || cfg.Passwd != c.pass || cfg.DBName != c.db {
			t.Errorf("%s: addr %q user %q password %q db %q; want %q %q %q %q", c.in, cfg.Addr, cfg.User, cfg.Passwd, cfg.DBName, c.addr, c.user, c.pass, c.db)
		}
		if !cfg.ParseTime || cfg.Loc != time.UTC || !cfg.InterpolateParams {
			t.Errorf("%s: parseTime %v, loc %v, interpolateParams %v; want true, UTC, true", c.in, cfg.ParseTime, cfg.Loc, cfg.InterpolateParams)
		}
	}
}

func TestOpenErrorsHidePassword(t *testing.T) {
	const secret = "Sup3r-s3cret"
	dsn := testdb.MySQLDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	wrong := cfg.Clone()
	wrong.Passwd = secret
	ctx := context.Background()
	for _, c := range []struct{ name, dsn, want string }{
		{"wrong password", wrong.FormatDSN(), "connect to"},
		{"nothing listening", "mysql://u:" + secret + "@127.0.0.1:1/test", "connect to u@tcp(127.0.0.1:1)/test"},
		{"bad URL", "mysql://u:" + secret + "@host:port/test", "parse mysql:// URL"},
		{"bad DSN", "u:" + secret + "@tcp(host/test", "parse DSN"},
		{"no database", "u:" + secret + "@tcp(127.0.0.1:3306)/", "names no database"},
		{"other scheme", "postgres://u:" + secret + "@host/test", "unsupported URL scheme"},
	} {
		s, err := Open(ctx, c.dsn, sqlstore.Options{})
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", c.name)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error reveals the password: %v", c.name, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.name, err, c.want)
		}
	}
}

func TestCleanupDeletesOldestDone(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	write(t, s, s.DB, msg("a", ""), msg("b", ""), msg("c", ""), msg("d", ""))
	recs := list(t, s)
	var outcomes []ferry.Outcome
	for _, r := range recs[:3] {
		outcomes = append(outcomes, ferry.Outcome{Seq: r.Seq, Status: ferry.StatusDone})
	}
	if err := s.Complete(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
	n, err := s.Cleanup(ctx, time.Now().Add(time.Hour), 2)
	if err != nil || n != 2 {
		t.Fatalf("Cleanup = %d, %v; want 2", n, err)
	}
	if got := strings.Join(ids(list(t, s)), ","); got != "c,d" {
		t.Errorf("left %s, want c,d", got)
	}
}

func TestLeaseUpsertsNode(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	for range 2 {
		l, err := s.Lease(ctx, "node-1", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Shards) != ferry.Shards || l.Nodes != 1 {
			t.Fatalf("lease %+v; want all %d shards, 1 node", l, ferry.Shards)
		}
	}
	if n := count(t, s, `SELECT COUNT(*) FROM {{nodes}}`); n != 1 {
		t.Errorf("%d node rows, want 1", n)
	}
}

// BenchmarkWrite10k writes 10,000 small messages in one transaction, on
// the store's own connections (interpolated parameters) and on a plain
// driver connection (server-side prepared statements).
func BenchmarkWrite10k(b *testing.B) {
	const n = 10_000
	s := migrated(b)
	plain, err := sql.Open("mysql", testdb.MySQLDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	payload := bytes.Repeat([]byte("x"), 200)
	for _, c := range []struct {
		name string
		db   *sql.DB
	}{{"interpolated", s.DB}, {"prepared", plain}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			round := 0
			for b.Loop() {
				msgs := make([]ferry.Message, n)
				for i := range msgs {
					msgs[i] = ferry.Message{ID: fmt.Sprintf("%s-%d-%d", c.name, round, i), Lane: "batch", Topic: "orders",
						Key: fmt.Sprintf("k%d", i%500), Headers: map[string]string{"h": "v"}, Payload: payload}
				}
				round++
				tx, err := c.db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Write(ctx, tx, msgs); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

func TestConformance(t *testing.T) {
	dsn := testdb.MySQLDSN(t)
	storetest.Run(t, func(t *testing.T, table string) ferry.Store {
		s, err := Open(t.Context(), dsn, sqlstore.Options{Table: table})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() {
			// Another instance on the same table may have dropped them.
			for _, suffix := range []string{"", "_shards", "_nodes", "_paused", "_schema"} {
				if _, err := s.DB.Exec("DROP TABLE IF EXISTS " + table + suffix); err != nil {
					t.Errorf("drop %s%s: %v", table, suffix, err)
				}
			}
			s.Close()
		})
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		return s
	})
}
