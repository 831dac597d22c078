package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry"
)

// Store implements ferry.Store on a database/sql handle.
type Store struct {
	DB *sql.DB
	d  *Dialect
	// Table is the outbox table; the shard leases, the relay nodes, the
	// paused lanes and the schema version live in Table_shards,
	// Table_nodes, Table_paused and Table_schema.
	Table  string
	shards string
	nodes  string
	paused string
	schema string
	names  *strings.Replacer
	// rewritten remembers q's results: the relay rewrites the same few
	// statements for every read, and rewriting was a twentieth of an idle
	// relay's CPU. Statements that vary (one placeholder per key or
	// shard) are few in kind, and beyond maxRewritten they are rewritten
	// each time rather than remembered.
	rewritten     sync.Map // query → rewritten query
	rewrittenSize atomic.Int32
}

// maxRewritten bounds the statements a Store remembers rewritten.
const maxRewritten = 4096

// New returns a Store for table in db. It checks the table name but does
// not touch the database; call Migrate to create the schema.
func New(db *sql.DB, d *Dialect, table string) (*Store, error) {
	if err := CheckTable(table); err != nil {
		return nil, err
	}
	s := &Store{DB: db, d: d, Table: table,
		shards: table + "_shards", nodes: table + "_nodes", paused: table + "_paused", schema: table + "_schema"}
	s.names = strings.NewReplacer("{{t}}", s.Table, "{{shards}}", s.shards, "{{nodes}}", s.nodes,
		"{{paused}}", s.paused, "{{schema}}", s.schema, "{{now}}", d.Now)
	return s, nil
}

var _ ferry.Store = (*Store)(nil)

// Dialect returns the database's name.
func (s *Store) Dialect() string { return s.d.Name }

// SQLDB returns the store's database handle, on which callers begin the
// transactions they pass to Outbox.Write.
func (s *Store) SQLDB() *sql.DB { return s.DB }

// Q returns query rewritten for this store: {{t}}, {{shards}}, {{nodes}},
// {{paused}}, {{schema}} and {{now}} replaced, and ? placeholders numbered if the
// dialect wants that. Database packages use it for their own statements.
func (s *Store) Q(query string) string { return s.q(query) }

// q rewrites a query written with ? placeholders and {{t}}, {{shards}},
// {{nodes}}, {{paused}}, {{schema}} and {{now}} markers for this store.
func (s *Store) q(query string) string {
	if r, ok := s.rewritten.Load(query); ok {
		return r.(string)
	}
	r := s.rewrite(query)
	if s.rewrittenSize.Load() < maxRewritten {
		if _, loaded := s.rewritten.LoadOrStore(query, r); !loaded {
			s.rewrittenSize.Add(1)
		}
	}
	return r
}

// rewrite is q without the memory.
func (s *Store) rewrite(query string) string {
	query = s.names.Replace(query)
	if !s.d.Numbered {
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

// placeholders returns "?, ?, ..." with n entries.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// Close closes the database handle.
func (s *Store) Close() error { return s.DB.Close() }

// Migrate brings the schema to the newest version.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ferry: migrate: connect: %w", err)
	}
	defer conn.Close()
	unlock, err := s.d.LockMigrations(ctx, conn)
	if err != nil {
		return fmt.Errorf("ferry: migrate: take the migration lock: %w", err)
	}
	defer unlock()
	if _, err := conn.ExecContext(ctx, s.q(`CREATE TABLE IF NOT EXISTS {{schema}} (version INTEGER NOT NULL)`)); err != nil {
		return fmt.Errorf("ferry: migrate: create %s: %w", s.schema, err)
	}
	var version int
	err = conn.QueryRowContext(ctx, s.q(`SELECT version FROM {{schema}}`)).Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := conn.ExecContext(ctx, s.q(`INSERT INTO {{schema}} (version) VALUES (0)`)); err != nil {
			return fmt.Errorf("ferry: migrate: %w", err)
		}
	case err != nil:
		return fmt.Errorf("ferry: migrate: read the schema version: %w", err)
	}
	if version > len(s.d.Migrations) {
		return fmt.Errorf("ferry: migrate: the database's schema is version %d, newer than this ferry knows (%d); upgrade ferry", version, len(s.d.Migrations))
	}
	for v := version; v < len(s.d.Migrations); v++ {
		for _, stmt := range s.d.Migrations[v] {
			if _, err := conn.ExecContext(ctx, s.q(stmt)); err != nil {
				return fmt.Errorf("ferry: migrate to version %d: %w\nstatement: %s", v+1, err, s.q(stmt))
			}
		}
		if _, err := conn.ExecContext(ctx, s.q(`UPDATE {{schema}} SET version = ?`), v+1); err != nil {
			return fmt.Errorf("ferry: migrate: record version %d: %w", v+1, err)
		}
	}
	// The shard rows are data, not schema: add any that are missing.
	for shard := range ferry.Shards {
		if _, err := conn.ExecContext(ctx, s.q(`INSERT INTO {{shards}} (shard) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM {{shards}} WHERE shard = ?)`), shard, shard); err != nil {
			return fmt.Errorf("ferry: migrate: create shard %d: %w", shard, err)
		}
	}
	return nil
}

