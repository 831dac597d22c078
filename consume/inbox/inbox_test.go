package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
)

// env is one test database.
type env struct {
	dialect string
	db      *sql.DB
}

// dialects are the databases every test runs on.
var dialects = []string{"postgres", "mysql", "sqlite"}

// databases runs f on each database, in parallel.
func databases(t *testing.T, f func(t *testing.T, e env)) {
	t.Helper()
	for _, name := range dialects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, open(t, name, ""))
		})
	}
}

// open connects to the test database of dialect. PostgreSQL and MariaDB
// are opened with plain sql.Open, as a consumer service that does not use
// ferry's stores would; params are added to the MariaDB DSN. SQLite is
// opened through ferry's store for its busy timeout.
func open(t *testing.T, dialect, params string) env {
	t.Helper()
	var (
		db  *sql.DB
		err error
	)
	switch dialect {
	case "postgres":
		db, err = sql.Open("pgx", testdb.PostgresDSN(t))
	case "mysql":
		db, err = sql.Open("mysql", testdb.MySQLDSN(t)+params)
	case "sqlite":
		var st *sqlite.Store
		st, err = sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "inbox.db"), sqlstore.Options{})
		if err == nil {
			db = st.DB
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(12)
	t.Cleanup(func() { db.Close() })
	return env{dialect: dialect, db: db}
}

// q rewrites ? placeholders for e's database.
func (e env) q(query string) string {
	if e.dialect != "postgres" {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// table returns a fresh table name that is dropped when the test ends.
func (e env) table(t *testing.T) string {
	name := testdb.Table(t)
	t.Cleanup(func() { e.db.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

// newInbox returns a migrated inbox in a fresh table.
func (e env) newInbox(t *testing.T, opts Options) *Inbox {
	t.Helper()
	opts.Table = e.table(t)
	i, err := New(e.db, e.dialect, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := i.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return i
}

// effects is a business table that handlers write to in their
// transaction, one row per run, with no unique key: a message processed
// twice shows as two rows.
type effects struct {
	e     env
	table string
	calls atomic.Int64
}

func (e env) newEffects(t *testing.T) *effects {
	t.Helper()
	fx := &effects{e: e, table: e.table(t)}
	if _, err := e.db.ExecContext(t.Context(), "CREATE TABLE "+fx.table+" (consumer VARCHAR(255) NOT NULL, message_id VARCHAR(255) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return fx
}

// write records the effect of processing m in tx.
func (fx *effects) write(ctx context.Context, tx *sql.Tx, consumer string, m *consume.Message) error {
	fx.calls.Add(1)
	_, err := tx.ExecContext(ctx, fx.e.q("INSERT INTO "+fx.table+" (consumer, message_id) VALUES (?, ?)"), consumer, m.ID)
	return err
}

// handler returns a TxHandler for consumer that writes the effect.
func (fx *effects) handler(consumer string) TxHandler {
	return func(ctx context.Context, tx *sql.Tx, m *consume.Message) error {
		return fx.write(ctx, tx, consumer, m)
	}
}

// count returns the committed effects of consumer.
func (fx *effects) count(t *testing.T, consumer string) int {
	t.Helper()
	var n int
	if err := fx.e.db.QueryRowContext(t.Context(), fx.e.q("SELECT COUNT(*) FROM "+fx.table+" WHERE consumer = ?"), consumer).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func msg(id string) *consume.Message {
	return &consume.Message{Message: transport.Message{ID: id, Topic: "orders", Type: "OrderPlaced"}, Partition: -1, Offset: -1, Attempt: 1}
}

func seen(t *testing.T, i *Inbox, consumer, id string) bool {
	t.Helper()
	ok, err := i.Seen(t.Context(), consumer, id)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestRedeliveryProcessedOnce(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{})
		fx := e.newEffects(t)
		h := i.Handler("billing", fx.handler("billing"))
		for n := range 3 {
			if err := h.Handle(t.Context(), msg("m-1")); err != nil {
				t.Fatalf("delivery %d: %v", n+1, err)
			}
		}
		if got := fx.count(t, "billing"); got != 1 {
			t.Errorf("3 deliveries left %d effects, want 1", got)
		}
		if got := fx.calls.Load(); got != 1 {
			t.Errorf("handler ran %d times, want 1", got)
		}
		if !seen(t, i, "billing", "m-1") {
			t.Error("Seen(m-1) = false after processing it")
		}
		if seen(t, i, "billing", "m-2") {
			t.Error("Seen(m-2) = true for a message never delivered")
		}
	})
}

// A DSN with clientFoundRows=true makes MariaDB count a duplicate key
// that ON DUPLICATE KEY UPDATE leaves alone as one affected row; the inbox
// must not rely on the count there.
func TestMySQLClientFoundRows(t *testing.T) {
	t.Parallel()
	e := open(t, "mysql", "?clientFoundRows=true")
	i := e.newInbox(t, Options{})
	fx := e.newEffects(t)
	h := i.Handler("billing", fx.handler("billing"))
	for range 2 {
		if err := h.Handle(t.Context(), msg("m-1")); err != nil {
			t.Fatal(err)
		}
	}
	if got := fx.count(t, "billing"); got != 1 {
		t.Errorf("2 deliveries left %d effects, want 1", got)
	}
}

func TestHandlerErrorRollsBack(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{})
		fx := e.newEffects(t)
		errDown := errors.New("payment service down")
		fail := true
		h := i.Handler("billing", func(ctx context.Context, tx *sql.Tx, m *consume.Message) error {
			if err := fx.write(ctx, tx, "billing", m); err != nil {
				return err
			}
			if fail {
				return errDown
			}
			return nil
		})
		if err := h.Handle(t.Context(), msg("m-1")); !errors.Is(err, errDown) {
			t.Fatalf("failing handler: got %v, want its error", err)
		}
		if got := fx.count(t, "billing"); got != 0 {
			t.Errorf("the failed attempt left %d effects, want 0", got)
		}
		if seen(t, i, "billing", "m-1") {
			t.Error("the failed attempt left the message recorded as processed")
		}
		fail = false
		for range 2 {
			if err := h.Handle(t.Context(), msg("m-1")); err != nil {
				t.Fatalf("retry: %v", err)
			}
		}
		if got := fx.count(t, "billing"); got != 1 {
			t.Errorf("after a failure, a retry and a redelivery: %d effects, want 1", got)
		}
		if got := fx.calls.Load(); got != 2 {
			t.Errorf("handler ran %d times, want 2 (the failure and the retry)", got)
		}
	})
}

func TestHandlerPanicRollsBack(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{})
		fx := e.newEffects(t)
		h := i.Handler("billing", func(ctx context.Context, tx *sql.Tx, m *consume.Message) error {
			if err := fx.write(ctx, tx, "billing", m); err != nil {
				return err
			}
			panic("boom")
		})
		func() {
			defer func() { recover() }()
			h.Handle(t.Context(), msg("m-1"))
		}()
		if got := fx.count(t, "billing"); got != 0 {
			t.Errorf("a panicking handler left %d effects, want 0", got)
		}
		if seen(t, i, "billing", "m-1") {
			t.Error("a panicking handler left the message recorded as processed")
		}
	})
}

