package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// insertSQL writes a whole batch in one statement: each column arrives as
// one array parameter, so the statement text, its plan and the number of
// parameters are the same for 1 message or 100,000, and the server parses
// and plans it once per connection.
//
// unnest with several arguments yields the arrays' elements side by side,
// in array order, and the INSERT takes ids from the sequence in the order
// the SELECT yields rows, so messages get ids in slice order and per-key
// order within one write is the caller's order. TestWriteKeepsSliceOrder
// checks it on every run.
const insertSQL = `INSERT INTO {{t}} (message_id, lane, topic, msg_key, message_type, headers, payload, available_at)
	SELECT id, lane, topic, k, typ, h::jsonb, p, COALESCE(at, {{now}})
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::timestamptz[])
		AS m(id, lane, topic, k, typ, h, p, at)`

// onConflict makes a duplicate message_id a no-op, including a repeat
// within one batch.
const onConflict = ` ON CONFLICT (message_id) DO NOTHING`

// copyColumns are the columns the COPY of WritePgx sets.
var copyColumns = []string{"message_id", "lane", "topic", "msg_key", "message_type", "headers", "payload", "available_at"}

// maxBatchBytes bounds the data of one statement. PostgreSQL refuses a
// protocol message or an array over 1 GB, and a statement that large would
// hold a lot of memory on both sides, so bigger writes take several
// statements, in order, in the same transaction.
const maxBatchBytes = 64 << 20

// maxBatchRows bounds the messages of one statement. The server
// materializes the unnest of a statement's arrays, and beyond work_mem
// (4 MB by default, some 10,000 messages) that spills to a temporary
// file: measured on 100,000 messages in one transaction, one statement
// took 2.5 s, statements of 10,000 took 1.6 s.
const maxBatchRows = 10_000

// fastMin is the smallest write done the fast way: in a savepoint,
// without ON CONFLICT (COPY for WritePgx), falling back to the INSERT with
// ON CONFLICT if that fails, as it does when an id is already stored.
// ON CONFLICT checks the message_id index before each row and inserts
// speculatively; skipping that roughly halves the server's work for a bulk
// write (COPY saves more). The price is a subtransaction per write, and a
// transaction with more than 64 of them makes every snapshot on the server
// slower while it runs, so small writes, which a producer may issue many
// times in one transaction, do not take this path.
const fastMin = 10_000

// Write inserts msgs in tx. A message whose ID is already stored is
// skipped, as is a repeat of an ID within msgs. Each 10,000 messages or 64
// MB is one statement; writes of 10,000 messages or more go in a savepoint
// (see fastMin). tx may come from any database/sql driver for PostgreSQL:
// pgx sends the columns as binary arrays, other drivers (lib/pq) as array
// literals.
func (s *Store) Write(ctx context.Context, tx *sql.Tx, msgs []ferry.Message) error {
	exec := func(query string, args []any) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	}
	return s.write(msgs, exec, func(c *columns) error { return exec(s.insertFast, c.arrays()) })
}

// WritePgx is Write for a pgx transaction, for applications that use pgx
// directly (a pgxpool.Pool or a pgx.Conn) rather than database/sql.
// Writes of 10,000 messages or more are sent with COPY in a savepoint.
func (s *Store) WritePgx(ctx context.Context, tx pgx.Tx, msgs []ferry.Message) error {
	exec := func(query string, args []any) error {
		_, err := tx.Exec(ctx, query, args...)
		return err
	}
	// COPY cannot fill in available_at per row the way COALESCE does, so
	// it takes now(): the transaction's start time, the same value the
	// column default would take.
	var now time.Time
	return s.write(msgs, exec, func(c *columns) error {
		if now.IsZero() {
			if err := tx.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
				return err
			}
		}
		return s.copy(ctx, tx, c, now)
	})
}

// write writes msgs in statements of at most maxBatchRows and
// maxBatchBytes: all of them with bulk in one savepoint if there are
// fastMin or more, and otherwise, or if that fails, with the INSERT that
// skips stored ids.
func (s *Store) write(msgs []ferry.Message, exec func(query string, args []any) error, bulk func(*columns) error) error {
	parts := batches(msgs, maxBatchRows, maxBatchBytes)
	if len(msgs) >= fastMin {
		var badMessage error
		ok, err := fast(exec, func() error {
			for _, part := range parts {
				c, err := newColumns(part)
				if err != nil {
					badMessage = err
					return err
				}
				if err := bulk(c); err != nil {
					return err
				}
			}
			return nil
		})
		switch {
		case badMessage != nil:
			return badMessage
		case err != nil:
			return fmt.Errorf("ferry: postgres: write %d messages to %s: %w", len(msgs), s.Table, err)
		case ok:
			return nil
		}
	}
	for _, part := range parts {
		c, err := newColumns(part)
		if err != nil {
			return err
		}
		if err := exec(s.insert, c.arrays()); err != nil {
			return fmt.Errorf("ferry: postgres: write %d messages to %s: %w", len(part), s.Table, err)
		}
	}
	return nil
}

// fast runs write in a savepoint. It reports whether write succeeded; if
// it did not, the savepoint undid it and the caller writes again with ON
// CONFLICT, which skips stored ids and repeats any other error. Which
// errors mean a duplicate depends on the driver, so any error falls back.
// err is set only when the savepoint itself fails: the transaction is
// then unusable.
func fast(exec func(query string, args []any) error, write func() error) (ok bool, err error) {
	if err := exec("SAVEPOINT ferry_write", nil); err != nil {
		return false, err
	}
	if write() == nil {
		return true, exec("RELEASE SAVEPOINT ferry_write", nil)
	}
	if err := exec("ROLLBACK TO SAVEPOINT ferry_write", nil); err != nil {
		return false, err
	}
	return false, exec("RELEASE SAVEPOINT ferry_write", nil)
}

