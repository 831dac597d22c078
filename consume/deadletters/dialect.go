package deadletters

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/store/sqlstore"
)

// columns are the table's columns in the order List scans them.
const columns = `seq, consumer, message_id, source, topic, msg_key, message_type, headers, payload,
	occurred_at, reason, attempts, dead_at, status, replayed_at, replay_id`

// dialect holds one database's statements for one dead-letter table.
type dialect struct {
	name string
	// create creates the table and its indexes, in a transaction.
	create []string
	// probe selects every column and no row, to check an existing table.
	probe string
	// insert stores a dead letter, or adds to the DEAD letter of the same
	// consumer and message id. Its arguments are consumer, message_id,
	// source, topic, msg_key, message_type, headers, payload, occurred_at,
	// reason and attempts.
	insert string
	// now is the SQL expression of the database's current time in the
	// representation of the time columns.
	now string
	// forUpdate ends a SELECT whose rows the transaction then changes.
	forUpdate string
	// numbered placeholders ($1) instead of ?.
	numbered bool
	// textTimes: times travel as UTC text in sqlstore.TimeLayout.
	textTimes bool
}

// newDialect returns the statements of the named database for table,
// which sqlstore.CheckTable has accepted.
func newDialect(name, table string) (*dialect, error) {
	r := strings.NewReplacer("{{t}}", table)
	d := &dialect{
		name:  name,
		probe: r.Replace(`SELECT ` + columns + ` FROM {{t}} WHERE 1 = 0`),
	}
	insertInto := r.Replace(`INSERT INTO {{t}} (consumer, message_id, source, topic, msg_key, message_type, headers, payload,
		occurred_at, reason, attempts, dead_at, status)`)
	switch name {
	case "postgres":
		// CREATE TABLE IF NOT EXISTS is not safe against itself on
		// PostgreSQL (two sessions can both find no table and one then
		// fails on the catalog's unique index), so migrations of one table
		// take turns on a transaction-level advisory lock. Unquoted names
		// fold to lower case, and so does the key.
		h := fnv.New64a()
		h.Write([]byte("ferry dead letters migrate " + strings.ToLower(table)))
		d.create = []string{
			fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, int64(h.Sum64())),
			// COLLATE "C": byte comparison, as in Go, and indexes no
			// change of the operating system's locale can corrupt.
			// headers is TEXT, not JSONB, which refuses \u0000 and would
			// refuse a message the consumer accepted.
			r.Replace(`CREATE TABLE IF NOT EXISTS {{t}} (
				seq          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				consumer     TEXT        COLLATE "C" NOT NULL,
				message_id   TEXT        COLLATE "C" NOT NULL,
				source       TEXT        COLLATE "C" NOT NULL,
				topic        TEXT        COLLATE "C" NOT NULL,
				msg_key      TEXT        COLLATE "C" NOT NULL,
				message_type TEXT        COLLATE "C" NOT NULL,
				headers      TEXT        NOT NULL,
				payload      BYTEA       NOT NULL,
				occurred_at  TIMESTAMPTZ,
				reason       TEXT        NOT NULL,
				attempts     INTEGER     NOT NULL,
				dead_at      TIMESTAMPTZ NOT NULL,
				status       TEXT        NOT NULL CHECK (status IN ('DEAD', 'REPLAYED', 'DISCARDED')),
				replayed_at  TIMESTAMPTZ,
				replay_id    TEXT
			)`),
			r.Replace(`CREATE UNIQUE INDEX IF NOT EXISTS {{t}}_dead ON {{t}} (consumer, message_id) WHERE status = 'DEAD' AND message_id <> ''`),
			r.Replace(`CREATE INDEX IF NOT EXISTS {{t}}_status ON {{t}} (status, seq)`),
		}
		d.now = `now()`
		d.numbered = true
		d.forUpdate = ` FOR UPDATE`
		d.insert = insertInto + ` VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now(), 'DEAD')
			ON CONFLICT (consumer, message_id) WHERE status = 'DEAD' AND message_id <> ''
			DO UPDATE SET reason = EXCLUDED.reason, attempts = ` + table + `.attempts + EXCLUDED.attempts, dead_at = EXCLUDED.dead_at`
	case "mysql":
		// Binary types throughout, so that values are stored byte for
		// byte whatever the connection's character set, and compare as
		// in Go (the default collations ignore case and trailing spaces).
		// MySQL has no partial index: dead_unique is 1 for a DEAD letter
		// with an id and NULL otherwise, and a unique key ignores NULLs,
		// so it allows one DEAD letter per consumer and message id and
		// any number of settled ones. DATETIME(6) holds UTC. The indexes
		// are in the CREATE TABLE because MySQL has no CREATE INDEX IF
		// NOT EXISTS.
		d.create = []string{
			r.Replace(`CREATE TABLE IF NOT EXISTS {{t}} (
				seq          BIGINT          NOT NULL AUTO_INCREMENT PRIMARY KEY,
				consumer     VARBINARY(` + strconv.Itoa(MaxFieldLen) + `) NOT NULL,
				message_id   VARBINARY(` + strconv.Itoa(MaxFieldLen) + `) NOT NULL,
				source       VARBINARY(` + strconv.Itoa(MaxFieldLen) + `) NOT NULL,
				topic        VARBINARY(` + strconv.Itoa(MaxFieldLen) + `) NOT NULL,
				msg_key      VARBINARY(` + strconv.Itoa(MaxFieldLen) + `) NOT NULL,
				message_type VARBINARY(` + strconv.Itoa(MaxFieldLen) + `) NOT NULL,
				headers      MEDIUMBLOB      NOT NULL,
				payload      LONGBLOB        NOT NULL,
				occurred_at  DATETIME(6),
				reason       BLOB            NOT NULL,
				attempts     INT             NOT NULL,
				dead_at      DATETIME(6)     NOT NULL,
				status       VARBINARY(16)   NOT NULL CHECK (status IN ('DEAD', 'REPLAYED', 'DISCARDED')),
				replayed_at  DATETIME(6),
				replay_id    VARBINARY(` + strconv.Itoa(MaxFieldLen) + `),
				dead_unique  TINYINT AS (CASE WHEN status = 'DEAD' AND message_id <> '' THEN 1 END) STORED,
				UNIQUE KEY ux_dead (consumer, message_id, dead_unique),
				KEY ix_status (status, seq)
			) ENGINE = InnoDB`),
		}
		d.now = `UTC_TIMESTAMP(6)`
		d.textTimes = true
		d.forUpdate = ` FOR UPDATE`
		// VALUES() is deprecated in MySQL 8.0.20 but is the one spelling
		// both MariaDB and MySQL accept.
		d.insert = insertInto + ` VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6), 'DEAD')
			ON DUPLICATE KEY UPDATE reason = VALUES(reason), attempts = attempts + VALUES(attempts), dead_at = VALUES(dead_at)`
	case "sqlite":
		// AUTOINCREMENT: a seq is never used twice, even after the last
		// rows are deleted, so the replay ids derived from it stay unique.
		d.create = []string{
			r.Replace(`CREATE TABLE IF NOT EXISTS {{t}} (
				seq          INTEGER PRIMARY KEY AUTOINCREMENT,
				consumer     TEXT    NOT NULL,
				message_id   TEXT    NOT NULL,
				source       TEXT    NOT NULL,
				topic        TEXT    NOT NULL,
				msg_key      TEXT    NOT NULL,
				message_type TEXT    NOT NULL,
				headers      TEXT    NOT NULL,
				payload      BLOB    NOT NULL,
				occurred_at  TEXT,
				reason       TEXT    NOT NULL,
				attempts     INTEGER NOT NULL,
				dead_at      TEXT    NOT NULL,
				status       TEXT    NOT NULL CHECK (status IN ('DEAD', 'REPLAYED', 'DISCARDED')),
				replayed_at  TEXT,
				replay_id    TEXT
			)`),
			r.Replace(`CREATE UNIQUE INDEX IF NOT EXISTS {{t}}_dead ON {{t}} (consumer, message_id) WHERE status = 'DEAD' AND message_id <> ''`),
			r.Replace(`CREATE INDEX IF NOT EXISTS {{t}}_status ON {{t}} (status, seq)`),
		}
		// UTC text in sqlstore.TimeLayout, as ferry's SQLite store writes
		// times: fixed-width, so text order is time order.
		d.now = `strftime('%Y-%m-%d %H:%M:%f000', 'now')`
		d.textTimes = true
		d.insert = insertInto + ` VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ` + d.now + `, 'DEAD')
			ON CONFLICT (consumer, message_id) WHERE status = 'DEAD' AND message_id <> ''
			DO UPDATE SET reason = excluded.reason, attempts = attempts + excluded.attempts, dead_at = excluded.dead_at`
	default:
		return nil, fmt.Errorf("deadletters: unknown dialect %q: use \"postgres\", \"mysql\" (also for MariaDB) or \"sqlite\", as ferry.Store.Dialect names them", name)
	}
	return d, nil
}

// q rewrites a query written with ? placeholders for d's database.
func (d *dialect) q(query string) string {
	if !d.numbered {
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

// timeArg converts t to the representation of d's time columns: nil for
// the zero time.
func (d *dialect) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	if d.textTimes {
		return t.Format(sqlstore.TimeLayout)
	}
	return t
}

// nullTime scans a time column in any of the representations the
// databases and their drivers return: time.Time, or text when MySQL's DSN
// lacks parseTime and on SQLite. The text is UTC.
type nullTime struct{ t time.Time }

func (n *nullTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		n.t = time.Time{}
		return nil
	case time.Time:
		n.t = v.UTC()
		return nil
	case string:
		return n.parse(v)
	case []byte:
		return n.parse(string(v))
	}
	return fmt.Errorf("deadletters: cannot read a time from %T", v)
}

func (n *nullTime) parse(s string) error {
	for _, layout := range []string{sqlstore.TimeLayout, "2006-01-02 15:04:05.999999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			n.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("deadletters: cannot read a time from %q", s)
}
