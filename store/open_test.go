package store_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/internal/testdb"
	"github.com/ferry-dev/ferry/store"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// writeOne opens url, migrates, writes one message and closes the store.
func writeOne(t *testing.T, url string) {
	t.Helper()
	s, err := store.Open(t.Context(), url, sqlstore.Options{})
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	defer s.Close()
	if s.Dialect() != "sqlite" {
		t.Errorf("Open(%q): want a sqlite store, got %s", url, s.Dialect())
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	db := s.(interface{ SQLDB() *sql.DB }).SQLDB()
	tx, err := db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := ferry.NewOutbox(s).Write(t.Context(), tx, ferry.Message{ID: "m1", Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// wantStored checks that the SQLite file at path holds the message
// writeOne wrote.
func wantStored(t *testing.T, url, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		entries, _ := os.ReadDir(filepath.Dir(path))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("Open(%q): want the database at %s, but it is not there (%v); the directory holds %q", url, path, err, names)
		return
	}
	s, err := sqlite.Open(t.Context(), path, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := s.List(t.Context(), ferry.Filter{IDs: []string{"m1"}})
	if err != nil || len(recs) != 1 {
		t.Errorf("Open(%q): want message m1 in %s, got %d records, %v", url, path, len(recs), err)
	}
}

// TestOpenSQLite: every SQLite form opens the file it names.
func TestOpenSQLite(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ url, file string }{
		{"sqlite:" + filepath.Join(dir, "a.db"), "a.db"},
		{"sqlite://" + filepath.Join(dir, "b.db"), "b.db"}, // sqlite:///abs/b.db
		{"SQLite://" + filepath.Join(dir, "c"), "c"},
		{"file:" + filepath.Join(dir, "d.db"), "d.db"},
		{"file:" + filepath.Join(dir, "e.db") + "?mode=rwc", "e.db"},
		{filepath.Join(dir, "f.db"), "f.db"},
		{filepath.Join(dir, "g.sqlite3"), "g.sqlite3"},
	} {
		writeOne(t, c.url)
		wantStored(t, c.url, filepath.Join(dir, c.file))
	}
}

// TestOpenSQLiteRelative: relative paths are relative to the working
// directory, in every form.
func TestOpenSQLiteRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, c := range []struct{ url, file string }{
		{"sqlite:rel-a.db", "rel-a.db"},
		{"sqlite://rel-b.db", "rel-b.db"},
		{"rel-c.db", "rel-c.db"},
		{"file:rel-d.db", "rel-d.db"},
	} {
		writeOne(t, c.url)
		wantStored(t, c.url, filepath.Join(dir, c.file))
	}
}

// TestOpenUnknown: a URL of no known database is an error listing the
// accepted forms, without the password.
func TestOpenUnknown(t *testing.T) {
	for _, url := range []string{"redis://user:s3cret@localhost:6379/0", "ferry", "/var/lib/ferry/outbox", "postgres:/db", "http://x", "", "sqlite:", "sqlite://"} {
		s, err := store.Open(t.Context(), url, sqlstore.Options{})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q): want an error, got a %s store", url, s.Dialect())
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "s3cret") {
			t.Errorf("Open(%q): the error shows the password: %v", url, err)
		}
		if strings.HasPrefix(url, "sqlite:") {
			if !strings.Contains(msg, "names no file") {
				t.Errorf("Open(%q): want an error saying the URL names no file, got %v", url, err)
			}
			continue
		}
		for _, form := range []string{"sqlite:PATH", "sqlite://PATH", "file:PATH", ".db", "postgres://", "postgresql://", "mysql://", "mariadb://"} {
			if !strings.Contains(msg, form) {
				t.Errorf("Open(%q): want an error listing the accepted form %s, got %v", url, form, err)
			}
		}
	}
}