// copy writes c with COPY, with now as the available_at of the messages
// that do not say when.
func (s *Store) copy(ctx context.Context, tx pgx.Tx, c *columns, now time.Time) error {
	// The table's name folds to lower case unquoted; CopyFrom quotes it.
	_, err := tx.CopyFrom(ctx, pgx.Identifier{s.channel}, copyColumns, &copyRows{c: c, now: now, i: -1})
	return err
}

// copyRows is a pgx.CopyFromSource over columns.
type copyRows struct {
	c   *columns
	now time.Time
	i   int
	row [8]any
}

func (r *copyRows) Next() bool { r.i++; return r.i < len(r.c.ids) }
func (r *copyRows) Err() error { return nil }

func (r *copyRows) Values() ([]any, error) {
	c, i := r.c, r.i
	at := r.now
	if c.at[i] != nil {
		at = *c.at[i]
	}
	r.row = [8]any{c.ids[i], c.lanes[i], c.topics[i], c.keys[i], c.types[i], c.headers[i], c.payloads[i], at}
	return r.row[:], nil
}

// batches splits msgs, in order, into runs of at most maxRows messages
// and maxBytes bytes; a message larger than maxBytes is a batch of its
// own.
func batches(msgs []ferry.Message, maxRows, maxBytes int) [][]ferry.Message {
	var out [][]ferry.Message
	for start := 0; start < len(msgs); {
		end, size := start+1, msgSize(&msgs[start])
		for end < len(msgs) && end-start < maxRows && size+msgSize(&msgs[end]) <= maxBytes {
			size += msgSize(&msgs[end])
			end++
		}
		out = append(out, msgs[start:end])
		start = end
	}
	return out
}

// msgSize estimates the bytes m adds to a statement.
func msgSize(m *ferry.Message) int {
	n := len(m.ID) + len(m.Lane) + len(m.Topic) + len(m.Key) + len(m.Type) + len(m.Payload) + 64
	for k, v := range m.Headers {
		n += len(k) + len(v) + 6
	}
	return n
}

// columns holds a batch column by column, following sqlstore's
// conventions: an empty key or type is NULL, no headers is NULL, a zero
// DeliverAt is NULL and so the database's now().
type columns struct {
	ids, lanes, topics   []string
	keys, types, headers []*string
	payloads             [][]byte
	at                   []*time.Time
}

func newColumns(msgs []ferry.Message) (*columns, error) {
	n := len(msgs)
	c := &columns{
		ids: make([]string, n), lanes: make([]string, n), topics: make([]string, n),
		keys: make([]*string, n), types: make([]*string, n), headers: make([]*string, n),
		payloads: make([][]byte, n), at: make([]*time.Time, n),
	}
	for i := range msgs {
		m := &msgs[i]
		c.ids[i], c.lanes[i], c.topics[i] = m.ID, m.Lane, m.Topic
		if m.Key != "" {
			c.keys[i] = &m.Key
		}
		if m.Type != "" {
			c.types[i] = &m.Type
		}
		h, err := sqlstore.EncodeHeaders(m.Headers)
		if err != nil {
			return nil, fmt.Errorf("ferry: message %s: %w", m.ID, err)
		}
		if h, ok := h.(string); ok {
			c.headers[i] = &h
		}
		// A nil []byte would be NULL, and payload is NOT NULL.
		c.payloads[i] = m.Payload
		if c.payloads[i] == nil {
			c.payloads[i] = []byte{}
		}
		if !m.DeliverAt.IsZero() {
			t := m.DeliverAt.UTC()
			c.at[i] = &t
		}
	}
	return c, nil
}

// arrays returns the eight array arguments of insertSQL.
func (c *columns) arrays() []any {
	return []any{
		array[string]{c.ids, textString},
		array[string]{c.lanes, textString},
		array[string]{c.topics, textString},
		array[*string]{c.keys, textStringPtr},
		array[*string]{c.types, textStringPtr},
		array[*string]{c.headers, textStringPtr},
		array[[]byte]{c.payloads, textBytes},
		array[*time.Time]{c.at, textTimePtr},
	}
}

// array is a one-dimensional array parameter. pgx encodes it in binary
// through pgtype.ArrayGetter, which it tries before driver.Valuer; other
// drivers call Value and get PostgreSQL's text form of the array.
type array[T any] struct {
	pgtype.FlatArray[T]
	// text returns an element's text form, or false for NULL.
	text func(T) (string, bool)
}

// Value returns the array literal, such as {"a",NULL,"b\"c"}.
func (a array[T]) Value() (driver.Value, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range a.FlatArray {
		if i > 0 {
			b.WriteByte(',')
		}
		s, ok := a.text(v)
		if !ok {
			b.WriteString("NULL")
			continue
		}
		b.WriteByte('"')
		for _, c := range []byte(s) {
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

func textString(s string) (string, bool) { return s, true }

func textStringPtr(s *string) (string, bool) {
	if s == nil {
		return "", false
	}
	return *s, true
}

func textBytes(p []byte) (string, bool) { return `\x` + hex.EncodeToString(p), true }

func textTimePtr(t *time.Time) (string, bool) {
	if t == nil {
		return "", false
	}
	return t.Format(time.RFC3339Nano), true
}
