package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// MaxOutput is the most bytes a job's output, or its progress, may take
// as JSON. Outputs are for small results (a count, an id, a URL): store a
// large result elsewhere and put its address in the output.
const MaxOutput = 64 << 10

// OutputTooLargeError is the error of SetOutput or Progress for a value
// whose JSON is larger than MaxOutput.
type OutputTooLargeError struct {
	ID   string // the job's id
	Kind string
	What string // "output" or "progress"
	Size int    // bytes of JSON
}

func (e *OutputTooLargeError) Error() string {
	return fmt.Sprintf("jobs: the %s of %q job %s is %d bytes of JSON, over the limit of %d (jobs.MaxOutput): store a large result elsewhere (a table, an object store) and put its address in the %s",
		e.What, e.Kind, e.ID, e.Size, MaxOutput, e.What)
}

// SetOutput records v, encoded as JSON at once, as the job's output. It
// is stored when the worker returns nil, before the job is marked
// completed, so whoever sees the job completed (Client.Job) finds it. A
// later call replaces the value; a failed attempt's output is dropped;
// an attempt that runs again (at least once) overwrites it. With a
// negative Config.Retention nothing is stored: the job is deleted as soon
// as it completes.
//
// On a Job built by hand, as in a unit test of a worker, or run by
// Workers.Deliver without a Client, SetOutput only checks v.
func (j *Job[A]) SetOutput(v any) error {
	b, err := j.encode("output", v)
	if err != nil || j.run == nil {
		return err
	}
	j.run.mu.Lock()
	j.run.output = b
	j.run.mu.Unlock()
	return nil
}

// Progress stores v, encoded as JSON, as the job's progress at once, so
// that other processes read it (Client.Job) while the job runs. It stays
// after the job ends. Each call is a database write: report every second
// or so, not after every item.
//
// On a Job built by hand, as in a unit test of a worker, or run by
// Workers.Deliver without a Client, Progress only checks v.
func (j *Job[A]) Progress(ctx context.Context, v any) error {
	b, err := j.encode("progress", v)
	if err != nil || j.run == nil || j.run.tables == nil {
		return err
	}
	if err := j.run.tables.store(ctx, j.run.tables.setProgress, j.run.rec, b); err != nil {
		return fmt.Errorf("jobs: store the progress of %q job %s: %w", j.run.rec.Type, j.ID, err)
	}
	return nil
}

// encode returns v as JSON within MaxOutput.
func (j *Job[A]) encode(what string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("jobs: encode the %s of %q job %s as JSON: %w", what, j.Args.Kind(), j.ID, err)
	}
	if len(b) > MaxOutput {
		return nil, &OutputTooLargeError{ID: j.ID, Kind: j.Args.Kind(), What: what, Size: len(b)}
	}
	return b, nil
}

// attempt is what one run of a job's worker shares with the client.
type attempt struct {
	rec    *ferry.Record
	tables *tables // nil when Workers run without a Client

	mu     sync.Mutex
	output []byte // from SetOutput
}

func (a *attempt) result() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.output
}

// Migrate creates the schema jobs need in st: the store's own
// (ferry.Store.Migrate) and, beside its outbox table T, T_results (the
// output and progress of each job) and T_errors (the error of each failed
// attempt). It is idempotent and safe to run from several processes at
// once. Tools without a client run it too: ferry migrate --jobs.
func Migrate(ctx context.Context, st ferry.Store) error {
	t, err := newTables(st)
	if err != nil {
		return err
	}
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	return t.migrate(ctx)
}

// Migrate creates the client's schema: see the package function Migrate.
func (c *Client) Migrate(ctx context.Context) error {
	if err := c.store.Migrate(ctx); err != nil {
		return err
	}
	return c.tables.migrate(ctx)
}

// sqlStore is implemented by ferry's SQL stores (they embed
// *sqlstore.Store): the handle, and the rewriting of a query for the
// store's table names and placeholders.
type sqlStore interface {
	SQLDB() *sql.DB
	Q(query string) string
}

// tables are the jobs' own tables beside a store's outbox table T:
// T_results, the output and progress of each job, and T_errors, the error
// of each failed attempt.
//
// Their rows belong to the job's outbox row (job_seq is its Seq, which is
// never reused), not to its id: a unique job's id can come back once the
// old job is deleted, and the new job must not show the old one's output
// or errors. job_id is there for people reading the tables.
type tables struct {
	db      *sql.DB
	dialect string
	q       func(string) string
	// results and errs are the tables' names.
	results, errs string
	// The statements, rewritten for the store.
	setOutput, setProgress, addError, readResult, readErrors string
}