// TestOpenBadTable: every database refuses a table name that is not a
// plain identifier, before connecting.
func TestOpenBadTable(t *testing.T) {
	dir := t.TempDir()
	for _, url := range []string{"sqlite:" + filepath.Join(dir, "x.db"), "postgres://nobody@127.0.0.1:1/none", "mysql://nobody@127.0.0.1:1/none"} {
		for _, table := range []string{"x; drop table y", "1abc", strings.Repeat("t", 60)} {
			s, err := store.Open(t.Context(), url, sqlstore.Options{Table: table})
			if err == nil {
				s.Close()
				t.Errorf("Open(%q) with table %q: want an error, got a store", url, table)
				continue
			}
			if !strings.Contains(err.Error(), "not a plain SQL identifier") {
				t.Errorf("Open(%q) with table %q: want an error saying it is not a plain SQL identifier, got %v", url, table, err)
			}
		}
	}
}

// TestOpenServers: the server URLs reach the test databases.
func TestOpenServers(t *testing.T) {
	pg := testdb.PostgresDSN(t)
	cfg, err := gomysql.ParseDSN(testdb.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	my := "://" + cfg.User
	if cfg.Passwd != "" {
		my += ":" + cfg.Passwd
	}
	my += "@" + cfg.Addr + "/" + cfg.DBName
	for _, c := range []struct{ url, dialect string }{
		{pg, "postgres"},
		{"postgresql" + strings.TrimPrefix(pg, "postgres"), "postgres"},
		{"mysql" + my, "mysql"},
		{"mariadb" + my, "mysql"},
	} {
		s, err := store.Open(t.Context(), c.url, sqlstore.Options{Table: testdb.Table(t)})
		if err != nil {
			t.Errorf("Open(%q): %v", store.Describe(c.url), err)
			continue
		}
		if s.Dialect() != c.dialect {
			t.Errorf("Open(%q): want a %s store, got %s", store.Describe(c.url), c.dialect, s.Dialect())
		}
		s.Close()
	}
}

// TestDescribe: passwords are hidden, everything else is kept.
func TestDescribe(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://ferry:s3cret@db.example:5432/app?sslmode=disable", "postgres://ferry:***@db.example:5432/app?sslmode=disable"},
		{"postgresql://ferry:p%40ss%2Fw@db/app", "postgresql://ferry:***@db/app"},
		{"postgres://:s3cret@db/app", "postgres://:***@db/app"},
		{"postgres://ferry@db/app", "postgres://ferry@db/app"},
		{"postgres://db/app?user=ferry&password=s3cret&sslmode=require", "postgres://db/app?user=ferry&password=***&sslmode=require"},
		{"postgres://db/app?application_name=me@host", "postgres://db/app?application_name=me@host"},
		{"host=db user=ferry password='s3 cret' dbname=app", "host=db user=ferry password=*** dbname=app"},
		{"host=db password=s3cret", "host=db password=***"},
		{"mysql://root:s3cret@127.0.0.1:3306/test", "mysql://root:***@127.0.0.1:3306/test"},
		{"mariadb://root:s3@cret@127.0.0.1/test", "mariadb://root:***@127.0.0.1/test"},
		{"mysql://root:s3cr/et@127.0.0.1/test", "mysql://root:***@127.0.0.1/test"},
		{"mysql://root@127.0.0.1/test", "mysql://root@127.0.0.1/test"},
		{"root:s3cret@tcp(127.0.0.1:3306)/test?parseTime=true", "root:***@tcp(127.0.0.1:3306)/test?parseTime=true"},
		{"root@tcp(127.0.0.1:3306)/test", "root@tcp(127.0.0.1:3306)/test"},
		{"sqlite:/var/lib/ferry/ferry.db", "sqlite:/var/lib/ferry/ferry.db"},
		{"file:/data/us:er@x.db?mode=ro", "file:/data/us:er@x.db?mode=ro"},
		{"ferry.db", "ferry.db"},
		{"", ""},
	} {
		got := store.Describe(c.in)
		if got != c.want {
			t.Errorf("Describe(%q): want %q, got %q", c.in, c.want, got)
		}
		if strings.Contains(got, "s3") || strings.Contains(got, "cret") {
			t.Errorf("Describe(%q) = %q shows the password", c.in, got)
		}
	}
}
