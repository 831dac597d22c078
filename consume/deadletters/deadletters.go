package deadletters

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/consume"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/transport"
)

// DefaultTable is the dead-letter table's name unless Options.Table says
// otherwise.
const DefaultTable = "ferry_dead_letters"

// MaxFieldLen is the longest consumer name, message id, source, topic, key
// and type a dead letter can have, in bytes. The limit is the same on
// every database so that a letter stored on one is stored on all of them.
const MaxFieldLen = 1024

// MaxReasonLen is how much of the error that killed a message is kept, in
// bytes; a longer one is cut at a character boundary.
const MaxReasonLen = 8 << 10

// Status is the state of a dead letter.
type Status string

// The states of a dead letter. A letter is DEAD when stored, and a person
// or a program settles it: REPLAYED into the outbox, or DISCARDED.
const (
	StatusDead      Status = "DEAD"
	StatusReplayed  Status = "REPLAYED"
	StatusDiscarded Status = "DISCARDED"
)

// Valid reports whether s is one of the three states.
func (s Status) Valid() bool {
	switch s {
	case StatusDead, StatusReplayed, StatusDiscarded:
		return true
	}
	return false
}

// Options configure a Table. The zero value is usable.
type Options struct {
	// Table is the dead-letter table; DefaultTable if empty. It must be a
	// plain SQL identifier (see sqlstore.CheckTable).
	Table string
}

// Table is a dead-letter table in a SQL database. It implements
// consume.DeadLetterer, and lists, replays and discards the letters. It
// is safe for concurrent use.
type Table struct {
	db    *sql.DB
	d     *dialect
	table string
}

var _ consume.DeadLetterer = (*Table)(nil)

// New returns the dead-letter table in db, a database of the given
// dialect: "postgres", "mysql" (MariaDB or MySQL) or "sqlite", as
// ferry.Store.Dialect names them. It checks its arguments but does not
// touch the database; call Migrate to create the table.
func New(db *sql.DB, dialect string, opts Options) (*Table, error) {
	if db == nil {
		return nil, errors.New("deadletters: nil *sql.DB")
	}
	table := opts.Table
	if table == "" {
		table = DefaultTable
	}
	if err := sqlstore.CheckTable(table); err != nil {
		return nil, fmt.Errorf("deadletters: Options.Table: %w", err)
	}
	d, err := newDialect(dialect, table)
	if err != nil {
		return nil, err
	}
	return &Table{db: db, d: d, table: table}, nil
}

// Name returns the table's name.
func (t *Table) Name() string { return t.table }

