package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// dbFlags are the flags of every command that needs the database. The
// database is, in order of precedence: --db; FERRY_DATABASE_URL; the
// config file's database.url (--config).
type dbFlags struct {
	url    string
	table  string
	config string
	create bool // see database.create
	jobs   bool // see database.jobs
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.url, "db", "", "the outbox's database `URL`: sqlite:FILE, postgres://..., mysql://... (default $"+config.EnvDatabaseURL+", or the config's)")
	fs.StringVar(&d.table, "table", "", "the outbox table's `name` (default the config's, or "+sqlstore.DefaultTable+")")
	fs.StringVar(&d.config, "config", "", "the relay config `FILE`, whose database.url names the database")
}

// database is a resolved database to open.
type database struct {
	// create lets opening a SQLite database create its file: only for
	// the commands that create the schema. The others refuse a file
	// that does not exist rather than leave an empty one behind a typo.
	create bool
	// jobs is true for the job commands, whose advice is to create the
	// job tables too (ferry migrate --jobs).
	jobs bool
	url  string
	from string // where url came from, for messages: "--db", "FERRY_DATABASE_URL", a file name
	opts sqlstore.Options
	// flags are the command-line flags that select this database again,
	// for the commands messages suggest.
	flags string
}

// String describes the database with any password hidden.
func (db database) String() string {
	return fmt.Sprintf("%s (table %s)", store.Describe(db.url), db.opts.TableName())
}

// origin says where the URL came from, if not from --db.
func (db database) origin() string {
	if db.from == "" || db.from == "--db" {
		return ""
	}
	return " (from " + db.from + ")"
}

// resolve picks the database and loads the config if --config was given.
func (d *dbFlags) resolve() (database, *config.Config, error) {
	var (
		db  database
		cfg *config.Config
	)
	if d.config != "" {
		var err error
		if cfg, err = loadConfig(d.config); err != nil {
			return db, nil, err
		}
		db = database{url: cfg.Database.URL, from: d.config, opts: cfg.Database.StoreOptions(), flags: "--config " + quoteArg(d.config)}
		if cfg.Database.FromEnv {
			db.from = config.EnvDatabaseURL
		}
	}
	switch {
	case d.url != "":
		db.url, db.from, db.flags = d.url, "--db", "--db "+quoteArg(d.url)
		if store.Describe(d.url) != d.url { // never repeat a password
			db.flags = "--db URL"
		}
	case db.url != "":
	case os.Getenv(config.EnvDatabaseURL) != "":
		db.url, db.from = os.Getenv(config.EnvDatabaseURL), config.EnvDatabaseURL
	default:
		return db, nil, usagef("which database? give --db URL (such as --db sqlite:ferry.db), or --config FILE, or set %s", config.EnvDatabaseURL)
	}
	if d.table != "" {
		if err := sqlstore.CheckTable(d.table); err != nil {
			return db, nil, usagef("--table: %s", strings.TrimPrefix(err.Error(), "ferry: "))
		}
		db.opts.Table = d.table
		db.flags += " --table " + d.table
	}
	db.create, db.jobs = d.create, d.jobs
	return db, cfg, nil
}

// open opens the database. If wait is positive and the database cannot be
// reached, it tries again with growing pauses for up to wait, logging each
// failure to log (which may be nil when wait is 0).
// openNow resolves the database and opens its store at once, for the
// commands that act and exit. The caller closes the store.
func (d *dbFlags) openNow(ctx context.Context) (database, *config.Config, ferry.Store, error) {
	db, cfg, err := d.resolve()
	if err != nil {
		return db, nil, nil, err
	}
	st, err := db.open(ctx, 0, nil)
	return db, cfg, st, err
}

