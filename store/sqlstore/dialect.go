// Package sqlstore is the part of ferry's stores that is the same SQL on
// every database: the queries of the relay, the leases and the operator
// commands. Each database package (store/sqlite, store/postgres,
// store/mysql) supplies a Dialect with its schema and the few statements
// that differ, and adds what only its database can do (LISTEN/NOTIFY,
// COPY).
//
// Queries are written with ? placeholders; a Dialect with Numbered set
// rewrites them to $1, $2, ... once, when the Store is built.
package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"time"
)

// Dialect describes one database.
type Dialect struct {
	// Name is what ferry.Store.Dialect returns.
	Name string
	// Numbered placeholders ($1) instead of ?.
	Numbered bool
	// Now is the SQL expression for the database's current time, in the
	// representation the time columns use.
	Now string
	// GeneratedShard is true when the schema computes the shard column
	// itself; otherwise Write stores ferry.ShardOf.
	GeneratedShard bool
	// TextTimes is true when times are stored as fixed-width UTC text
	// ("2006-01-02 15:04:05.000000"), as on SQLite.
	TextTimes bool
	// MaxParams is the most placeholders one statement may carry.
	MaxParams int
	// Migrations are the schema versions in order; Migrations[i] takes the
	// schema from version i to i+1. Each is a list of statements in which
	// {{t}} stands for the outbox table's name.
	Migrations [][]string
	// LockMigrations serializes Migrate across processes on conn and
	// returns the function that releases the lock.
	LockMigrations func(ctx context.Context, conn *sql.Conn) (unlock func(), err error)
	// OnConflictIgnore ends an INSERT so that a duplicate message_id is
	// skipped.
	OnConflictIgnore string
	// UpsertNode is the statement that records a node's heartbeat; its
	// arguments are the node and the time.
	UpsertNode string
	// PauseLane is the statement that adds a lane, its one argument, to
	// {{paused}} with paused_at {{now}}, and does nothing if the lane is
	// there already (so the first pause's time stays).
	PauseLane string
	// CleanupSQL deletes DONE rows processed before the first argument, at
	// most the second argument of them. Empty means the portable
	// DELETE ... WHERE id IN (SELECT ... LIMIT ?).
	CleanupSQL string
}

// TimeLayout is the text form of times on databases with TextTimes. It is
// fixed-width, so text order is time order.
const TimeLayout = "2006-01-02 15:04:05.000000"

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// CheckTable returns an error unless name can be used as ferry's table
// name: an unquoted SQL identifier of letters, digits and underscores, at
// most 48 characters so the derived table names fit every database.
func CheckTable(name string) error {
	if !identifier.MatchString(name) {
		return fmt.Errorf("ferry: table name %q is not a plain SQL identifier: use letters, digits and underscores, start with a letter or underscore, at most 48 characters", name)
	}
	return nil
}

// timeArg converts t to the representation of d's time columns.
func (d *Dialect) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	if d.TextTimes {
		return t.Format(TimeLayout)
	}
	return t
}

// nullTime scans any of the time representations ferry's databases return.
type nullTime struct{ t time.Time }

func (n *nullTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		n.t = time.Time{}
	case time.Time:
		n.t = v.UTC()
	case string:
		return n.parse(v)
	case []byte:
		return n.parse(string(v))
	default:
		return fmt.Errorf("ferry: cannot read a time from %T", v)
	}
	return nil
}

func (n *nullTime) parse(s string) error {
	for _, layout := range []string{TimeLayout, "2006-01-02 15:04:05.999999999", time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			n.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("ferry: cannot read a time from %q", s)
}
