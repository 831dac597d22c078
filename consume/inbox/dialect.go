package inbox

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/go-sql-driver/mysql"
)

// dialect holds one database's statements for one inbox table.
type dialect struct {
	name string
	// create creates the table, in a transaction; index then creates the
	// index, if the table's statement did not.
	create []string
	index  string
	// probe selects every column and no row, to check an existing table.
	probe string
	// insert records (consumer, message_id). It affects no row, or fails
	// with an error duplicate recognizes, if the record exists.
	insert    string
	duplicate func(error) bool
	// seen selects a row for (consumer, message_id).
	seen string
	// cleanup deletes at most a given number of rows older than the
	// retention; cleanupArgs returns its arguments.
	cleanup     string
	cleanupArgs func(retention time.Duration, limit int) []any
}

// sqliteNow is the current UTC time in sqlstore.TimeLayout, as the SQLite
// store writes times: fixed-width text, so text order is time order.
const sqliteNow = `strftime('%Y-%m-%d %H:%M:%f000', 'now')`

// newDialect returns the statements of the named database for table,
// which sqlstore.CheckTable has accepted.
func newDialect(name, table string) (*dialect, error) {
	r := strings.NewReplacer("{{t}}", table)
	d := &dialect{
		name:  name,
		probe: r.Replace(`SELECT consumer, message_id, processed_at FROM {{t}} WHERE 1 = 0`),
	}
	switch name {
	case "postgres":
		// The key of a transaction-level advisory lock: PostgreSQL's
		// CREATE TABLE IF NOT EXISTS is not safe against itself (two
		// sessions can both find no table and one then fails on the
		// catalog's unique index), so migrations of one table take turns.
		// Unquoted names fold to lower case, and so does the key.
		h := fnv.New64a()
		h.Write([]byte("ferry inbox migrate " + strings.ToLower(table)))
		d.create = []string{
			fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, int64(h.Sum64())),
			// COLLATE "C": byte comparison, as in Go, and an index no
			// change of the operating system's locale can corrupt.
			r.Replace(`CREATE TABLE IF NOT EXISTS {{t}} (
				consumer     TEXT        COLLATE "C" NOT NULL,
				message_id   TEXT        COLLATE "C" NOT NULL,
				processed_at TIMESTAMPTZ NOT NULL,
				PRIMARY KEY (consumer, message_id)
			)`),
		}
		d.index = r.Replace(`CREATE INDEX IF NOT EXISTS {{t}}_processed_at ON {{t}} (processed_at)`)
		// A second inserter of the same key waits for the first
		// transaction; if it commits, DO NOTHING affects no row.
		d.insert = r.Replace(`INSERT INTO {{t}} (consumer, message_id, processed_at) VALUES ($1, $2, now())
			ON CONFLICT (consumer, message_id) DO NOTHING`)
		d.seen = r.Replace(`SELECT 1 FROM {{t}} WHERE consumer = $1 AND message_id = $2`)
		d.cleanup = r.Replace(`DELETE FROM {{t}} WHERE (consumer, message_id) IN (
			SELECT consumer, message_id FROM {{t}}
			WHERE processed_at < now() - $1::bigint * interval '1 microsecond'
			LIMIT $2)`)
		d.cleanupArgs = func(retention time.Duration, limit int) []any {
			return []any{retention.Microseconds(), limit}
		}
	case "mysql":
		// VARBINARY, so ids compare byte for byte as in Go: the default
		// collations ignore case and trailing spaces, which would make
		// distinct ids duplicates and drop messages. DATETIME(6) holds
		// UTC, computed by UTC_TIMESTAMP whatever the session's time zone.
		// The index is in the CREATE TABLE because MySQL has no CREATE
		// INDEX IF NOT EXISTS.
		d.create = []string{
			r.Replace(`CREATE TABLE IF NOT EXISTS {{t}} (
				consumer     VARBINARY(` + fmt.Sprint(MaxIDLen) + `) NOT NULL,
				message_id   VARBINARY(` + fmt.Sprint(MaxIDLen) + `) NOT NULL,
				processed_at DATETIME(6) NOT NULL,
				PRIMARY KEY (consumer, message_id),
				KEY ix_processed_at (processed_at)
			) ENGINE = InnoDB`),
		}
		// A plain INSERT and its duplicate-key error rather than
		// ON DUPLICATE KEY UPDATE and a count of affected rows: with the
		// driver's clientFoundRows setting, which the caller's DSN may
		// turn on, a duplicate counts as one row. INSERT IGNORE would turn
		// other errors into warnings.
		d.insert = r.Replace(`INSERT INTO {{t}} (consumer, message_id, processed_at) VALUES (?, ?, UTC_TIMESTAMP(6))`)
		d.duplicate = func(err error) bool {
			const erDupEntry = 1062
			var e *mysql.MySQLError
			return errors.As(err, &e) && e.Number == erDupEntry
		}
		d.seen = r.Replace(`SELECT 1 FROM {{t}} WHERE consumer = ? AND message_id = ?`)
		// MariaDB refuses LIMIT in an IN subquery, but DELETE takes ORDER
		// BY and LIMIT itself. The order follows the index and is total
		// (the primary key breaks ties), so a replica deletes the same
		// rows.
		d.cleanup = r.Replace(`DELETE FROM {{t}} WHERE processed_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND
			ORDER BY processed_at, consumer, message_id LIMIT ?`)
		d.cleanupArgs = func(retention time.Duration, limit int) []any {
			return []any{retention.Microseconds(), limit}
		}
	case "sqlite":
		d.create = []string{
			r.Replace(`CREATE TABLE IF NOT EXISTS {{t}} (
				consumer     TEXT NOT NULL,
				message_id   TEXT NOT NULL,
				processed_at TEXT NOT NULL,
				PRIMARY KEY (consumer, message_id)
			)`),
		}
		d.index = r.Replace(`CREATE INDEX IF NOT EXISTS {{t}}_processed_at ON {{t}} (processed_at)`)
		d.insert = r.Replace(`INSERT INTO {{t}} (consumer, message_id, processed_at) VALUES (?, ?, ` + sqliteNow + `)
			ON CONFLICT (consumer, message_id) DO NOTHING`)
		d.seen = r.Replace(`SELECT 1 FROM {{t}} WHERE consumer = ? AND message_id = ?`)
		d.cleanup = r.Replace(`DELETE FROM {{t}} WHERE rowid IN (
			SELECT rowid FROM {{t}} WHERE processed_at < ? LIMIT ?)`)
		// SQLite runs in this process, so Go's clock is the database's.
		d.cleanupArgs = func(retention time.Duration, limit int) []any {
			return []any{time.Now().UTC().Add(-retention).Format(sqlstore.TimeLayout), limit}
		}
	default:
		return nil, fmt.Errorf("inbox: unknown dialect %q: use \"postgres\", \"mysql\" (also for MariaDB) or \"sqlite\", as ferry.Store.Dialect names them", name)
	}
	return d, nil
}
