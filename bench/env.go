package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// testbed is a fresh outbox table for one run: created on open, dropped by
// close, so runs never see each other's rows and leave nothing behind.
type testbed struct {
	store ferry.Store
	// relay is the store the relay uses: on a database server a store of
	// its own, so that it has its own connections, as a relay beside
	// other services has, and the benchmark's producers cannot take
	// them all; on SQLite, store.
	relay   ferry.Store
	outbox  *ferry.Outbox
	db      *sql.DB // the store's handle, for transactions and the bench's own queries
	table   string
	dialect string // "sqlite", "postgres" or "mysql"
	url     string // as given, for messages (see store.Describe)
	tmpDir  string // removed by close, if set
	// writeMu makes the benchmark's own writers take turns on SQLite; see
	// write.
	writeMu *sync.Mutex
}

// sqlHandle is implemented by ferry's SQL stores (they embed
// sqlstore.Store).
type sqlHandle interface{ SQLDB() *sql.DB }

// openTestbed opens the database url names, creates a fresh outbox table
// named prefix + a random suffix, and returns it. If url is empty, it uses
// a SQLite file in a new temporary directory that close removes.
func openTestbed(ctx context.Context, url, prefix string) (*testbed, error) {
	tb := &testbed{table: prefix + randomSuffix()}
	if strings.TrimSpace(url) == "" {
		dir, err := os.MkdirTemp("", "ferry-"+strings.TrimSuffix(prefix, "_")+"-")
		if err != nil {
			return nil, fmt.Errorf("create a temporary directory for the SQLite database: %w", err)
		}
		tb.tmpDir = dir
		url = "sqlite:" + filepath.Join(dir, "outbox.db")
	}
	tb.url = url
	st, err := store.Open(ctx, url, sqlstore.Options{Table: tb.table})
	if err != nil {
		tb.removeTmp()
		return nil, fmt.Errorf("open the database %s: %w", store.Describe(url), err)
	}
	h, ok := st.(sqlHandle)
	if !ok {
		st.Close()
		tb.removeTmp()
		return nil, fmt.Errorf("the %s store has no SQL handle; the benchmarks need one of ferry's SQL stores", st.Dialect())
	}
	tb.store, tb.db, tb.dialect = st, h.SQLDB(), st.Dialect()
	tb.outbox = ferry.NewOutbox(st)
	if tb.dialect == "sqlite" {
		tb.writeMu = &sync.Mutex{}
	}
	if err := st.Migrate(ctx); err != nil {
		tb.close()
		return nil, fmt.Errorf("create the benchmark's table %s in %s: %w", tb.table, store.Describe(url), err)
	}
	tb.relay = st
	if tb.dialect != "sqlite" {
		if tb.relay, err = store.Open(ctx, url, sqlstore.Options{Table: tb.table}); err != nil {
			tb.relay = st
			tb.close()
			return nil, fmt.Errorf("open the database %s for the relay: %w", store.Describe(url), err)
		}
	}
	return tb, nil
}

// randomSuffix is 12 lower-case hex digits: table names stay valid and
// distinct on every database.
func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// where names the database for messages, without a password.
func (tb *testbed) where() string {
	return fmt.Sprintf("%s, table %s", store.Describe(tb.url), tb.table)
}

// close drops the table and the tables and functions that come with it,
// closes the store and removes the temporary directory, if any. It works
// after ctx of the run is done.
func (tb *testbed) close() error {
	defer tb.removeTmp()
	if tb.tmpDir != "" {
		return tb.store.Close() // the directory goes, and the tables with it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, t := range []string{tb.table, tb.table + "_shards", tb.table + "_nodes", tb.table + "_paused", tb.table + "_polled", tb.table + "_schema",
		tb.table + "_results", tb.table + "_errors"} { // the last two: jobs benchmark
		if _, err := tb.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
			errs = append(errs, err)
		}
	}
	if tb.dialect == "postgres" {
		// The wake-up triggers' functions outlive their table.
		if _, err := tb.db.ExecContext(ctx, fmt.Sprintf("DROP FUNCTION IF EXISTS %[1]s_wake_insert(), %[1]s_wake_retry()", tb.table)); err != nil {
			errs = append(errs, err)
		}
	}
	if tb.relay != nil && tb.relay != tb.store {
		errs = append(errs, tb.relay.Close())
	}
	errs = append(errs, tb.store.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("drop the benchmark's table %s (drop it by hand): %w", tb.table, err)
	}
	return nil
}

