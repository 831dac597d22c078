// Package mysql is ferry's store for MariaDB and MySQL, through
// go-sql-driver/mysql. It is tested on MariaDB 10.11; the schema is
// written for MariaDB 10.2 or later and MySQL 8.0.16 or later (expression
// defaults, enforced CHECK constraints, stored generated columns).
//
// # Order per key
//
// MariaDB and MySQL take an AUTO_INCREMENT id when a row is inserted, not
// when its transaction commits, and nothing in the table records commit
// order. The relay delivers a key's messages in id order among those it
// has read. Transactions that do not overlap (one commits before the other
// inserts) are therefore delivered in commit order. When two transactions
// writing the same key overlap, the one that commits first may hold the
// larger id, and their messages may be delivered in either order: id order
// if both have committed when the relay reads them, commit order if it
// reads the larger id before the smaller one commits. A writer that needs
// strict commit order for a key must serialize its transactions on that
// key, for example by locking the business row first (SELECT ... FOR
// UPDATE) and writing the message after: the second writer then waits for
// the first to commit before it takes its id.
//
// # Connections
//
// Open accepts the driver's DSN (root@tcp(127.0.0.1:3306)/test) or a URL
// (mysql://user:pass@host:3306/db?x=y, mariadb://...). Whatever it says,
// the store's own connections use UTC, utf8mb4 and strict SQL mode.
// Outbox.Write runs on the caller's transaction, whose session settings
// ferry does not control, so the schema and the statements do not depend
// on them: times are computed with UTC_TIMESTAMP and sent as UTC text,
// message ids and keys are stored as bytes, and the Outbox checks lengths
// before writing, so a lax sql_mode cannot truncate a value.
//
// MariaDB has no notifications a relay could wait on, so a relay on it
// polls.
package mysql

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/go-sql-driver/mysql"
)

// Store is the MariaDB/MySQL store.
type Store struct {
	*sqlstore.Store
}

var _ ferry.Store = (*Store)(nil)

// Pool defaults; Options.MaxConns overrides defaultMaxConns.
const (
	defaultMaxConns = 10
	// connMaxLifetime stays well under the server's default wait_timeout
	// (8 h) and lets the pool follow a failover to a new primary.
	connMaxLifetime = 30 * time.Minute
	dialTimeout     = 10 * time.Second
)

// sqlMode is the session sql_mode of the store's connections. Strict mode
// makes an oversized value an error instead of a silent truncation, and
// NO_ENGINE_SUBSTITUTION makes the schema fail rather than fall back to a
// non-transactional engine. It replaces the server's mode, so modes that
// change how ferry's SQL parses (ANSI_QUOTES, PIPES_AS_CONCAT) are off.
const sqlMode = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

// Open connects to the database named by dsn, in the driver's form
// (user:pass@tcp(host:3306)/db?param=value) or as a mysql:// or mariadb://
// URL, and checks that it answers. It does not create the schema: call
// Migrate. Errors name the server and user but never the password.
func Open(ctx context.Context, dsn string, opts sqlstore.Options) (*Store, error) {
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	table := opts.TableName()
	if err := sqlstore.CheckTable(table); err != nil {
		return nil, err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("ferry: mysql: configure connection to %s: %w", describe(cfg), err)
	}
	db := sql.OpenDB(connector)
	maxConns := opts.MaxConns
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(connMaxLifetime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ferry: mysql: connect to %s: %w", describe(cfg), err)
	}
	s, err := sqlstore.New(db, dialectFor(table), table)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{Store: s}, nil
}