// concurrently delivers m from n goroutines at once, each retrying up to
// 20 times until its delivery returns nil, and returns the errors left.
func concurrently(t *testing.T, h consume.Handler, id string, n int) []error {
	t.Helper()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for g := range n {
		wg.Go(func() {
			<-start
			for range 20 {
				if errs[g] = h.Handle(t.Context(), msg(id)); errs[g] == nil {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{})
		fx := e.newEffects(t)
		h := i.Handler("billing", func(ctx context.Context, tx *sql.Tx, m *consume.Message) error {
			// Hold the transaction so that the others find the record
			// uncommitted and must wait for it.
			time.Sleep(200 * time.Millisecond)
			return fx.write(ctx, tx, "billing", m)
		})
		var failed atomic.Int64
		for _, err := range concurrently(t, counting(h, &failed), "m-1", 8) {
			if err != nil {
				t.Errorf("a duplicate failed: %v", err)
			}
		}
		if n := failed.Load(); n != 0 {
			t.Errorf("%d deliveries failed before succeeding; duplicates should wait and be skipped", n)
		}
		if got := fx.count(t, "billing"); got != 1 {
			t.Errorf("8 concurrent deliveries left %d effects, want 1", got)
		}
		if got := fx.calls.Load(); got != 1 {
			t.Errorf("handler ran %d times, want 1", got)
		}
	})
}

// counting counts the failed deliveries of h in failed.
func counting(h consume.Handler, failed *atomic.Int64) consume.Handler {
	return consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		err := h.Handle(ctx, m)
		if err != nil {
			failed.Add(1)
		}
		return err
	})
}