// Migrate creates the table and its indexes if they do not exist. It is
// idempotent, and several processes may run it at once.
func (t *Table) Migrate(ctx context.Context) error {
	// One transaction: PostgreSQL and SQLite create the table and its
	// indexes atomically, and PostgreSQL's advisory lock, the first
	// statement, lasts until the end. MySQL commits the CREATE on its own
	// and serializes concurrent ones with its metadata lock.
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("deadletters: migrate %s: %w", t.table, err)
	}
	defer tx.Rollback()
	for _, stmt := range t.d.create {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("deadletters: migrate %s: %w\nstatement: %s", t.table, err, stmt)
		}
		// A table of that name made for something else passes CREATE
		// TABLE IF NOT EXISTS and would fail every dead letter later, or
		// its indexes; say so now.
		if strings.Contains(stmt, "CREATE TABLE") {
			if _, err := tx.ExecContext(ctx, t.d.probe); err != nil {
				return fmt.Errorf("deadletters: migrate: table %s exists but lacks the dead-letter columns; is it another table? choose another Options.Table: %w", t.table, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("deadletters: migrate %s: %w", t.table, err)
	}
	return nil
}

// DeadLetter stores m, which the consumer m.Consumer gave up on after
// m.Attempt attempts because of reason, as a DEAD letter: its id, source,
// topic, key, type, headers, payload and time of occurrence, so that it
// can be replayed as it was. A nil error means the letter is committed,
// and the consumer may acknowledge the message.
//
// The letter of a consumer and message id is stored once while it is
// DEAD: when the same message dies again (the broker redelivered it), the
// letter's reason and time become the new ones and its attempts grow by
// the new attempts; the message as first stored is kept. A message
// without an id cannot be recognized, and each of its deaths is a letter
// of its own.
//
// Text that is not valid UTF-8 is stored with U+FFFD in place of the
// invalid bytes, and NUL bytes are left out, so that every database takes
// it; the payload is stored byte for byte. A consumer name, message id,
// source, topic, key or type longer than MaxFieldLen bytes is refused with
// an error, and the consumer gives the message back to the broker.
func (t *Table) DeadLetter(ctx context.Context, m *consume.Message, reason error) error {
	consumer, id := clean(m.Consumer), clean(m.ID)
	source, topic, key, typ := clean(m.Source), clean(m.Topic), clean(m.Key), clean(m.Type)
	for _, f := range []struct{ name, v string }{
		{"consumer name", consumer}, {"id", id}, {"source", source}, {"topic", topic}, {"key", key}, {"type", typ},
	} {
		if len(f.v) > MaxFieldLen {
			return fmt.Errorf("deadletters: message %q of consumer %q: its %s is %d bytes long; the dead-letter table takes at most %d",
				truncate(id, 64), truncate(consumer, 64), f.name, len(f.v), MaxFieldLen)
		}
	}
	headers, err := encodeHeaders(m.Headers)
	if err != nil {
		return fmt.Errorf("deadletters: message %q of consumer %q: %w", truncate(id, 64), truncate(consumer, 64), err)
	}
	why := ""
	if reason != nil {
		why = truncate(clean(reason.Error()), MaxReasonLen)
	}
	payload := m.Payload
	if payload == nil {
		payload = []byte{} // the column is NOT NULL
	}
	_, err = t.db.ExecContext(ctx, t.d.insert, consumer, id, source, topic, key, typ, headers, payload,
		t.d.timeArg(m.OccurredAt), why, m.Attempt)
	if err != nil {
		return fmt.Errorf("deadletters: store message %q of consumer %q in %s: %w", truncate(id, 64), truncate(consumer, 64), t.table, err)
	}
	return nil
}

// clean makes s acceptable to every database's text columns: valid UTF-8
// without NUL bytes.
func clean(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// truncate cuts s to at most n bytes at a character boundary, ending it
// with "…" if it cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// encodeHeaders returns h as a JSON object; JSON replaces invalid UTF-8.
func encodeHeaders(h map[string]string) (string, error) {
	if len(h) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("encode headers: %w", err)
	}
	return string(b), nil
}

// Letter is a dead letter as stored: the message as the consumer received
// it, and why and when it died.
type Letter struct {
	// Message is the message as the consumer received it. OccurredAt is
	// zero if the message did not say.
	transport.Message
	// Seq numbers the letters in the order they were stored.
	Seq int64
	// Consumer is the consumer that gave up on the message.
	Consumer string
	// Source is what the consumer read the message from (see
	// consume.Message).
	Source string
	// Reason is the error of the last attempt.
	Reason string
	// Attempts is how many times the consumer tried the message, over all
	// its deaths.
	Attempts int
	// DeadAt is when the message last died, by the database's clock.
	DeadAt time.Time
	// Status is DEAD until the letter is replayed or discarded.
	Status Status
	// ReplayedAt is when the letter was replayed, and ReplayID the id of
	// the outbox message it became; zero unless REPLAYED.
	ReplayedAt time.Time
	ReplayID   string
}

// Filter selects dead letters. Zero fields match everything.
type Filter struct {
	// Consumer, Source and Type match the letters of that consumer, read
	// from that source, of that message type.
	Consumer string
	Source   string
	Type     string
	// Status matches the letters in that state. List: any if empty;
	// Replay and Discard act on DEAD letters only, see there.
	Status Status
	// IDs matches the letters of these message ids (the original ids, as
	// the consumer received them).
	IDs []string
	// Limit bounds how many letters are listed (0 means 100), replayed or
	// discarded (0 means all that match).
	Limit int
	// After matches the letters stored after the one with this Seq, to
	// page through a long list.
	After int64
}

// where returns f's conditions and their arguments, without status.
func (f Filter) where() (string, []any) {
	var (
		conds []string
		args  []any
	)
	add := func(cond string, v any) {
		conds = append(conds, cond)
		args = append(args, v)
	}
	if f.Consumer != "" {
		add("consumer = ?", f.Consumer)
	}
	if f.Source != "" {
		add("source = ?", f.Source)
	}
	if f.Type != "" {
		add("message_type = ?", f.Type)
	}
	if f.After > 0 {
		add("seq > ?", f.After)
	}
	if len(f.IDs) > 0 {
		conds = append(conds, "message_id IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(f.IDs)), ", ")+")")
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	if len(conds) == 0 {
		return "1 = 1", nil
	}
	return strings.Join(conds, " AND "), args
}

// List returns the letters matching f in the order they were stored.
func (t *Table) List(ctx context.Context, f Filter) ([]Letter, error) {
	if f.Status != "" && !f.Status.Valid() {
		return nil, fmt.Errorf("deadletters: unknown status %q: use DEAD, REPLAYED or DISCARDED", f.Status)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	return t.list(ctx, t.db, f, limit, "")
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// list selects at most limit letters matching f, in Seq order; suffix
// ends the statement (FOR UPDATE).
func (t *Table) list(ctx context.Context, q querier, f Filter, limit int, suffix string) ([]Letter, error) {
	where, args := f.where()
	if f.Status != "" {
		where += " AND status = ?"
		args = append(args, string(f.Status))
	}
	args = append(args, limit)
	query := t.d.q(`SELECT ` + columns + ` FROM ` + t.table + ` WHERE ` + where + ` ORDER BY seq LIMIT ?` + suffix)
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("deadletters: list %s: %w", t.table, err)
	}
	defer rows.Close()
	var out []Letter
	for rows.Next() {
		var (
			l                        Letter
			headers                  string
			occurred, dead, replayed nullTime
			status                   string
			replayID                 sql.NullString
		)
		if err := rows.Scan(&l.Seq, &l.Consumer, &l.ID, &l.Source, &l.Topic, &l.Key, &l.Type, &headers, &l.Payload,
			&occurred, &l.Reason, &l.Attempts, &dead, &status, &replayed, &replayID); err != nil {
			return nil, fmt.Errorf("deadletters: list %s: %w", t.table, err)
		}
		if headers != "" && headers != "{}" {
			if err := json.Unmarshal([]byte(headers), &l.Headers); err != nil {
				return nil, fmt.Errorf("deadletters: list %s: letter %d: headers: %w", t.table, l.Seq, err)
			}
		}
		l.OccurredAt, l.DeadAt, l.ReplayedAt = occurred.t, dead.t, replayed.t
		l.Status, l.ReplayID = Status(status), replayID.String
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("deadletters: list %s: %w", t.table, err)
	}
	return out, nil
}
