// Package postgres is ferry's PostgreSQL store: the shared SQL of
// store/sqlstore through pgx v5's database/sql driver, plus what only
// PostgreSQL offers: LISTEN/NOTIFY wake-ups (Listen), bulk writes of any
// size in one statement (Write), and writes in a pgx transaction, with
// COPY for large ones (WritePgx).
//
// Ordering: a row's id comes from a sequence when it is inserted, not when
// its transaction commits. So per key the relay delivers in commit order
// for transactions that do not overlap, and in insert (id) order for
// overlapping ones. The relay package documents the full reasoning.
//
// Writers in other languages insert rows with plain SQL; a trigger on the
// table notifies listening relays of their lanes at commit, so they are
// woken as quickly as writes through ferry. PostgreSQL serializes the
// commits of transactions that notify, across the server, so when relays
// poll a busy lane every few milliseconds they say so in the table's
// _polled table (AnnouncePolling), and the trigger skips the lane's
// notifications while that holds.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// DefaultMaxConns is the connection pool's size unless
// sqlstore.Options.MaxConns says otherwise: enough for a relay's fetchers
// and completers on a few lanes, small next to PostgreSQL's default of 100
// connections shared by every service.
const DefaultMaxConns = 16

// The optional interfaces a relay looks for.
var (
	_ ferry.Notifier      = (*Store)(nil)
	_ ferry.PollAnnouncer = (*Store)(nil)
	_ ferry.OlderFetcher  = (*Store)(nil)
)

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	*sqlstore.Store
	// cfg is the parsed DSN, kept to open Listen's dedicated connection.
	// It holds the password: never print it.
	cfg *pgx.ConnConfig
	// channel is the LISTEN/NOTIFY channel of the table.
	channel string
	// insert is the bulk INSERT of Write and WritePgx for the table;
	// insertFast is the same without ON CONFLICT, for use in a savepoint.
	insert, insertFast string
	// completeDone and completeDeleted record a batch of deliveries in one
	// statement (see Complete).
	completeDone, completeDeleted string
	// waitingKeys is WaitingKeys' query (see waitingKeysSQL).
	waitingKeys string
}

var (
	_ ferry.Store     = (*Store)(nil)
	_ ferry.Notifier  = (*Store)(nil)
	_ ferry.PgxWriter = (*Store)(nil)
)

// Open connects to the PostgreSQL database at dsn (a postgres:// URL or
// key=value settings, as pgx accepts) and checks that it answers. It does
// not create the schema: call Migrate.
func Open(ctx context.Context, dsn string, opts sqlstore.Options) (*Store, error) {
	table := opts.TableName()
	if err := sqlstore.CheckTable(table); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, redacted(fmt.Errorf("ferry: postgres: parse the DSN: %w", err))
	}
	where := describe(cfg)
	// Plan every statement for its actual arguments. The relay's queries
	// are prepared once per connection and run with ever different key
	// and id lists; after five runs PostgreSQL may switch to a generic
	// plan that ignores them and scans a lane's whole backlog (measured:
	// 0.3 ms becoming 300 ms for the late-commit check; in the flood
	// benchmark, plans made while the table held a few thousand rows,
	// kept once a batch had filled it, made recording outcomes ten times
	// slower and cut the batch's drain from 22k to 1.3k messages/s).
	// Planning each time costs far less: about 0.25 ms per fetch, a third
	// of the database's work for a message read on its own.
	if _, set := cfg.RuntimeParams["plan_cache_mode"]; !set {
		cfg.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	db := stdlib.OpenDB(*cfg)
	n := DefaultMaxConns
	if opts.MaxConns > 0 {
		n = opts.MaxConns
	}
	db.SetMaxOpenConns(n)
	// database/sql keeps 2 idle connections by default, so a busy relay
	// would open and close connections all the time.
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, redacted(fmt.Errorf("ferry: postgres: connect to %s: %w", where, err))
	}
	// Unquoted identifiers fold to lower case, so "Orders" and "orders"
	// are one table; the lock key and the channel must agree with that.
	lower := strings.ToLower(table)
	s, err := sqlstore.New(db, newDialect(lower), table)
	if err != nil {
		db.Close()
		return nil, err
	}
	done, deleted := completeQueries(table)
	return &Store{
		Store:           s,
		cfg:             cfg,
		channel:         lower,
		insert:          s.Q(insertSQL + onConflict),
		insertFast:      s.Q(insertSQL),
		completeDone:    done,
		completeDeleted: deleted,
		waitingKeys:     s.Q(waitingKeysSQL),
	}, nil
}