// SchemaVersion returns the version of the schema in the database (have)
// and the version Migrate brings it to (want). A program started on a
// schema older than its own (have < want) should ask for a migration
// rather than run with parts of its schema missing.
func (s *Store) SchemaVersion(ctx context.Context) (have, want int, err error) {
	if err := s.DB.QueryRowContext(ctx, s.q(`SELECT version FROM {{schema}}`)).Scan(&have); err != nil {
		return 0, len(s.d.Migrations), fmt.Errorf("ferry: read the schema version from %s: %w", s.schema, err)
	}
	return have, len(s.d.Migrations), nil
}

// insertColumns are the columns Write sets, in order.
var insertColumns = []string{"message_id", "lane", "topic", "msg_key", "message_type", "headers", "payload", "available_at"}

// Write inserts msgs in tx, in chunks that fit the dialect's parameter limit.
func (s *Store) Write(ctx context.Context, tx *sql.Tx, msgs []ferry.Message) error {
	cols := insertColumns
	if !s.d.GeneratedShard {
		cols = append(slices.Clone(cols), "shard")
	}
	per := len(cols)
	chunk := max(1, min(500, s.d.MaxParams/per))
	for start := 0; start < len(msgs); start += chunk {
		part := msgs[start:min(len(msgs), start+chunk)]
		var b strings.Builder
		b.WriteString("INSERT INTO {{t}} (" + strings.Join(cols, ", ") + ") VALUES ")
		row := "(" + placeholders(per-1) + ", COALESCE(?, {{now}}))"
		if !s.d.GeneratedShard {
			row = "(" + placeholders(per-2) + ", COALESCE(?, {{now}}), ?)"
		}
		args := make([]any, 0, len(part)*per)
		for i, m := range part {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(row)
			a, err := s.Args(m)
			if err != nil {
				return err
			}
			args = append(args, a...)
		}
		b.WriteString(" " + s.d.OnConflictIgnore)
		if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
			return fmt.Errorf("ferry: write %d messages to %s: %w", len(part), s.Table, err)
		}
	}
	return nil
}

// Args returns m's values for the insert columns, in order (with the shard
// last when the dialect does not generate it).
func (s *Store) Args(m ferry.Message) ([]any, error) {
	headers, err := EncodeHeaders(m.Headers)
	if err != nil {
		return nil, err
	}
	payload := m.Payload
	if payload == nil {
		payload = []byte{}
	}
	args := []any{m.ID, m.Lane, m.Topic, nullString(m.Key), nullString(m.Type), headers, payload, s.d.timeArg(m.DeliverAt)}
	if !s.d.GeneratedShard {
		args = append(args, ferry.ShardOf(m.Key, m.ID))
	}
	return args, nil
}

// EncodeHeaders returns headers as a JSON object, or nil if there are none.
func EncodeHeaders(h map[string]string) (any, error) {
	if len(h) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("ferry: encode headers: %w", err)
	}
	return string(b), nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// RecordColumns are the columns ScanRecords reads, in its order.
const RecordColumns = recordColumns

const recordColumns = `id, message_id, lane, topic, msg_key, message_type, headers, payload, shard, status,
	fail_count, occurred_at, available_at, processed_at, failed_at, last_error`

func scanRecords(rows *sql.Rows) ([]ferry.Record, error) {
	return ScanRecords(rows, nil, nil)
}