// parseDSN parses dsn in the driver's form or as a mysql:// or mariadb://
// URL and returns the driver's configuration with what ferry relies on
// forced: times parsed as UTC, a UTC session time zone, utf8mb4, strict
// SQL mode and client-side parameter interpolation (one round trip per
// statement instead of prepare, execute and close).
func parseDSN(dsn string) (*mysql.Config, error) {
	if dsn == "" {
		return nil, errors.New("ferry: mysql: empty DSN; give user@tcp(host:3306)/db or mysql://user@host:3306/db")
	}
	var (
		cfg *mysql.Config
		err error
	)
	if scheme, ok := urlScheme(dsn); ok {
		cfg, err = parseURL(scheme, dsn)
	} else {
		cfg, err = mysql.ParseDSN(dsn)
		if err != nil {
			// The driver's messages name the problem, not the DSN, so
			// they cannot reveal the password.
			err = fmt.Errorf("ferry: mysql: parse DSN: %w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if cfg.DBName == "" {
		return nil, fmt.Errorf("ferry: mysql: the DSN for %s names no database; add it after the address, as in %s", describe(cfg), "user@tcp(host:3306)/db")
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.InterpolateParams = true
	if cfg.Timeout == 0 {
		cfg.Timeout = dialTimeout
	}
	if err := cfg.Apply(mysql.Charset("utf8mb4", "")); err != nil {
		return nil, fmt.Errorf("ferry: mysql: %w", err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	// The driver sends Params as one SET statement when it connects.
	cfg.Params["time_zone"] = "'+00:00'"
	cfg.Params["sql_mode"] = "'" + sqlMode + "'"
	return cfg, nil
}

// urlScheme returns the scheme of dsn if it is a URL. A driver DSN can
// contain "://" too, in its password, so a URL needs a plain scheme before
// it and must not have the driver's (address)/ part.
func urlScheme(dsn string) (string, bool) {
	scheme, _, ok := strings.Cut(dsn, "://")
	if !ok || scheme == "" || strings.Contains(dsn, ")/") {
		return "", false
	}
	for i, c := range scheme {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", false
		}
	}
	return scheme, true
}

// parseURL converts a mysql:// or mariadb:// URL to the driver's form and
// parses that, so query parameters mean what they mean in a DSN.
func parseURL(scheme, dsn string) (*mysql.Config, error) {
	if s := strings.ToLower(scheme); s != "mysql" && s != "mariadb" {
		return nil, fmt.Errorf("ferry: mysql: unsupported URL scheme %q; use mysql:// or mariadb://, or the driver's form user@tcp(host:3306)/db", scheme)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// A *url.Error repeats the whole URL, password included; keep only
		// its reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("ferry: mysql: parse %s:// URL: %w", scheme, err)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("ferry: mysql: the %s:// URL names no host; write %s://user:pass@host:3306/db", scheme, scheme)
	}
	c := mysql.NewConfig()
	if u.User != nil {
		c.User = u.User.Username()
		c.Passwd, _ = u.User.Password()
	}
	c.Net = "tcp"
	port := u.Port()
	if port == "" {
		port = "3306"
	}
	c.Addr = net.JoinHostPort(u.Hostname(), port)
	c.DBName = strings.TrimPrefix(u.Path, "/")
	// Query().Encode escapes '/' in values, which the driver's parser
	// would otherwise take for the one before the database name.
	d := c.FormatDSN()
	if q := u.Query(); len(q) > 0 {
		sep := "?"
		if strings.Contains(d[strings.LastIndex(d, "/"):], "?") {
			sep = "&"
		}
		d += sep + q.Encode()
	}
	cfg, err := mysql.ParseDSN(d)
	if err != nil {
		return nil, fmt.Errorf("ferry: mysql: parse %s:// URL: %w", scheme, err)
	}
	return cfg, nil
}

// describe names the server, user and database of cfg without the
// password, for error messages.
func describe(cfg *mysql.Config) string {
	user := cfg.User
	if user == "" {
		user = "(no user)"
	}
	return fmt.Sprintf("%s@%s(%s)/%s", user, cfg.Net, cfg.Addr, cfg.DBName)
}

// maxStatementBytes bounds the message bytes in one INSERT. The driver
// builds the whole statement in memory and the server refuses statements
// larger than max_allowed_packet (16 MiB by default on MariaDB), closing
// the connection and with it the caller's transaction. Escaping can double
// binary payloads, so 4 MiB of messages stays below that.
const maxStatementBytes = 4 << 20

// Write inserts msgs in tx. It splits large batches so that no statement
// grows past max_allowed_packet; the shared store further limits each
// statement to 500 rows. A message larger than the server's
// max_allowed_packet fails with the server's error: raise the setting or
// lower the outbox's WithMaxPayload.
func (s *Store) Write(ctx context.Context, tx *sql.Tx, msgs []ferry.Message) error {
	start, size := 0, 0
	for i := range msgs {
		n := messageBytes(&msgs[i])
		if i > start && size+n > maxStatementBytes {
			if err := s.Store.Write(ctx, tx, msgs[start:i]); err != nil {
				return err
			}
			start, size = i, 0
		}
		size += n
	}
	return s.Store.Write(ctx, tx, msgs[start:])
}

// messageBytes estimates m's share of an INSERT statement.
func messageBytes(m *ferry.Message) int {
	n := len(m.ID) + len(m.Lane) + len(m.Topic) + len(m.Key) + len(m.Type) + len(m.Payload) + 128
	for k, v := range m.Headers {
		n += len(k) + len(v) + 8
	}
	return n
}

// lockName returns the GET_LOCK name that serializes migrations of table
// in database db. Lock names are server-wide, so the database is part of
// it; MySQL refuses names longer than 64 characters, so long ones are
// hashed.
func lockName(db, table string) string {
	name := "ferry_migrate:" + db + "." + table
	if len(name) <= 64 {
		return name
	}
	sum := sha256.Sum256([]byte(db + "." + table))
	return "ferry_migrate:" + hex.EncodeToString(sum[:20])
}

// migrationLockWait is how long Migrate waits for another process's
// migration unless ctx ends sooner.
const migrationLockWait = time.Minute

// lockMigrations takes the server-wide named lock for table on conn. The
// lock belongs to the session, so it must be released on the same conn,
// and it vanishes if the connection dies.
func lockMigrations(ctx context.Context, conn *sql.Conn, table string) (func(), error) {
	var db sql.NullString
	if err := conn.QueryRowContext(ctx, `SELECT DATABASE()`).Scan(&db); err != nil {
		return nil, fmt.Errorf("read the current database: %w", err)
	}
	name := lockName(db.String, table)
	wait := migrationLockWait
	if deadline, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(deadline))
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, name, max(1, int(wait.Seconds()))).Scan(&got); err != nil {
		return nil, fmt.Errorf("GET_LOCK(%q): %w", name, err)
	}
	if got.Int64 != 1 {
		return nil, fmt.Errorf("GET_LOCK(%q): another process held it for %s; is a migration stuck? SELECT IS_USED_LOCK('%s') names its connection", name, wait.Round(time.Second), name)
	}
	return func() {
		// Background: the lock must go even if ctx has ended.
		conn.ExecContext(context.Background(), `DO RELEASE_LOCK(?)`, name)
	}, nil
}
