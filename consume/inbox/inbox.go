package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// DefaultTable is the inbox table's name unless Options.Table says
// otherwise.
const DefaultTable = "ferry_inbox"

// DefaultRetention is how long the inbox remembers a message id unless
// Options.Retention says otherwise: longer than any broker keeps
// redelivering a message, short enough that the table stays small.
const DefaultRetention = 7 * 24 * time.Hour

// MaxIDLen is the longest message id, and the longest consumer name, the
// inbox accepts, in bytes. The limit is the same on every database so that
// an id accepted on one is accepted on all of them.
const MaxIDLen = 255

// cleanupBatch is how many rows one statement of Cleanup deletes: few
// enough that each statement holds its locks only briefly.
const cleanupBatch = 1000

// TxHandler processes one message inside the transaction that records it
// in the inbox. Its writes through tx commit together with the record, or
// not at all. It must not commit or roll back tx itself.
type TxHandler func(ctx context.Context, tx *sql.Tx, m *consume.Message) error

// Options configure an Inbox. The zero value is usable.
type Options struct {
	// Table is the inbox table; DefaultTable if empty. It must be a plain
	// SQL identifier (see sqlstore.CheckTable).
	Table string
	// Retention is how long a processed message id is remembered;
	// DefaultRetention if zero. Cleanup deletes older records, so a
	// message redelivered after that is processed again: keep it longer
	// than the broker's redelivery window and any replay you may run.
	Retention time.Duration
	// Logger receives the inbox's logs: skipped duplicates at debug level,
	// failed cleanups as warnings. Default: slog.Default().
	Logger *slog.Logger
}

// Inbox records the messages its handlers have processed, so that a
// message delivered again is skipped. It is safe for concurrent use.
type Inbox struct {
	db        *sql.DB
	d         *dialect
	table     string
	retention time.Duration
	log       *slog.Logger
	// batch is how many rows one Cleanup statement deletes and every how
	// often Run cleans up; tests shrink them.
	batch int
	every time.Duration
}

// New returns an inbox in db, a database of the given dialect: "postgres",
// "mysql" (MariaDB or MySQL) or "sqlite", as ferry.Store.Dialect names
// them. It checks its arguments but does not touch the database; call
// Migrate to create the table.
func New(db *sql.DB, dialect string, opts Options) (*Inbox, error) {
	if db == nil {
		return nil, errors.New("inbox: nil *sql.DB")
	}
	table := opts.Table
	if table == "" {
		table = DefaultTable
	}
	if err := sqlstore.CheckTable(table); err != nil {
		return nil, fmt.Errorf("inbox: Options.Table: %w", err)
	}
	d, err := newDialect(dialect, table)
	if err != nil {
		return nil, err
	}
	retention := opts.Retention
	switch {
	case retention < 0:
		return nil, fmt.Errorf("inbox: negative Options.Retention %v: give how long message ids are remembered, or 0 for the default (%v)", retention, DefaultRetention)
	case retention == 0:
		retention = DefaultRetention
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Inbox{
		db:        db,
		d:         d,
		table:     table,
		retention: retention,
		log:       log,
		batch:     cleanupBatch,
		every:     min(max(retention/100, time.Minute), time.Hour),
	}, nil
}

// Table returns the inbox table's name.
func (i *Inbox) Table() string { return i.table }

// Migrate creates the inbox table and its index if they do not exist. It
// is idempotent, and several processes may run it at once.
func (i *Inbox) Migrate(ctx context.Context) error {
	// One transaction: PostgreSQL and SQLite create the table and its
	// index atomically, and PostgreSQL's advisory lock, the first
	// statement, lasts until the end. MySQL commits each CREATE on its own
	// and serializes concurrent ones with its metadata lock.
	tx, err := i.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("inbox: migrate %s: %w", i.table, err)
	}
	defer tx.Rollback()
	for _, stmt := range i.d.create {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("inbox: migrate %s: %w\nstatement: %s", i.table, err, stmt)
		}
	}
	// A table of that name made for something else passes CREATE TABLE IF
	// NOT EXISTS and would fail every message later; say so now.
	if _, err := tx.ExecContext(ctx, i.d.probe); err != nil {
		return fmt.Errorf("inbox: migrate: table %s exists but lacks the inbox's columns (consumer, message_id, processed_at); is it another table? choose another Options.Table: %w", i.table, err)
	}
	if i.d.index != "" {
		if _, err := tx.ExecContext(ctx, i.d.index); err != nil {
			return fmt.Errorf("inbox: migrate %s: %w\nstatement: %s", i.table, err, i.d.index)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("inbox: migrate %s: %w", i.table, err)
	}
	return nil
}