func (tb *testbed) removeTmp() {
	if tb.tmpDir != "" {
		os.RemoveAll(tb.tmpDir)
	}
}

// ph returns the n-th placeholder (from 1) in the database's syntax.
func (tb *testbed) ph(n int) string {
	if tb.dialect == "postgres" {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// write writes msgs in one transaction through the Outbox, as a producer
// would, and returns when the commit returned.
//
// SQLite lets one transaction write at a time, and a writer that finds the
// database locked sleeps and tries again (the busy timeout), so a batch
// job that commits and begins again at once keeps the lock nearly all the
// time and starves the other writers. On SQLite, therefore, the
// benchmark's writers take turns through a mutex in the process, as an
// application on SQLite would serialize its writers; a Go mutex hands
// over in arrival order once writers queue. The relay's own writes do not
// take part.
func (tb *testbed) write(ctx context.Context, msgs []ferry.Message) (committed time.Time, err error) {
	if tb.writeMu != nil {
		tb.writeMu.Lock()
		defer tb.writeMu.Unlock()
	}
	tx, err := tb.db.BeginTx(ctx, nil)
	if err != nil {
		return time.Time{}, fmt.Errorf("begin a transaction: %w", err)
	}
	if err := tb.outbox.Write(ctx, tx, msgs...); err != nil {
		tx.Rollback()
		return time.Time{}, err
	}
	if err := tx.Commit(); err != nil {
		return time.Time{}, fmt.Errorf("commit %d messages: %w", len(msgs), err)
	}
	return time.Now(), nil
}

// waiting returns the WAITING messages per lane.
func (tb *testbed) waiting(ctx context.Context) (map[string]int, error) {
	rows, err := tb.db.QueryContext(ctx, "SELECT lane, COUNT(*) FROM "+tb.table+" WHERE status = 'WAITING' GROUP BY lane")
	if err != nil {
		return nil, fmt.Errorf("count WAITING messages: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			lane string
			n    int
		)
		if err := rows.Scan(&lane, &n); err != nil {
			return nil, fmt.Errorf("count WAITING messages: %w", err)
		}
		out[lane] = n
	}
	return out, rows.Err()
}

// anyWaiting reports whether a message is WAITING, cheaply (the partial
// index on WAITING rows answers it).
func (tb *testbed) anyWaiting(ctx context.Context) (bool, error) {
	var one int
	err := tb.db.QueryRowContext(ctx, "SELECT 1 FROM "+tb.table+" WHERE status = 'WAITING' LIMIT 1").Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look for WAITING messages: %w", err)
	}
	return true, nil
}

// generator makes messages shaped like a producer's.
type generator struct {
	lane, topic, typ string
	lanes            []string // if set, the i-th message goes to lanes[i%len(lanes)] instead of lane
	keyPrefix        string
	keys             int // 0: unkeyed
	payload          []byte
}

// payloadOf returns a JSON payload of about size bytes.
func payloadOf(size int) []byte {
	const head, tail = `{"data":"`, `"}`
	n := max(0, size-len(head)-len(tail))
	return []byte(head + strings.Repeat("x", n) + tail)
}

// message returns the i-th message of the generator, with a new id.
func (g *generator) message(i int) ferry.Message {
	m := ferry.Message{ID: ferry.NewID(), Lane: g.lane, Topic: g.topic, Type: g.typ, Payload: g.payload}
	if len(g.lanes) > 0 {
		m.Lane = g.lanes[i%len(g.lanes)]
	}
	if g.keys > 0 {
		m.Key = g.keyPrefix + strconv.Itoa(i%g.keys)
	}
	return m
}

// messages returns n messages numbered from first.
func (g *generator) messages(first, n int) []ferry.Message {
	out := make([]ferry.Message, n)
	for i := range out {
		out[i] = g.message(first + i)
	}
	return out
}

// QuietLogger returns the logger the benchmarks give the relay unless
// told otherwise: warnings and errors only, as text to w (os.Stderr if w
// is nil), so that the benchmark's own output stays readable.
func QuietLogger(w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// progress prints a progress line to w, if w is set.
func progress(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