func newTables(st ferry.Store) (*tables, error) {
	s, ok := st.(sqlStore)
	if !ok {
		return nil, fmt.Errorf("jobs: the %s store %T has no SQL handle; use one of ferry's SQL stores (store/sqlite, store/postgres, store/mysql)", st.Dialect(), st)
	}
	d := st.Dialect()
	if _, ok := schemas[d]; !ok {
		return nil, fmt.Errorf("jobs: no job tables for the %s database; use SQLite, PostgreSQL or MySQL/MariaDB", d)
	}
	t := &tables{db: s.SQLDB(), dialect: d, q: s.Q, results: s.Q("{{t}}_results"), errs: s.Q("{{t}}_errors")}
	upsert := func(col string) string {
		insert := `INSERT INTO {{t}}_results (job_seq, job_id, ` + col + `, updated_at) VALUES (?, ?, ?, {{now}}) `
		if d == "mysql" {
			// VALUES() is deprecated in MySQL 8.0.20 but is the one
			// spelling both MariaDB and MySQL accept.
			return s.Q(insert + `ON DUPLICATE KEY UPDATE ` + col + ` = VALUES(` + col + `), updated_at = VALUES(updated_at)`)
		}
		return s.Q(insert + `ON CONFLICT (job_seq) DO UPDATE SET ` + col + ` = excluded.` + col + `, updated_at = excluded.updated_at`)
	}
	t.setOutput, t.setProgress = upsert("output"), upsert("progress")
	t.addError = s.Q(`INSERT INTO {{t}}_errors (job_seq, job_id, attempt, failed_at, error) VALUES (?, ?, ?, {{now}}, ?)`)
	t.readResult = s.Q(`SELECT output, progress, updated_at FROM {{t}}_results WHERE job_seq = ?`)
	t.readErrors = s.Q(`SELECT attempt, failed_at, error FROM {{t}}_errors WHERE job_seq = ? ORDER BY id DESC LIMIT ?`)
	return t, nil
}

// schemas are the statements that create the job tables, by dialect.
// {{t}} is the outbox table. Every statement is idempotent, and the
// statements take no placeholders.
var schemas = map[string][]string{
	"sqlite": {
		`CREATE TABLE IF NOT EXISTS {{t}}_results (
			job_seq    INTEGER PRIMARY KEY,
			job_id     TEXT NOT NULL,
			output     TEXT,
			progress   TEXT,
			updated_at TEXT NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS {{t}}_errors (
			id        INTEGER PRIMARY KEY,
			job_seq   INTEGER NOT NULL,
			job_id    TEXT    NOT NULL,
			attempt   INTEGER NOT NULL,
			failed_at TEXT    NOT NULL,
			error     TEXT    NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS {{t}}_errors_job ON {{t}}_errors (job_seq)`,
	},
	"postgres": {
		// TEXT rather than JSONB: the output reads back byte for byte as
		// the worker encoded it.
		`CREATE TABLE IF NOT EXISTS {{t}}_results (
			job_seq    BIGINT PRIMARY KEY,
			job_id     TEXT NOT NULL,
			output     TEXT,
			progress   TEXT,
			updated_at TIMESTAMPTZ NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS {{t}}_errors (
			id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			job_seq   BIGINT      NOT NULL,
			job_id    TEXT        NOT NULL,
			attempt   INTEGER     NOT NULL,
			failed_at TIMESTAMPTZ NOT NULL,
			error     TEXT        NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS {{t}}_errors_job ON {{t}}_errors (job_seq)`,
	},
	"mysql": {
		// As the outbox: ids as bytes, text as utf8mb4_bin, times as UTC
		// DATETIME, indexes inside CREATE TABLE (MySQL has no CREATE
		// INDEX IF NOT EXISTS). MEDIUMTEXT: TEXT holds 65,535 bytes,
		// one less than MaxOutput.
		`CREATE TABLE IF NOT EXISTS {{t}}_results (
			job_seq    BIGINT         NOT NULL PRIMARY KEY,
			job_id     VARBINARY(200) NOT NULL,
			output     MEDIUMTEXT     NULL,
			progress   MEDIUMTEXT     NULL,
			updated_at DATETIME(6)    NOT NULL
		) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin`,
		`CREATE TABLE IF NOT EXISTS {{t}}_errors (
			id        BIGINT         NOT NULL AUTO_INCREMENT,
			job_seq   BIGINT         NOT NULL,
			job_id    VARBINARY(200) NOT NULL,
			attempt   INT            NOT NULL,
			failed_at DATETIME(6)    NOT NULL,
			error     TEXT           NOT NULL,
			PRIMARY KEY (id),
			KEY ix_job (job_seq)
		) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin`,
	},
}

