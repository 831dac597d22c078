package sqlite_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
	"github.com/ferry-dev/ferry/store/storetest"
)

// TestConformance runs the store suite on a database file per test.
func TestConformance(t *testing.T) {
	var dirs sync.Map // *testing.T -> its directory, so both instances of a test share a file
	storetest.Run(t, func(t *testing.T, table string) ferry.Store {
		dir, _ := dirs.LoadOrStore(t, t.TempDir())
		s, err := sqlite.Open(t.Context(), filepath.Join(dir.(string), "ferry.db"), sqlstore.Options{Table: table})
		if err != nil {
			t.Fatalf("sqlite.Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		return s
	})
}

// TestBadTableName: names that are not plain identifiers are refused
// before anything is created.
func TestBadTableName(t *testing.T) {
	for _, name := range []string{"x; drop table y", "1abc", strings.Repeat("a", 60), "a-b", `a"b`, "ferry outbox", "tab\tle"} {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"), sqlstore.Options{Table: name})
		if err == nil {
			s.Close()
			t.Errorf("Open with table %q: want an error, got a store", name)
			continue
		}
		if !strings.Contains(err.Error(), "not a plain SQL identifier") {
			t.Errorf("Open with table %q: want an error saying it is not a plain SQL identifier, got %v", name, err)
		}
	}
	for _, name := range []string{"", "ferry_outbox", "_x", "Outbox2", strings.Repeat("a", 48)} {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ferry.db"), sqlstore.Options{Table: name})
		if err != nil {
			t.Errorf("Open with table %q: want a store, got %v", name, err)
			continue
		}
		if err := s.Migrate(t.Context()); err != nil {
			t.Errorf("Migrate with table %q: %v", name, err)
		}
		s.Close()
	}
}

// TestEmptyPath: an empty path is an error that says what to give.
func TestEmptyPath(t *testing.T) {
	if s, err := sqlite.Open(t.Context(), "", sqlstore.Options{}); err == nil {
		s.Close()
		t.Fatal("Open with an empty path: want an error, got a store")
	}
}