// When the first of concurrent deliveries fails, one of the waiting ones
// takes over; a retry of any others (MariaDB may end some in a deadlock)
// finds it processed.
func TestConcurrentDuplicatesFirstFails(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{})
		fx := e.newEffects(t)
		errFirst := errors.New("first attempt fails")
		h := i.Handler("billing", func(ctx context.Context, tx *sql.Tx, m *consume.Message) error {
			if err := fx.write(ctx, tx, "billing", m); err != nil {
				return err
			}
			if fx.calls.Load() == 1 {
				time.Sleep(200 * time.Millisecond)
				return errFirst
			}
			return nil
		})
		for _, err := range concurrently(t, h, "m-1", 8) {
			if err != nil {
				t.Errorf("a delivery failed 20 times: %v", err)
			}
		}
		if got := fx.count(t, "billing"); got != 1 {
			t.Errorf("%d effects, want 1", got)
		}
		if got := fx.calls.Load(); got != 2 {
			t.Errorf("handler ran %d times, want 2 (the failure and one success)", got)
		}
	})
}

func TestConsumersScopeIDs(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{})
		fx := e.newEffects(t)
		billing := i.Handler("billing", fx.handler("billing"))
		shipping := i.Handler("shipping", fx.handler("shipping"))
		for range 2 {
			for _, h := range []consume.Handler{billing, shipping} {
				if err := h.Handle(t.Context(), msg("m-1")); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, c := range []string{"billing", "shipping"} {
			if got := fx.count(t, c); got != 1 {
				t.Errorf("consumer %s: %d effects, want 1", c, got)
			}
		}
	})
}

// backdate makes the record of id in i's table look processed ago.
func (e env) backdate(t *testing.T, i *Inbox, id string, ago time.Duration) {
	t.Helper()
	var query string
	args := []any{id}
	switch e.dialect {
	case "postgres":
		query = "UPDATE " + i.table + " SET processed_at = processed_at - $2::bigint * interval '1 second' WHERE message_id = $1"
		args = append(args, int64(ago.Seconds()))
	case "mysql":
		query = "UPDATE " + i.table + " SET processed_at = processed_at - INTERVAL ? SECOND WHERE message_id = ?"
		args = []any{int64(ago.Seconds()), id}
	case "sqlite":
		query = "UPDATE " + i.table + " SET processed_at = ? WHERE message_id = ?"
		args = []any{time.Now().UTC().Add(-ago).Format(sqlstore.TimeLayout), id}
	}
	res, err := e.db.ExecContext(t.Context(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("backdate %s: %d rows, want 1", id, n)
	}
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{Retention: time.Hour})
		i.batch = 2 // several statements for the 3 expired rows
		fx := e.newEffects(t)
		h := i.Handler("billing", fx.handler("billing"))
		for _, id := range []string{"old-1", "old-2", "old-3", "recent", "new"} {
			if err := h.Handle(t.Context(), msg(id)); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range []string{"old-1", "old-2", "old-3"} {
			e.backdate(t, i, id, 2*time.Hour)
		}
		e.backdate(t, i, "recent", 50*time.Minute)
		n, err := i.Cleanup(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Errorf("Cleanup deleted %d records, want 3", n)
		}
		for id, want := range map[string]bool{"old-1": false, "old-2": false, "old-3": false, "recent": true, "new": true} {
			if got := seen(t, i, "billing", id); got != want {
				t.Errorf("after Cleanup, Seen(%s) = %v, want %v", id, got, want)
			}
		}
		if n, err := i.Cleanup(t.Context()); err != nil || n != 0 {
			t.Errorf("second Cleanup: %d, %v; want 0, nil", n, err)
		}
		// Past the retention a redelivery is processed again, as
		// documented.
		if err := h.Handle(t.Context(), msg("old-1")); err != nil {
			t.Fatal(err)
		}
		if got := fx.count(t, "billing"); got != 6 {
			t.Errorf("%d effects, want 6 (5 messages, one redelivered after its record expired)", got)
		}
	})
}