// ScanRecords reads rows of the record columns (RecordColumns) and
// closes rows. Each row may have further columns after them, scanned
// into extra; each, if set, is called with every record when its row,
// extra columns included, has been read.
func ScanRecords(rows *sql.Rows, extra []any, each func(r *ferry.Record) error) ([]ferry.Record, error) {
	defer rows.Close()
	var out []ferry.Record
	for rows.Next() {
		var (
			r                                   ferry.Record
			key, typ, headers, lastErr          sql.NullString
			occurred, available, processed, fld nullTime
			status                              string
		)
		dest := []any{&r.Seq, &r.ID, &r.Lane, &r.Topic, &key, &typ, &headers, &r.Payload, &r.Shard, &status,
			&r.Attempts, &occurred, &available, &processed, &fld, &lastErr}
		if err := rows.Scan(append(dest, extra...)...); err != nil {
			return nil, fmt.Errorf("ferry: read message: %w", err)
		}
		r.Key, r.Type, r.LastError = key.String, typ.String, lastErr.String
		r.Status = ferry.Status(status)
		r.OccurredAt, r.AvailableAt, r.ProcessedAt, r.FailedAt = occurred.t, available.t, processed.t, fld.t
		r.DeliverAt = r.AvailableAt
		if headers.Valid && headers.String != "" {
			if err := json.Unmarshal([]byte(headers.String), &r.Headers); err != nil {
				return nil, fmt.Errorf("ferry: message %s: headers are not a JSON object of strings: %w", r.ID, err)
			}
		}
		if each != nil {
			if err := each(&r); err != nil {
				return nil, err
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ferry: read messages: %w", err)
	}
	return out, nil
}

// Fetch returns WAITING messages of one lane in Seq order.
func (s *Store) Fetch(ctx context.Context, f ferry.FetchQuery) ([]ferry.Record, error) {
	query, args, err := s.FetchSQL(f)
	if err != nil || query == "" {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("ferry: fetch lane %s: %w", f.Lane, err)
	}
	return scanRecords(rows)
}

// FetchSQL returns Fetch's statement for f and its arguments, ready to
// run (placeholders rewritten), so that a database package can build on
// it. The statement is empty if f selects nothing.
func (s *Store) FetchSQL(f ferry.FetchQuery) (string, []any, error) {
	if f.Limit <= 0 {
		return "", nil, fmt.Errorf("ferry: fetch: limit must be positive, got %d", f.Limit)
	}
	var b strings.Builder
	b.WriteString(`SELECT ` + recordColumns + ` FROM {{t}} WHERE lane = ? AND status = 'WAITING' AND id > ?`)
	args := []any{f.Lane, f.AfterSeq}
	if f.UpToSeq > 0 {
		b.WriteString(` AND id <= ?`)
		args = append(args, f.UpToSeq)
	}
	if f.SkipDelayed {
		b.WriteString(` AND (available_at <= {{now}} OR fail_count > 0)`)
	}
	if f.Shards != nil && len(f.Shards) < ferry.Shards {
		if len(f.Shards) == 0 {
			return "", nil, nil
		}
		b.WriteString(` AND shard IN (` + placeholders(len(f.Shards)) + `)`)
		for _, sh := range f.Shards {
			args = append(args, sh)
		}
	}
	if len(f.SkipKeys) > 0 {
		b.WriteString(` AND (msg_key IS NULL OR msg_key NOT IN (` + placeholders(len(f.SkipKeys)) + `))`)
		for _, k := range f.SkipKeys {
			args = append(args, k)
		}
	}
	b.WriteString(` ORDER BY id LIMIT ?`)
	args = append(args, f.Limit)
	return s.q(b.String()), args, nil
}

// Complete records delivery outcomes: DONE in batches, retries and
// failures one statement each (they are the rare case).
func (s *Store) Complete(ctx context.Context, outcomes []ferry.Outcome) error {
	return s.CompleteWith(ctx, s.DB, outcomes)
}

// Execer runs statements: a *sql.DB, *sql.Conn or *sql.Tx.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// CompleteWith is Complete on ex, so that a database package can run it
// in a transaction with settings of its own.
func (s *Store) CompleteWith(ctx context.Context, ex Execer, outcomes []ferry.Outcome) error {
	var done, deleted []any
	for _, o := range outcomes {
		switch o.Status {
		case ferry.StatusDone:
			if o.Delete {
				deleted = append(deleted, o.Seq)
			} else {
				done = append(done, o.Seq)
			}
		case ferry.StatusWaiting:
			if _, err := ex.ExecContext(ctx, s.q(`UPDATE {{t}} SET fail_count = ?, available_at = ?, failed_at = {{now}}, last_error = ?
				WHERE id = ? AND status = 'WAITING'`), o.Attempts, s.d.timeArg(o.AvailableAt), truncate(o.Error), o.Seq); err != nil {
				return fmt.Errorf("ferry: record retry of message %d: %w", o.Seq, err)
			}
		case ferry.StatusFailed:
			if _, err := ex.ExecContext(ctx, s.q(`UPDATE {{t}} SET status = 'FAILED', fail_count = ?, failed_at = {{now}}, last_error = ?
				WHERE id = ? AND status = 'WAITING'`), o.Attempts, truncate(o.Error), o.Seq); err != nil {
				return fmt.Errorf("ferry: record failure of message %d: %w", o.Seq, err)
			}
		default:
			return fmt.Errorf("ferry: outcome for message %d has status %q; want DONE, WAITING or FAILED", o.Seq, o.Status)
		}
	}
	chunk := min(1000, s.d.MaxParams)
	for start := 0; start < len(done); start += chunk {
		part := done[start:min(len(done), start+chunk)]
		if _, err := ex.ExecContext(ctx, s.q(`UPDATE {{t}} SET status = 'DONE', processed_at = {{now}}
			WHERE status = 'WAITING' AND id IN (`+placeholders(len(part))+`)`), part...); err != nil {
			return fmt.Errorf("ferry: record %d deliveries: %w", len(part), err)
		}
	}
	for start := 0; start < len(deleted); start += chunk {
		part := deleted[start:min(len(deleted), start+chunk)]
		if _, err := ex.ExecContext(ctx, s.q(`DELETE FROM {{t}} WHERE status = 'WAITING' AND id IN (`+placeholders(len(part))+`)`), part...); err != nil {
			return fmt.Errorf("ferry: delete %d delivered messages: %w", len(part), err)
		}
	}
	return nil
}

// maxErrorLen bounds the stored last_error.
const maxErrorLen = 2000

func truncate(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	cut := maxErrorLen
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}

// WaitingKeys returns WAITING messages of lane with one of keys, up to
// upToSeq, as (key, Seq) pairs in Seq order.
func (s *Store) WaitingKeys(ctx context.Context, lane string, keys []string, upToSeq int64, limit int) ([]ferry.KeySeq, error) {
	var out []ferry.KeySeq
	chunk := max(1, min(1000, s.d.MaxParams-3))
	for start := 0; start < len(keys); start += chunk {
		part := keys[start:min(len(keys), start+chunk)]
		args := []any{lane, upToSeq}
		for _, k := range part {
			args = append(args, k)
		}
		args = append(args, limit-len(out))
		rows, err := s.DB.QueryContext(ctx, s.q(`SELECT msg_key, id FROM {{t}} WHERE lane = ? AND status = 'WAITING' AND id <= ?
			AND msg_key IN (`+placeholders(len(part))+`) AND (available_at <= {{now}} OR fail_count > 0) ORDER BY id LIMIT ?`), args...)
		if err != nil {
			return nil, fmt.Errorf("ferry: waiting messages of %d keys in lane %s: %w", len(part), lane, err)
		}
		for rows.Next() {
			var ks ferry.KeySeq
			if err := rows.Scan(&ks.Key, &ks.Seq); err != nil {
				rows.Close()
				return nil, fmt.Errorf("ferry: waiting messages in lane %s: %w", lane, err)
			}
			out = append(out, ks)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("ferry: waiting messages in lane %s: %w", lane, err)
		}
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}

// HeldKeys returns the keys of lane that have a FAILED message.
func (s *Store) HeldKeys(ctx context.Context, lane string) ([]string, error) {
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT DISTINCT msg_key FROM {{t}} WHERE lane = ? AND status = 'FAILED' AND msg_key IS NOT NULL`), lane)
	if err != nil {
		return nil, fmt.Errorf("ferry: held keys of lane %s: %w", lane, err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("ferry: held keys of lane %s: %w", lane, err)
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// dbNow reads the database's clock.
func (s *Store) dbNow(ctx context.Context) (time.Time, error) {
	var now nullTime
	if err := s.DB.QueryRowContext(ctx, s.q(`SELECT {{now}}`)).Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("ferry: read the database clock: %w", err)
	}
	return now.t, nil
}

// Lease renews, balances and reports node's shard leases.
func (s *Store) Lease(ctx context.Context, node string, ttl time.Duration) (ferry.Lease, error) {
	var l ferry.Lease
	now, err := s.dbNow(ctx)
	if err != nil {
		return l, err
	}
	expires, stale := s.d.timeArg(now.Add(ttl)), s.d.timeArg(now.Add(-ttl))
	if _, err := s.DB.ExecContext(ctx, s.q(s.d.UpsertNode), node, s.d.timeArg(now)); err != nil {
		return l, fmt.Errorf("ferry: lease: record node %s: %w", node, err)
	}
	if err := s.DB.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM {{nodes}} WHERE seen_at > ?`), stale).Scan(&l.Nodes); err != nil {
		return l, fmt.Errorf("ferry: lease: count nodes: %w", err)
	}
	l.Nodes = max(l.Nodes, 1)
	l.Fair = (ferry.Shards + l.Nodes - 1) / l.Nodes
	// A shard whose owner is still this node was never taken over, so
	// renewing it is safe even if it expired a moment ago.
	if _, err := s.DB.ExecContext(ctx, s.q(`UPDATE {{shards}} SET expires_at = ? WHERE owner = ?`), expires, node); err != nil {
		return l, fmt.Errorf("ferry: lease: renew: %w", err)
	}
	held, err := s.ownedShards(ctx, node)
	if err != nil {
		return l, err
	}
	if want := l.Fair - len(held); want > 0 {
		free, err := s.ints(ctx, `SELECT shard FROM {{shards}} WHERE owner IS NULL OR expires_at <= ? ORDER BY shard LIMIT ?`, s.d.timeArg(now), want)
		if err != nil {
			return l, fmt.Errorf("ferry: lease: find free shards: %w", err)
		}
		for _, shard := range free {
			// The condition is checked again under the row lock, so of two
			// nodes racing for a shard only one gets it.
			if _, err := s.DB.ExecContext(ctx, s.q(`UPDATE {{shards}} SET owner = ?, expires_at = ?
				WHERE shard = ? AND (owner IS NULL OR expires_at <= ?)`), node, expires, shard, s.d.timeArg(now)); err != nil {
				return l, fmt.Errorf("ferry: lease: take shard %d: %w", shard, err)
			}
		}
		if len(free) > 0 {
			if held, err = s.ownedShards(ctx, node); err != nil {
				return l, err
			}
		}
	}
	if _, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM {{nodes}} WHERE seen_at < ?`), s.d.timeArg(now.Add(-10*ttl))); err != nil {
		return l, fmt.Errorf("ferry: lease: forget dead nodes: %w", err)
	}
	l.Shards = held
	return l, nil
}

func (s *Store) ownedShards(ctx context.Context, node string) ([]int, error) {
	held, err := s.ints(ctx, `SELECT shard FROM {{shards}} WHERE owner = ? ORDER BY shard`, node)
	if err != nil {
		return nil, fmt.Errorf("ferry: lease: read held shards: %w", err)
	}
	return held, nil
}

func (s *Store) ints(ctx context.Context, query string, args ...any) ([]int, error) {
	rows, err := s.DB.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Release gives up node's leases on shards, or on all and forgets the node.
func (s *Store) Release(ctx context.Context, node string, shards []int) error {
	if shards == nil {
		if _, err := s.DB.ExecContext(ctx, s.q(`UPDATE {{shards}} SET owner = NULL, expires_at = NULL WHERE owner = ?`), node); err != nil {
			return fmt.Errorf("ferry: release shards of %s: %w", node, err)
		}
		if _, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM {{nodes}} WHERE node = ?`), node); err != nil {
			return fmt.Errorf("ferry: forget node %s: %w", node, err)
		}
		return nil
	}
	if len(shards) == 0 {
		return nil
	}
	args := []any{node}
	for _, sh := range shards {
		args = append(args, sh)
	}
	if _, err := s.DB.ExecContext(ctx, s.q(`UPDATE {{shards}} SET owner = NULL, expires_at = NULL WHERE owner = ? AND shard IN (`+placeholders(len(shards))+`)`), args...); err != nil {
		return fmt.Errorf("ferry: release shards %v of %s: %w", shards, node, err)
	}
	return nil
}

