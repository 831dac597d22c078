// Package sqlite is ferry's embedded store: the outbox in a single SQLite
// file through modernc.org/sqlite, with no server and no cgo.
//
// SQLite lets one transaction write at a time, and a row's id is taken
// inside that transaction, so id order is exactly commit order: per-key
// delivery order on SQLite is commit order without qualification.
//
// SQLite has no notifications across processes, so a relay on SQLite
// polls (every 50 ms by default).
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	"github.com/ferry-dev/ferry/store/sqlstore"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is the SQLite store.
type Store struct {
	*sqlstore.Store
}

// now is the current time in sqlstore.TimeLayout: %f is seconds with
// milliseconds, padded to microseconds.
const now = `strftime('%Y-%m-%d %H:%M:%f000', 'now')`

var dialect = &sqlstore.Dialect{
	Name:             "sqlite",
	Now:              now,
	TextTimes:        true,
	MaxParams:        32766,
	OnConflictIgnore: "ON CONFLICT (message_id) DO NOTHING",
	UpsertNode:       `INSERT INTO {{nodes}} (node, seen_at) VALUES (?, ?) ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at`,
	PauseLane:        `INSERT INTO {{paused}} (lane, paused_at) VALUES (?, {{now}}) ON CONFLICT (lane) DO NOTHING`,
	LockMigrations: func(ctx context.Context, conn *sql.Conn) (func(), error) {
		// BEGIN IMMEDIATE takes the database's write lock; a second
		// process waits for it (busy_timeout) and then finds the schema
		// up to date.
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return nil, err
		}
		return func() { conn.ExecContext(context.Background(), "COMMIT") }, nil
	},
	Migrations: [][]string{{
		// AUTOINCREMENT: ids are never reused, even after the newest rows
		// are deleted, so a relay's position in the table stays valid.
		`CREATE TABLE IF NOT EXISTS {{t}} (
			id           INTEGER PRIMARY KEY AUTOINCREMENT,
			message_id   TEXT    NOT NULL UNIQUE,
			lane         TEXT    NOT NULL DEFAULT 'default',
			topic        TEXT    NOT NULL,
			msg_key      TEXT,
			message_type TEXT,
			headers      TEXT,
			payload      BLOB    NOT NULL,
			shard        INTEGER NOT NULL DEFAULT 0,
			status       TEXT    NOT NULL DEFAULT 'WAITING' CHECK (status IN ('WAITING', 'DONE', 'FAILED', 'EXCLUDED')),
			fail_count   INTEGER NOT NULL DEFAULT 0,
			occurred_at  TEXT    NOT NULL DEFAULT (` + now + `),
			available_at TEXT    NOT NULL DEFAULT (` + now + `),
			processed_at TEXT,
			failed_at    TEXT,
			last_error   TEXT
		)`,
		`CREATE INDEX IF NOT EXISTS {{t}}_waiting ON {{t}} (lane, id) WHERE status = 'WAITING'`,
		`CREATE INDEX IF NOT EXISTS {{t}}_key ON {{t}} (lane, msg_key, id) WHERE status = 'WAITING'`,
		`CREATE INDEX IF NOT EXISTS {{t}}_failed ON {{t}} (lane, msg_key) WHERE status = 'FAILED'`,
		`CREATE INDEX IF NOT EXISTS {{t}}_done ON {{t}} (processed_at) WHERE status = 'DONE'`,
		`CREATE TABLE IF NOT EXISTS {{shards}} (shard INTEGER PRIMARY KEY, owner TEXT, expires_at TEXT)`,
		`CREATE TABLE IF NOT EXISTS {{nodes}} (node TEXT PRIMARY KEY, seen_at TEXT NOT NULL)`,
	}, {
		// Version 2: lanes paused by a person (ferry pause).
		`CREATE TABLE IF NOT EXISTS {{paused}} (lane TEXT PRIMARY KEY, paused_at TEXT NOT NULL)`,
	}},
}

// Open opens (creating if needed) the SQLite database at path, which is a
// file name or a file: URI. It does not create the schema: call Migrate.
func Open(ctx context.Context, path string, opts sqlstore.Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("ferry: sqlite: empty database path; give a file name such as ferry.db")
	}
	// Check the table name before the file is created.
	if err := sqlstore.CheckTable(opts.TableName()); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("ferry: sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(max(opts.MaxConns, 8))
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ferry: sqlite: open %s: %w", path, err)
	}
	s, err := sqlstore.New(db, dialect, opts.TableName())
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{Store: s}, nil
}

// dsn adds the settings ferry relies on: WAL so readers do not block the
// writer, a busy timeout so concurrent writers wait instead of failing,
// and immediate transactions so a writer takes the lock up front.
func dsn(path string) string {
	if !strings.HasPrefix(path, "file:") {
		path = "file:" + path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_txlock", "immediate")
	return path + sep + q.Encode()
}