func TestRun(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{Retention: time.Hour})
		i.every = 10 * time.Millisecond
		fx := e.newEffects(t)
		if err := i.Handler("billing", fx.handler("billing")).Handle(t.Context(), msg("m-1")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- i.Run(ctx) }()
		e.backdate(t, i, "m-1", 2*time.Hour)
		deadline := time.Now().Add(5 * time.Second)
		for seen(t, i, "billing", "m-1") {
			if time.Now().After(deadline) {
				t.Fatal("Run did not delete an expired record within 5s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after its context ended, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{}) // migrated once
		if err := i.Migrate(t.Context()); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		// Several processes starting at once on a new table.
		j, err := New(e.db, e.dialect, Options{Table: e.table(t)})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for n := range errs {
			wg.Go(func() { errs[n] = j.Migrate(t.Context()) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Errorf("concurrent Migrate: %v", err)
			}
		}
		fx := e.newEffects(t)
		if err := j.Handler("billing", fx.handler("billing")).Handle(t.Context(), msg("m-1")); err != nil {
			t.Fatal(err)
		}
		if !seen(t, j, "billing", "m-1") {
			t.Error("message not recorded after concurrent migrations")
		}
	})
}

func TestMigrateOtherTable(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		table := e.table(t)
		if _, err := e.db.ExecContext(t.Context(), "CREATE TABLE "+table+" (id INTEGER NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		i, err := New(e.db, e.dialect, Options{Table: table})
		if err != nil {
			t.Fatal(err)
		}
		err = i.Migrate(t.Context())
		if err == nil || !strings.Contains(err.Error(), "choose another Options.Table") {
			t.Errorf("Migrate on an unrelated table of the same name: got %v, want an error saying to choose another table", err)
		}
	})
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "unused.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		name    string
		db      *sql.DB
		dialect string
		opts    Options
		want    string
	}{
		{"space in table", db, "sqlite", Options{Table: "my inbox"}, `table name "my inbox" is not a plain SQL identifier`},
		{"injection", db, "postgres", Options{Table: "t; DROP TABLE x"}, "use letters, digits and underscores"},
		{"too long", db, "mysql", Options{Table: strings.Repeat("t", 49)}, "at most 48 characters"},
		{"unknown dialect", db, "oracle", Options{}, `unknown dialect "oracle": use "postgres", "mysql" (also for MariaDB) or "sqlite"`},
		{"driver name", db, "pgx", Options{}, `unknown dialect "pgx"`},
		{"empty dialect", db, "", Options{}, `unknown dialect ""`},
		{"negative retention", db, "sqlite", Options{Retention: -time.Hour}, "negative Options.Retention"},
		{"nil db", nil, "sqlite", Options{}, "nil *sql.DB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, err := New(tc.db, tc.dialect, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: got %v, %v; want an error containing %q", i, err, tc.want)
			}
		})
	}
	i, err := New(db, "sqlite", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if i.Table() != DefaultTable || i.retention != DefaultRetention || i.every != time.Hour {
		t.Errorf("defaults: table %s, retention %v, every %v", i.Table(), i.retention, i.every)
	}
	i, err = New(db, "sqlite", Options{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if i.every != time.Minute {
		t.Errorf("cleanup every %v with a retention of 1h, want 1m", i.every)
	}
}

func TestBadMessageID(t *testing.T) {
	t.Parallel()
	// The ids are refused before the database is used.
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "unused.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	i, err := New(db, "sqlite", Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := i.Handler("billing", func(context.Context, *sql.Tx, *consume.Message) error {
		t.Error("handler called for a message the inbox cannot record")
		return nil
	})
	for id, want := range map[string]string{
		"":                       "has no id",
		strings.Repeat("x", 256): "longer than 255 bytes",
		"bad\xffutf8":            "not valid UTF-8",
		"nul\x00byte":            "NUL",
	} {
		err := h.Handle(t.Context(), msg(id))
		if !consume.IsPermanent(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("id %q: got %v, want a permanent error containing %q", id, err, want)
		}
	}
	if err := h.Handle(t.Context(), msg(strings.Repeat("x", 255))); consume.IsPermanent(err) {
		t.Errorf("id of 255 bytes refused: %v", err)
	}
}

func TestLongIDs(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, e env) {
		i := e.newInbox(t, Options{})
		fx := e.newEffects(t)
		consumer := strings.Repeat("c", MaxIDLen)
		h := i.Handler(consumer, fx.handler("c"))
		// Ids that differ only in their last byte, in case, or in
		// trailing space are different messages.
		long := strings.Repeat("é", MaxIDLen/2)
		ids := []string{long + "a", long[:len(long)-2] + "éb", "Order-1", "order-1", "order-1 ", "order-1  "}
		for _, id := range ids {
			for range 2 {
				if err := h.Handle(t.Context(), msg(id)); err != nil {
					t.Fatalf("id %q: %v", id, err)
				}
			}
		}
		if got := fx.count(t, "c"); got != len(ids) {
			t.Errorf("%d distinct ids, each delivered twice: %d effects, want %d", len(ids), got, len(ids))
		}
	})
}

func TestHandlerPanicsOnBadConsumer(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "unused.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	i, err := New(db, "sqlite", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, consumer := range []string{"", strings.Repeat("c", MaxIDLen+1)} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "consumer name") {
					t.Errorf("Handler(%q): recovered %v, want a panic about the consumer name", consumer, r)
				}
			}()
			i.Handler(consumer, func(context.Context, *sql.Tx, *consume.Message) error { return nil })
		}()
	}
}
