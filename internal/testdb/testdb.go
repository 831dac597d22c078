// Package testdb gives tests the real databases on the machine. A test
// that needs PostgreSQL or MariaDB and cannot reach it fails with a message
// saying how to start it; it never skips.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the "mysql" driver
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// Default addresses of the test services (see scripts/test.sh).
const (
	DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMySQL    = "root@tcp(127.0.0.1:3306)/test"
)

// PostgresDSN returns the PostgreSQL test database's DSN:
// $FERRY_TEST_POSTGRES, or DefaultPostgres. It fails t if the server does
// not answer.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := env("FERRY_TEST_POSTGRES", DefaultPostgres)
	ping(t, "pgx", dsn, "PostgreSQL")
	return dsn
}

// MySQLDSN returns the MariaDB/MySQL test database's DSN in the driver's
// form: $FERRY_TEST_MYSQL, or DefaultMySQL. It fails t if the server does
// not answer.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	dsn := env("FERRY_TEST_MYSQL", DefaultMySQL)
	ping(t, "mysql", dsn, "MariaDB")
	return dsn
}

// Table returns a table name no other test uses, so tests can share one
// database and run in parallel.
func Table(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "t_" + hex.EncodeToString(b[:])
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func ping(t testing.TB, driver, dsn, what string) {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
	}
	if err != nil {
		t.Fatalf("%s is not reachable at %s: %v\nstart the test services with: bash scripts/test.sh (it starts what is down), or set FERRY_TEST_%s",
			what, redact(dsn), err, strings.ToUpper(map[string]string{"pgx": "postgres", "mysql": "mysql"}[driver]))
	}
}

// redact hides a password in a DSN.
func redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	if at < 0 {
		return dsn
	}
	userinfo := dsn[:at]
	if i := strings.LastIndex(userinfo, ":"); i >= 0 && !strings.HasSuffix(userinfo[:i], "/") {
		return userinfo[:i] + ":***" + dsn[at:]
	}
	return dsn
}

// DropOutbox removes the outbox table named table from db, with the tables
// and (on PostgreSQL) the trigger functions that Migrate made beside it,
// and the job tables of jobs.Migrate.
func DropOutbox(db *sql.DB, table, dialect string) {
	for _, suffix := range []string{"", "_shards", "_nodes", "_paused", "_polled", "_schema", "_results", "_errors"} {
		db.Exec("DROP TABLE IF EXISTS " + table + suffix)
	}
	if dialect == "postgres" {
		db.Exec("DROP FUNCTION IF EXISTS " + table + "_wake_insert(), " + table + "_wake_retry()")
	}
}