// describe names the server and database of cfg for error messages,
// without the password.
func describe(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d database %q as %q", cfg.Host, cfg.Port, cfg.Database, cfg.User)
}

// shardExpr computes a row's shard, 0..ferry.Shards-1, in the generated
// column, as ferry.ShardOf does: the low 6 bits of the first byte of the
// MD5 digest of the key, or of the id for unkeyed messages (an empty key,
// which only plain-SQL writers can store, counts as none). MD5 rather
// than hashtextextended because its result is fixed by a standard:
// PostgreSQL does not promise that its internal hash functions stay the
// same across versions and platforms, and a key whose shard moved would
// lose its order. It costs about half a microsecond per row. PostgreSQL
// refuses md5() on a server in FIPS mode.
const shardExpr = `get_byte(decode(md5(COALESCE(NULLIF(msg_key, ''), message_id)), 'hex'), 0) & 63`

// newDialect returns the dialect for the table whose lower-case name is
// table. It is built per store because the migration lock and the
// notification channel are named after the table.
func newDialect(table string) *sqlstore.Dialect {
	return &sqlstore.Dialect{
		Name:     "postgres",
		Numbered: true,
		// now() is the transaction's start time: every row of one Write
		// gets the same available_at, never later than the commit.
		Now:              "now()",
		GeneratedShard:   true,
		MaxParams:        65535,
		OnConflictIgnore: "ON CONFLICT (message_id) DO NOTHING",
		UpsertNode: `INSERT INTO {{nodes}} (node, seen_at) VALUES (?, ?)
			ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at`,
		PauseLane:      `INSERT INTO {{paused}} (lane, paused_at) VALUES (?, {{now}}) ON CONFLICT (lane) DO NOTHING`,
		LockMigrations: migrationLock(table),
		Migrations:     migrations(table),
	}
}

// migrationLock returns the LockMigrations hook: a session advisory lock
// whose key is derived from the table's name, so migrations of different
// ferry tables in one database do not wait for each other.
func migrationLock(table string) func(ctx context.Context, conn *sql.Conn) (func(), error) {
	key := migrationKey(table)
	return func(ctx context.Context, conn *sql.Conn) (func(), error) {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
			return nil, fmt.Errorf("pg_advisory_lock for table %s: %w", table, err)
		}
		return func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
				// The lock belongs to the session: end it rather than return
				// a connection that still holds the lock to the pool.
				conn.Raw(func(any) error { return driver.ErrBadConn })
			}
		}, nil
	}
}

// migrationKey is the advisory lock key of table's migrations.
func migrationKey(table string) int64 {
	h := fnv.New64a()
	h.Write([]byte("ferry migrate " + table))
	return int64(h.Sum64())
}