// Cleanup deletes up to limit DONE rows processed before cutoff.
func (s *Store) Cleanup(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	query := s.d.CleanupSQL
	if query == "" {
		query = `DELETE FROM {{t}} WHERE id IN (SELECT id FROM {{t}} WHERE status = 'DONE' AND processed_at < ? ORDER BY processed_at LIMIT ?)`
	}
	res, err := s.DB.ExecContext(ctx, s.q(query), s.d.timeArg(cutoff), limit)
	if err != nil {
		return 0, fmt.Errorf("ferry: delete DONE messages: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// statsSQL reads the rows Stats counts, and no others: each arm of the
// OR matches an index (on PostgreSQL and SQLite the partial indexes of
// WAITING, FAILED and DONE rows, on MySQL the one on status and
// processed_at), so the statement costs the backlog plus a minute of
// deliveries however much history the table keeps. Measured on
// PostgreSQL with 2,000,000 rows, nearly all DONE: 20 ms, against 450 ms
// for a GROUP BY over the whole table. The arms are spelled out because
// PostgreSQL matches a partial index to "status = 'WAITING'" but not to
// "status IN (...)".
const statsSQL = `SELECT lane, status, COUNT(*), MIN(CASE WHEN status = 'WAITING' AND available_at <= ? THEN available_at END)
	FROM {{t}}
	WHERE status = 'WAITING' OR status = 'FAILED' OR (status = 'DONE' AND processed_at > ?)
	GROUP BY lane, status ORDER BY lane`

// Stats summarizes each lane with WAITING or FAILED messages, deliveries
// in the last minute, or a pause.
func (s *Store) Stats(ctx context.Context) ([]ferry.LaneStats, error) {
	now, err := s.dbNow(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, s.q(statsSQL), s.d.timeArg(now), s.d.timeArg(now.Add(-time.Minute)))
	if err != nil {
		return nil, fmt.Errorf("ferry: stats: %w", err)
	}
	defer rows.Close()
	var out []ferry.LaneStats
	for rows.Next() {
		var (
			lane, status string
			count        int
			oldest       nullTime
		)
		if err := rows.Scan(&lane, &status, &count, &oldest); err != nil {
			return nil, fmt.Errorf("ferry: stats: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Lane != lane {
			out = append(out, ferry.LaneStats{Lane: lane})
		}
		st := &out[len(out)-1]
		switch ferry.Status(status) {
		case ferry.StatusWaiting:
			st.Waiting, st.OldestDue = count, oldest.t
		case ferry.StatusFailed:
			st.Failed = count
		case ferry.StatusDone:
			st.LastMinute = count
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ferry: stats: %w", err)
	}
	paused, err := s.Paused(ctx)
	if err != nil {
		return nil, fmt.Errorf("ferry: stats: %w", err)
	}
	if len(paused) == 0 {
		return out, nil
	}
	for _, lane := range paused {
		i := slices.IndexFunc(out, func(st ferry.LaneStats) bool { return st.Lane == lane })
		if i < 0 {
			// A paused lane without messages is listed too: whoever paused
			// it sees that it is.
			out = append(out, ferry.LaneStats{Lane: lane})
			i = len(out) - 1
		}
		out[i].Paused = true
	}
	slices.SortStableFunc(out, func(a, b ferry.LaneStats) int { return strings.Compare(a.Lane, b.Lane) })
	return out, nil
}

// Pause adds lane to the paused lanes.
func (s *Store) Pause(ctx context.Context, lane string) error {
	if lane == "" || len(lane) > ferry.MaxNameLen {
		return fmt.Errorf("ferry: pause: lane name %q is not 1 to %d bytes long, as lane names are; name the lane to pause", lane, ferry.MaxNameLen)
	}
	if _, err := s.DB.ExecContext(ctx, s.q(s.d.PauseLane), lane); err != nil {
		return fmt.Errorf("ferry: pause lane %s: %w", lane, err)
	}
	return nil
}

// Resume removes lane from the paused lanes.
func (s *Store) Resume(ctx context.Context, lane string) error {
	if _, err := s.DB.ExecContext(ctx, s.q(`DELETE FROM {{paused}} WHERE lane = ?`), lane); err != nil {
		return fmt.Errorf("ferry: resume lane %s: %w", lane, err)
	}
	return nil
}

// Paused returns the paused lanes in lane order.
func (s *Store) Paused(ctx context.Context) ([]string, error) {
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT lane FROM {{paused}}`))
	if err != nil {
		return nil, fmt.Errorf("ferry: read the paused lanes from %s: %w", s.paused, err)
	}
	defer rows.Close()
	var lanes []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, fmt.Errorf("ferry: read the paused lanes from %s: %w", s.paused, err)
		}
		lanes = append(lanes, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ferry: read the paused lanes from %s: %w", s.paused, err)
	}
	// Sorted here rather than by ORDER BY, so that the order is Go's
	// byte order whatever the column's collation.
	slices.Sort(lanes)
	return lanes, nil
}

// where builds the condition for f, starting with the given status
// condition.
func (s *Store) where(f ferry.Filter, statusCond string, statusArgs ...any) (string, []any) {
	conds := []string{statusCond}
	args := slices.Clone(statusArgs)
	if len(f.Seqs) > 0 {
		conds = append(conds, `id IN (`+placeholders(len(f.Seqs))+`)`)
		for _, v := range f.Seqs {
			args = append(args, v)
		}
	}
	if len(f.IDs) > 0 {
		conds = append(conds, `message_id IN (`+placeholders(len(f.IDs))+`)`)
		for _, v := range f.IDs {
			args = append(args, v)
		}
	}
	for _, c := range []struct{ col, val string }{{"lane", f.Lane}, {"topic", f.Topic}, {"msg_key", f.Key}} {
		if c.val != "" {
			conds = append(conds, c.col+` = ?`)
			args = append(args, c.val)
		}
	}
	return strings.Join(conds, " AND "), args
}

// List returns messages matching f in Seq order.
func (s *Store) List(ctx context.Context, f ferry.Filter) ([]ferry.Record, error) {
	statusCond, statusArgs := "1 = 1", []any(nil)
	if f.Status != "" {
		if !f.Status.Valid() {
			return nil, fmt.Errorf("ferry: list: unknown status %q; use WAITING, DONE, FAILED or EXCLUDED", f.Status)
		}
		statusCond, statusArgs = "status = ?", []any{string(f.Status)}
	}
	cond, args := s.where(f, statusCond, statusArgs...)
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	args = append(args, f.AfterSeq, limit)
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT `+recordColumns+` FROM {{t}} WHERE `+cond+` AND id > ? ORDER BY id LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("ferry: list: %w", err)
	}
	return scanRecords(rows)
}

// Retry moves FAILED messages matching f back to WAITING.
func (s *Store) Retry(ctx context.Context, f ferry.Filter) (int, error) {
	if f.Status != "" && f.Status != ferry.StatusFailed {
		return 0, fmt.Errorf("ferry: retry acts on FAILED messages only, not %s", f.Status)
	}
	cond, args := s.where(f, "status = 'FAILED'")
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE {{t}} SET status = 'WAITING', fail_count = 0, available_at = {{now}} WHERE `+cond), args...)
	if err != nil {
		return 0, fmt.Errorf("ferry: retry: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Exclude moves FAILED (or WAITING) messages matching f to EXCLUDED.
func (s *Store) Exclude(ctx context.Context, f ferry.Filter) (int, error) {
	status := f.Status
	if status == "" {
		status = ferry.StatusFailed
	}
	if status != ferry.StatusFailed && status != ferry.StatusWaiting {
		return 0, fmt.Errorf("ferry: exclude acts on FAILED or WAITING messages, not %s", status)
	}
	cond, args := s.where(f, "status = ?", string(status))
	res, err := s.DB.ExecContext(ctx, s.q(`UPDATE {{t}} SET status = 'EXCLUDED' WHERE `+cond), args...)
	if err != nil {
		return 0, fmt.Errorf("ferry: exclude: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
