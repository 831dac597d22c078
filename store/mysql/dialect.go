package mysql

import (
	"context"
	"database/sql"

	"github.com/ferry-dev/ferry/store/sqlstore"
)

// now is UTC_TIMESTAMP(6) rather than NOW(6): NOW follows the session's
// time_zone, and Write runs on the caller's connection, whose time zone
// ferry does not set. DATETIME keeps no zone, so every time in the table
// must be computed in UTC by every writer.
const now = `UTC_TIMESTAMP(6)`

// shardExpr computes a row's shard, 0..63 (ferry.Shards - 1): the low six
// bits of the first byte of the MD5 digest of the key, or of the
// message_id for an unkeyed message; an empty key, which only plain-SQL
// writers can store, counts as none, as in ferry.ShardOf. It is the
// PostgreSQL store's function, so a key has one shard on every database,
// and MD5 is fixed by a standard, so the shard cannot move across server
// versions (Go: md5.Sum(k)[0] & 63). The columns it reads are bytes, so
// the digest is of the key's UTF-8 bytes whatever the connection's
// character set.
const shardExpr = `ASCII(UNHEX(MD5(COALESCE(NULLIF(msg_key, ''), message_id)))) & 63`

// dialect is the template every Store copies; see dialectFor.
var dialect = sqlstore.Dialect{
	Name:           "mysql",
	Now:            now,
	GeneratedShard: true,
	// Times travel as UTC text, not time.Time: the driver writes a
	// time.Time in its connection's loc, and Write uses the caller's
	// connection, which may say loc=Local. The columns are still DATETIME.
	TextTimes: true,
	// The limit of a prepared statement, which the driver falls back to
	// when an interpolated statement would be too large.
	MaxParams: 65535,
	// A duplicate message_id updates nothing, so the row stays as first
	// written; any other error (a value too long in strict mode, a CHECK)
	// still fails the statement, which INSERT IGNORE would turn into a
	// warning and a truncated or skipped row.
	OnConflictIgnore: `ON DUPLICATE KEY UPDATE id = id`,
	// VALUES() is deprecated in MySQL 8.0.20 but is the one spelling both
	// MariaDB and MySQL accept.
	UpsertNode: `INSERT INTO {{nodes}} (node, seen_at) VALUES (?, ?) ON DUPLICATE KEY UPDATE seen_at = VALUES(seen_at)`,
	// The update changes nothing, so the first pause's time stays.
	PauseLane: `INSERT INTO {{paused}} (lane, paused_at) VALUES (?, {{now}}) ON DUPLICATE KEY UPDATE lane = lane`,
	// MariaDB refuses LIMIT in an IN subquery, but DELETE takes ORDER BY
	// and LIMIT itself. id makes the order total, so the statement deletes
	// the same rows on a replica (statement-based binlog).
	CleanupSQL: `DELETE FROM {{t}} WHERE status = 'DONE' AND processed_at < ? ORDER BY processed_at, id LIMIT ?`,
	Migrations: [][]string{{
		// One CREATE TABLE with its indexes, so that IF NOT EXISTS makes
		// the whole step idempotent on MySQL too, which has no CREATE
		// INDEX IF NOT EXISTS.
		//
		// message_id and msg_key are VARBINARY so they compare byte for
		// byte as in Go. Every utf8mb4 collation but the NO PAD ones
		// (MariaDB-only) ignores trailing spaces, and the default ones
		// also case, so "a" and "a " would be one message_id and the
		// second message silently dropped as a duplicate. The limits are
		// bytes, as ferry's (MaxIDLen, MaxKeyLen) are. The other text
		// columns use utf8mb4_bin so that lanes and topics are
		// case-sensitive, as they are in Go.
		//
		// shard is computed by the database, so writers in other
		// languages need not know ferry's hashing; see shardExpr. STORED,
		// because the relay filters on it in every fetch and a key must
		// never change shard. MariaDB allows no NOT NULL on a generated
		// column; the value is never NULL because message_id is not.
		//
		// Times default to UTC_TIMESTAMP(6), not CURRENT_TIMESTAMP, for
		// the reason given at now.
		`CREATE TABLE IF NOT EXISTS {{t}} (
			id           BIGINT        NOT NULL AUTO_INCREMENT,
			message_id   VARBINARY(200) NOT NULL,
			lane         VARCHAR(200)  NOT NULL DEFAULT 'default',
			topic        VARCHAR(200)  NOT NULL,
			msg_key      VARBINARY(500) NULL,
			message_type VARCHAR(200)  NULL,
			headers      JSON          NULL,
			payload      LONGBLOB      NOT NULL,
			shard        INT AS (` + shardExpr + `) STORED,
			status       VARCHAR(10)   NOT NULL DEFAULT 'WAITING',
			fail_count   INT           NOT NULL DEFAULT 0,
			occurred_at  DATETIME(6)   NOT NULL DEFAULT (` + now + `),
			available_at DATETIME(6)   NOT NULL DEFAULT (` + now + `),
			processed_at DATETIME(6)   NULL,
			failed_at    DATETIME(6)   NULL,
			last_error   TEXT          NULL,
			PRIMARY KEY (id),
			UNIQUE KEY ux_message_id (message_id),
			KEY ix_fetch (lane, status, id),
			KEY ix_cleanup (status, processed_at),
			KEY ix_held (lane, status, msg_key),
			CHECK (status IN ('WAITING', 'DONE', 'FAILED', 'EXCLUDED'))
		) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS {{shards}} (
			shard      INT          NOT NULL PRIMARY KEY,
			owner      VARCHAR(200) NULL,
			expires_at DATETIME(6)  NULL
		) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS {{nodes}} (
			node    VARCHAR(200) NOT NULL PRIMARY KEY,
			seen_at DATETIME(6)  NOT NULL
		) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin`,
	}, {
		// Version 2: lanes paused by a person (ferry pause). The lane is
		// the outbox's lane column, case-sensitive as it is.
		`CREATE TABLE IF NOT EXISTS {{paused}} (
			lane      VARCHAR(200) NOT NULL PRIMARY KEY,
			paused_at DATETIME(6)  NOT NULL
		) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin`,
	}},
}

// dialectFor returns the dialect for a store of table: the template with
// a migration lock named after the table, so that stores of different
// tables migrate independently.
func dialectFor(table string) *sqlstore.Dialect {
	d := dialect
	d.LockMigrations = func(ctx context.Context, conn *sql.Conn) (func(), error) {
		return lockMigrations(ctx, conn, table)
	}
	return &d
}