// migrations returns the schema versions. table is the lower-case table
// name, which is also the notification channel. Every statement is
// idempotent, so a migration interrupted half way can simply run again.
// Statements pass through sqlstore's placeholder rewriting: none may
// contain a question mark.
func migrations(table string) [][]string {
	return [][]string{{
		// GENERATED ALWAYS: ids come only from the sequence, so a plain-SQL
		// writer cannot insert an id below the relay's position.
		//
		// The indexed text columns are names compared for equality, so they
		// use the "C" collation: byte comparison, cheaper than a locale's
		// (the message_id index is probed and extended for every row), and
		// indexes that an operating system upgrade changing the locale's
		// sort order cannot corrupt (glibc 2.28 reordered hyphens, which
		// every UUID has). It only changes ORDER BY on these columns, to
		// byte order.
		`CREATE TABLE IF NOT EXISTS {{t}} (
			id           BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			message_id   TEXT        COLLATE "C" NOT NULL UNIQUE,
			lane         TEXT        COLLATE "C" NOT NULL DEFAULT 'default',
			topic        TEXT        NOT NULL,
			msg_key      TEXT        COLLATE "C",
			message_type TEXT,
			headers      JSONB,
			payload      BYTEA       NOT NULL,
			shard        INTEGER     NOT NULL GENERATED ALWAYS AS (` + shardExpr + `) STORED,
			status       TEXT        NOT NULL DEFAULT 'WAITING' CHECK (status IN ('WAITING', 'DONE', 'FAILED', 'EXCLUDED')),
			fail_count   INTEGER     NOT NULL DEFAULT 0,
			occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
			available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			processed_at TIMESTAMPTZ,
			failed_at    TIMESTAMPTZ,
			last_error   TEXT
		)`,
		`CREATE INDEX IF NOT EXISTS {{t}}_waiting ON {{t}} (lane, id) WHERE status = 'WAITING'`,
		// WaitingKeys looks up a few keys among a lane's whole backlog. Its
		// entries land all over the index, so it is a quarter of a bulk
		// write's cost; unkeyed messages, which WaitingKeys never asks
		// for, stay out of it.
		`CREATE INDEX IF NOT EXISTS {{t}}_key ON {{t}} (lane, msg_key, id) WHERE status = 'WAITING' AND msg_key IS NOT NULL`,
		`CREATE INDEX IF NOT EXISTS {{t}}_failed ON {{t}} (lane, msg_key) WHERE status = 'FAILED'`,
		`CREATE INDEX IF NOT EXISTS {{t}}_done ON {{t}} (processed_at) WHERE status = 'DONE'`,
		`CREATE TABLE IF NOT EXISTS {{shards}} (shard INTEGER PRIMARY KEY, owner TEXT, expires_at TIMESTAMPTZ)`,
		`CREATE TABLE IF NOT EXISTS {{nodes}} (node TEXT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL)`,

		// Wake-ups. One statement-level trigger per INSERT statement, with
		// the inserted rows as a transition table, so a bulk insert costs
		// one notification per distinct lane instead of one trigger call
		// per row. NOTIFY is delivered at commit and dropped on rollback.
		// A lane too long for a notification payload (8000 bytes) is
		// skipped rather than failing the writer's insert; the relay's
		// polling still finds it.
		`CREATE OR REPLACE FUNCTION {{t}}_wake_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM pg_notify('` + table + `', l.lane)
			FROM (SELECT DISTINCT lane FROM ferry_inserted WHERE status = 'WAITING' AND octet_length(lane) < 8000) AS l;
			RETURN NULL;
		END
		$$`,
		`DROP TRIGGER IF EXISTS {{t}}_wake_insert ON {{t}}`,
		`CREATE TRIGGER {{t}}_wake_insert AFTER INSERT ON {{t}}
			REFERENCING NEW TABLE AS ferry_inserted
			FOR EACH STATEMENT EXECUTE FUNCTION {{t}}_wake_insert()`,

		// Rows that become WAITING again (a person retries FAILED messages)
		// wake the relay too. This one is a row-level trigger with a WHEN
		// condition rather than a statement-level one: the relay's own
		// updates (WAITING to DONE, in batches of up to 1000 rows) then cost
		// a comparison per row, where transition tables would copy every
		// updated row twice. PostgreSQL sends one notification per distinct
		// lane and transaction however many rows fire.
		`CREATE OR REPLACE FUNCTION {{t}}_wake_retry() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF octet_length(NEW.lane) < 8000 THEN
				PERFORM pg_notify('` + table + `', NEW.lane);
			END IF;
			RETURN NULL;
		END
		$$`,
		`DROP TRIGGER IF EXISTS {{t}}_wake_retry ON {{t}}`,
		`CREATE TRIGGER {{t}}_wake_retry AFTER UPDATE OF status ON {{t}}
			FOR EACH ROW WHEN (NEW.status = 'WAITING' AND OLD.status <> 'WAITING')
			EXECUTE FUNCTION {{t}}_wake_retry()`,
	}, {
		// Version 2: lanes paused by a person (ferry pause). "C" collation
		// as for the lane column of the outbox.
		`CREATE TABLE IF NOT EXISTS {{paused}} (lane TEXT COLLATE "C" PRIMARY KEY, paused_at TIMESTAMPTZ NOT NULL)`,
	}, {
		// Version 3: a notification names the lowest id the statement
		// wrote to the lane, "<id> <lane>", so a relay that has read past
		// that id knows at once that a transaction committed late (see
		// Listen). Ids only grow within a transaction, so the first
		// statement's notification covers the later statements' rows of
		// the same lane: a transaction that inserts row by row into one
		// lane notifies once. The transaction-local setting remembers
		// the last lane notified (and is undone with a rolled back
		// savepoint, as its notification is). Retried rows keep one
		// notification per lane ("0 <lane>"), which PostgreSQL sends once
		// per transaction.
		`CREATE OR REPLACE FUNCTION {{t}}_wake_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE
			l RECORD;
		BEGIN
			FOR l IN SELECT lane, min(id) AS first_id FROM ferry_inserted
				WHERE status = 'WAITING' AND octet_length(lane) < 7900 GROUP BY lane
			LOOP
				IF current_setting('ferry.woke_` + table + `', true) IS DISTINCT FROM l.lane THEN
					PERFORM pg_notify('` + table + `', l.first_id || ' ' || l.lane);
					PERFORM set_config('ferry.woke_` + table + `', l.lane, true);
				END IF;
			END LOOP;
			RETURN NULL;
		END
		$$`,
		`CREATE OR REPLACE FUNCTION {{t}}_wake_retry() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF octet_length(NEW.lane) < 7900 THEN
				PERFORM pg_notify('` + table + `', '0 ' || NEW.lane);
			END IF;
			RETURN NULL;
		END
		$$`,
	}, {
		// Version 4: no notification while relays poll the lane. NOTIFY
		// serializes committing transactions across the server (see
		// AnnouncePolling), so a relay that sees commits to a lane come
		// thick and fast says in {{t}}_polled that relays read the lane
		// every few milliseconds until a time, and producers' commits to
		// it skip the NOTIFY until then. The row is read with the current
		// time, not the transaction's start, and a stale snapshot can only
		// show an earlier time: a producer errs towards notifying.
		`CREATE TABLE IF NOT EXISTS {{t}}_polled (lane TEXT COLLATE "C" PRIMARY KEY, until TIMESTAMPTZ NOT NULL)`,
		`CREATE OR REPLACE FUNCTION {{t}}_wake_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE
			l RECORD;
		BEGIN
			FOR l IN SELECT lane, min(id) AS first_id FROM ferry_inserted
				WHERE status = 'WAITING' AND octet_length(lane) < 7900 GROUP BY lane
			LOOP
				IF current_setting('ferry.woke_` + table + `', true) IS DISTINCT FROM l.lane
					AND NOT EXISTS (SELECT 1 FROM {{t}}_polled p WHERE p.lane = l.lane AND p.until > clock_timestamp()) THEN
					PERFORM pg_notify('` + table + `', l.first_id || ' ' || l.lane);
					PERFORM set_config('ferry.woke_` + table + `', l.lane, true);
				END IF;
			END LOOP;
			RETURN NULL;
		END
		$$`,
	}}
}

// secrets matches the passwords a DSN or a driver's error can carry: the
// userinfo of a URL and password or sslpassword settings, quoted or not,
// with or without spaces around the equals sign.
var secrets = []*regexp.Regexp{
	regexp.MustCompile(`(?i)(://[^:/@\s]*):[^@\s]*@`),
	regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)`),
}

// redact hides passwords in s.
func redact(s string) string {
	s = secrets[0].ReplaceAllString(s, "${1}:xxxxx@")
	return secrets[1].ReplaceAllString(s, "${1}xxxxx")
}

// redactedError shows a redacted message while keeping the original error
// for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redacted returns err with any password in its message hidden. pgx
// redacts most DSN forms itself, but not "password = x" with spaces.
func redacted(err error) error {
	return &redactedError{msg: redact(err.Error()), err: err}
}