// migrate creates the job tables.
func (t *tables) migrate(ctx context.Context) error {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("jobs: migrate: connect: %w", err)
	}
	defer conn.Close()
	// Two processes creating the same table at once: MariaDB's metadata
	// locks make CREATE TABLE IF NOT EXISTS safe as it is; SQLite needs
	// its write lock taken first, PostgreSQL a lock of its own (without
	// one, the loser of the race fails on a duplicate catalog row).
	switch t.dialect {
	case "sqlite":
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return fmt.Errorf("jobs: migrate: take the write lock: %w", err)
		}
		if err := t.create(ctx, conn); err != nil {
			conn.ExecContext(context.Background(), "ROLLBACK")
			return err
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("jobs: migrate: %w", err)
		}
		return nil
	case "postgres":
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("jobs: migrate: %w", err)
		}
		defer tx.Rollback()
		h := fnv.New64a()
		h.Write([]byte("ferry jobs migrate " + strings.ToLower(t.q("{{t}}"))))
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
			return fmt.Errorf("jobs: migrate: take the migration lock: %w", err)
		}
		if err := t.create(ctx, tx); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("jobs: migrate: %w", err)
		}
		return nil
	default:
		return t.create(ctx, conn)
	}
}

// create runs the dialect's schema statements on ex.
func (t *tables) create(ctx context.Context, ex sqlstore.Execer) error {
	for _, stmt := range schemas[t.dialect] {
		if _, err := ex.ExecContext(ctx, t.q(stmt)); err != nil {
			return fmt.Errorf("jobs: migrate: %w\nstatement: %s", err, t.q(stmt))
		}
	}
	return nil
}

// store writes data with one of the upserts (setOutput, setProgress) for
// the job of rec.
func (t *tables) store(ctx context.Context, upsert string, rec *ferry.Record, data []byte) error {
	_, err := t.db.ExecContext(ctx, upsert, rec.Seq, rec.ID, string(data))
	return err
}

// check reports whether the job tables can be read.
func (t *tables) check(ctx context.Context) error {
	for _, name := range []string{t.results, t.errs} {
		rows, err := t.db.QueryContext(ctx, `SELECT 1 FROM `+name+` WHERE 1 = 0`)
		if err != nil {
			return fmt.Errorf("read table %s: %w", name, err)
		}
		rows.Close()
	}
	return nil
}

// Sweeping: outputs, progress and errors go when their job does, which
// the relay deletes Retention after it completes (or a person deletes).
// Rather than hook into those deletes, every client sweeps the job tables
// a page at a time, deleting the rows whose outbox row is gone. The pages
// follow job_seq, so each pass costs a bounded number of primary-key
// lookups however large the tables are, and several clients sweeping at
// once only repeat each other's harmless deletes.
const (
	sweepEvery = time.Minute
	sweepPage  = 1000
	// sweepPages bounds the pages of one table swept per tick, so a large
	// backlog drains over a few ticks rather than in one long burst.
	sweepPages = 10
)

// sweep deletes the rows of jobs that no longer exist, until ctx ends.
func (c *Client) sweep(ctx context.Context) {
	if err := c.tables.check(ctx); err != nil && ctx.Err() == nil {
		c.log.Error("jobs: the job tables cannot be read: outputs, progress and error history will not be stored until they exist; create them with Client.Migrate or ferry migrate --jobs", "err", err)
	}
	var cursors [2]int64
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, table := range []string{c.tables.results, c.tables.errs} {
			for range sweepPages {
				next, err := c.tables.sweepPage(ctx, table, cursors[i])
				if err != nil {
					if ctx.Err() == nil {
						c.log.Warn("jobs: delete the outputs and errors of deleted jobs; trying again later", "table", table, "err", err)
					}
					break
				}
				cursors[i] = next
				if next == 0 {
					break // the end of the table: start again next tick
				}
			}
		}
	}
}

// sweepPage deletes the rows of deleted jobs among the page of table
// after job_seq cursor, and returns the cursor of the next page, 0 at the
// end of the table.
func (t *tables) sweepPage(ctx context.Context, table string, cursor int64) (int64, error) {
	rows, err := t.db.QueryContext(ctx, t.q(`SELECT DISTINCT job_seq FROM `+table+` WHERE job_seq > ? ORDER BY job_seq LIMIT ?`), cursor, sweepPage)
	if err != nil {
		return 0, err
	}
	var seqs []any
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return 0, err
		}
		seqs = append(seqs, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(seqs)), ", ")
	if _, err := t.db.ExecContext(ctx, t.q(`DELETE FROM `+table+` WHERE job_seq IN (`+marks+`)
		AND NOT EXISTS (SELECT 1 FROM {{t}} o WHERE o.id = `+table+`.job_seq)`), seqs...); err != nil {
		return 0, err
	}
	if len(seqs) < sweepPage {
		return 0, nil
	}
	return seqs[len(seqs)-1].(int64), nil
}

// dbTime scans the time representations of ferry's databases: time.Time
// (PostgreSQL, MariaDB) or UTC text (SQLite).
type dbTime struct{ t time.Time }

func (d *dbTime) Scan(v any) error {
	var s string
	switch v := v.(type) {
	case nil:
		d.t = time.Time{}
		return nil
	case time.Time:
		d.t = v.UTC()
		return nil
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("jobs: cannot read a time from %T", v)
	}
	for _, layout := range []string{sqlstore.TimeLayout, "2006-01-02 15:04:05.999999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			d.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("jobs: cannot read a time from %q", s)
}