func (db database) open(ctx context.Context, wait time.Duration, log *slog.Logger) (ferry.Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path, ok := store.SQLiteFile(db.url); ok && !db.create {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, &noSchemaError{fmt.Sprintf("the SQLite database %s%s does not exist: check the path, or create the outbox with\n  %s", path, db.origin(), db.migrateCommand())}
		}
	}
	deadline := time.Now().Add(wait)
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		st, err := store.Open(ctx, db.url, db.opts)
		if err == nil {
			return st, nil
		}
		left := time.Until(deadline)
		if wait <= 0 || !unreachable(err) {
			return nil, fmt.Errorf("open the database %s%s: %w", db, db.origin(), err)
		}
		if left <= 0 || ctx.Err() != nil {
			return nil, fmt.Errorf("the database %s%s is still not reachable after %v (%d attempts): %w\ncheck that it is running and that the URL is right, or wait longer with --wait",
				db, db.origin(), wait, attempt, err)
		}
		pause = min(pause, left)
		log.Warn("database not reachable; trying again", "database", db.String(), "attempt", attempt, "retry_in", pause, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open the database %s: %w", db, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// unreachable reports whether err looks like a database that is down or
// starting, rather than a wrong URL or password, which waiting cannot fix.
func unreachable(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{
		"connection refused", "connection reset", "no such host", "i/o timeout", "broken pipe",
		"the database system is starting up", "the database system is shutting down", // PostgreSQL 57P03
		"too many connections", "server is starting", "bad connection", "invalid connection",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// checkSchema returns an error telling the user to run ferry migrate if the
// outbox table does not exist.
func (db database) checkSchema(ctx context.Context, st ferry.Store) error {
	_, err := st.List(ctx, ferry.Filter{Limit: 1})
	return db.explain(err)
}

// checkVersion returns a *noSchemaError telling the user to run ferry
// migrate if st's schema is older than this ferry's, as it is after an
// upgrade of ferry. Stores that keep no version pass.
func (db database) checkVersion(ctx context.Context, st ferry.Store) error {
	v, ok := st.(interface {
		SchemaVersion(ctx context.Context) (have, want int, err error)
	})
	if !ok {
		return nil
	}
	have, want, err := v.SchemaVersion(ctx)
	if err != nil {
		return db.explain(err)
	}
	if have < want {
		return &noSchemaError{fmt.Sprintf("the outbox schema in %s is version %d; this ferry needs version %d: upgrade it with\n  %s\n(safe while relays of the older ferry run)",
			store.Describe(db.url), have, want, db.migrateCommand())}
	}
	return nil
}

// migrateCommand is the command that creates the schema db's command
// needs.
func (db database) migrateCommand() string {
	cmd := "ferry migrate"
	if db.jobs {
		cmd += " --jobs"
	}
	return cmd + prefixSpace(db.flags)
}

// noSchemaError says that the outbox's schema is not there (its table,
// or the SQLite file itself) and how to create it.
type noSchemaError struct{ msg string }

func (e *noSchemaError) Error() string { return e.msg }

// explain turns a missing outbox table into advice (a *noSchemaError
// wrapping err); other errors pass through.
func (db database) explain(err error) error {
	if err == nil || !missingTable(err) {
		return err
	}
	if paused := db.opts.TableName() + "_paused"; strings.Contains(strings.ToLower(err.Error()), strings.ToLower(paused)) {
		// The schema predates pausing lanes.
		return &noSchemaError{fmt.Sprintf("the table %s, where paused lanes are kept, does not exist in %s: create or upgrade the schema with\n  ferry migrate%s\n(%v)",
			paused, store.Describe(db.url), prefixSpace(db.flags), err)}
	}
	return &noSchemaError{fmt.Sprintf("the outbox table %s does not exist in %s: create it with\n  ferry migrate%s\n(%v)",
		db.opts.TableName(), store.Describe(db.url), prefixSpace(db.flags), err)}
}

func prefixSpace(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

// missingTable reports whether err says a table does not exist, in the
// words of SQLite, PostgreSQL (42P01) or MySQL/MariaDB (1146).
func missingTable(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "no such table") ||
		strings.Contains(msg, "sqlstate 42p01") ||
		(strings.Contains(msg, "relation") && strings.Contains(msg, "does not exist")) ||
		strings.Contains(msg, "error 1146") ||
		(strings.Contains(msg, "table") && strings.Contains(msg, "doesn't exist"))
}

// quoteArg quotes s for a shell if it needs it.
func quoteArg(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@=,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