// Handler returns a consume.Handler that runs h for the consumer named
// consumer so that h's writes through its transaction happen once per
// message id, however often the message is delivered.
//
// For each message it begins a transaction in the inbox's database and
// records (consumer, message id) in the inbox table. If the record exists,
// the message was processed before: it rolls back and returns nil without
// calling h, so the consumer acknowledges the redelivery. Otherwise it
// calls h with the transaction and commits if h returns nil; if h fails,
// it rolls back h's writes and the record together and returns h's error,
// so the consumer retries the message.
//
// A delivery of a message that another goroutine or process is processing
// at that moment waits on the inbox table's primary key until the other
// transaction ends, then is skipped if it committed or processed if it
// rolled back. A message without an id cannot be deduplicated and fails
// with a consume.Permanent error.
//
// The consumer name scopes the ids: two consumers of one message, each
// with its own name, each process it once. Handler panics if h is nil or
// consumer is empty, longer than MaxIDLen bytes, or not valid UTF-8.
func (i *Inbox) Handler(consumer string, h TxHandler) consume.Handler {
	checkConsumer("Handler", consumer)
	if h == nil {
		panic("inbox: Handler: nil TxHandler")
	}
	return consume.HandlerFunc(func(ctx context.Context, m *consume.Message) error {
		if err := checkID(consumer, m); err != nil {
			return err
		}
		tx, err := i.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("inbox: consumer %q, message %q: begin: %w", consumer, m.ID, err)
		}
		// After Commit this is a no-op; before, it undoes the record and
		// h's writes, also if h panics.
		defer tx.Rollback()
		res, err := tx.ExecContext(ctx, i.d.insert, consumer, m.ID)
		fresh := true
		switch {
		case err != nil && i.d.duplicate != nil && i.d.duplicate(err):
			fresh = false
		case err != nil:
			return fmt.Errorf("inbox: consumer %q, message %q: record in %s: %w", consumer, m.ID, i.table, err)
		default:
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("inbox: consumer %q, message %q: record in %s: %w", consumer, m.ID, i.table, err)
			}
			fresh = n > 0
		}
		if !fresh {
			i.skipped(ctx, consumer, m)
			return nil
		}
		if err := h(ctx, tx, m); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			// The outcome is unknown; a retry finds the record if the
			// commit happened and processes the message if it did not.
			return fmt.Errorf("inbox: consumer %q, message %q: commit: %w", consumer, m.ID, err)
		}
		return nil
	})
}

// checkConsumer panics unless consumer is a usable consumer name: a
// mistake in the program, like a bad route in http.ServeMux.
func checkConsumer(method, consumer string) {
	if err := checkName(consumer); err != nil {
		panic(fmt.Sprintf("inbox: %s: consumer name %q %v", method, consumer, err))
	}
}

// checkID returns a permanent error if m's id cannot be recorded.
func checkID(consumer string, m *consume.Message) error {
	if m.ID == "" {
		return consume.Permanent(fmt.Errorf("inbox: consumer %q: message on topic %q (partition %d, offset %d) has no id, so it cannot be deduplicated: producers must set a unique, stable id (ferry's outbox always does)", consumer, m.Topic, m.Partition, m.Offset))
	}
	if err := checkName(m.ID); err != nil {
		return consume.Permanent(fmt.Errorf("inbox: consumer %q: message id %q %v, so it cannot be deduplicated", consumer, truncate(m.ID), err))
	}
	return nil
}

// checkName returns why s cannot be a consumer name or a message id in the
// inbox table, or nil. PostgreSQL's text refuses invalid UTF-8 and NUL
// bytes, and the limits must hold on every database.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > MaxIDLen:
		return fmt.Errorf("is longer than %d bytes", MaxIDLen)
	case !utf8.ValidString(s) || strings.ContainsRune(s, 0):
		return errors.New("is not valid UTF-8 without NUL bytes")
	}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}

func (i *Inbox) skipped(ctx context.Context, consumer string, m *consume.Message) {
	i.log.DebugContext(ctx, "inbox: skipped a message already processed",
		"consumer", consumer, "id", m.ID, "topic", m.Topic, "type", m.Type)
}

// Seen reports whether the consumer named consumer has processed the
// message with the given id and the record is still kept.
func (i *Inbox) Seen(ctx context.Context, consumer, id string) (bool, error) {
	var one int
	err := i.db.QueryRowContext(ctx, i.d.seen, consumer, id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("inbox: seen %q by %q in %s: %w", id, consumer, i.table, err)
	}
	return true, nil
}
