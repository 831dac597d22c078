// Package store opens ferry's store for a database named by one URL, the
// form configuration files and the ferry binary use:
//
//	sqlite:ferry.db, sqlite:///var/lib/ferry/outbox.db, file:ferry.db?mode=rwc, ferry.db
//	postgres://ferry@db.example:5432/app?sslmode=require   (or postgresql://)
//	mysql://ferry@db.example:3306/app                      (or mariadb://)
//
// Programs that know their database can call store/sqlite, store/postgres
// or store/mysql directly instead.
package store

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/ferry-dev/ferry"
	"github.com/ferry-dev/ferry/store/mysql"
	"github.com/ferry-dev/ferry/store/postgres"
	"github.com/ferry-dev/ferry/store/sqlite"
	"github.com/ferry-dev/ferry/store/sqlstore"
)

// Forms lists the accepted URL forms, for error messages and help texts.
const Forms = "sqlite:PATH, sqlite://PATH, file:PATH or a file name ending in .db, .sqlite or .sqlite3 (SQLite); " +
	"postgres://... or postgresql://... (PostgreSQL); mysql://... or mariadb://... (MySQL/MariaDB)"

// Open opens the store for the database url names (see the package
// documentation for the forms). Like the database packages' Open, it
// connects but does not create the schema: call Migrate.
func Open(ctx context.Context, url string, opts sqlstore.Options) (ferry.Store, error) {
	kind, target, err := classify(url)
	if err != nil {
		return nil, err
	}
	// Each branch returns a nil interface on error, never a typed nil.
	switch kind {
	case "sqlite":
		s, err := sqlite.Open(ctx, target, opts)
		if err != nil {
			return nil, err
		}
		return s, nil
	case "postgres":
		s, err := postgres.Open(ctx, target, opts)
		if err != nil {
			return nil, err
		}
		return s, nil
	default: // "mysql"
		s, err := mysql.Open(ctx, target, opts)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// classify returns the database url names ("sqlite", "postgres" or
// "mysql") and what to pass to that package's Open.
func classify(raw string) (kind, target string, err error) {
	kind, target = kindOf(raw)
	switch {
	case kind == "" && strings.TrimSpace(raw) == "":
		return "", "", fmt.Errorf("ferry: no database URL given; use one of: %s", Forms)
	case kind == "":
		return "", "", fmt.Errorf("ferry: cannot tell which database %q is; use one of: %s", Describe(raw), Forms)
	case kind == "sqlite" && strings.TrimPrefix(target, "file:") == "":
		return "", "", fmt.Errorf("ferry: the SQLite URL %q names no file; write for example sqlite:ferry.db or sqlite:///var/lib/ferry/ferry.db", raw)
	}
	return kind, target, nil
}

// kindOf is classify without the errors: kind is empty if raw is of no
// known form.
func kindOf(raw string) (kind, target string) {
	lower := strings.ToLower(raw)
	has := func(prefix string) bool { return strings.HasPrefix(lower, prefix) }
	switch {
	case has("postgres://"), has("postgresql://"):
		return "postgres", raw
	case has("mysql://"), has("mariadb://"):
		return "mysql", raw
	case has("sqlite://"):
		return "sqlite", raw[len("sqlite://"):]
	case has("sqlite:"):
		return "sqlite", raw[len("sqlite:"):]
	case has("file:"):
		return "sqlite", raw // store/sqlite takes file: URIs as they are
	case isSQLiteFile(lower):
		return "sqlite", raw
	}
	return "", ""
}

// SQLiteFile returns the file a SQLite URL names, so that a program can
// tell a database that exists from one that opening would create; ok is
// false for other databases and for in-memory SQLite.
func SQLiteFile(rawURL string) (path string, ok bool) {
	kind, target := kindOf(rawURL)
	if kind != "sqlite" {
		return "", false
	}
	path, query, _ := strings.Cut(strings.TrimPrefix(target, "file:"), "?")
	if path == "" || path == ":memory:" || strings.Contains(query, "mode=memory") {
		return "", false
	}
	return path, true
}

// isSQLiteFile reports whether s, without a query, is a file name with a
// SQLite extension.
func isSQLiteFile(s string) bool {
	s, _, _ = strings.Cut(s, "?")
	return strings.HasSuffix(s, ".db") || strings.HasSuffix(s, ".sqlite") || strings.HasSuffix(s, ".sqlite3")
}

// passwordParam matches password=... in a URL query or a key=value DSN
// (and sslpassword=... and the like).
var passwordParam = regexp.MustCompile(`(?i)(\b[a-z_]*password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)`)

// Describe returns url with any password replaced by ***, for logs and
// error messages. It hides the password of a URL's user information
// (scheme://user:password@host), of the MySQL driver's form
// (user:password@tcp(host)/db) and of password=... parameters. When it
// cannot tell where a password ends it hides more rather than less.
func Describe(rawURL string) string {
	if kind, _ := kindOf(rawURL); kind == "sqlite" {
		return rawURL // a file name: no password, and '@' or ':' may be part of it
	}
	s := passwordParam.ReplaceAllString(rawURL, "${1}***")
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
		if u, err := url.Parse(s); err == nil && !strings.Contains(u.Path+u.Fragment, "@") {
			if u.User == nil {
				return s
			}
			if _, ok := u.User.Password(); !ok {
				return s
			}
			// The user information ends at the last '@' of the authority,
			// which ends at the first '/', '?' or '#'.
			authority := rest
			if j := strings.IndexAny(rest, "/?#"); j >= 0 {
				authority = rest[:j]
			}
			at := strings.LastIndex(authority, "@")
			user, _, _ := strings.Cut(rest[:at], ":")
			return prefix + user + ":***" + rest[at:]
		}
	}
	// Not a well-formed URL, or the driver's user:password@tcp(...)/db form:
	// everything between the first ':' and the last '@' may be password.
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, ok := strings.Cut(rest[:at], ":")
	if !ok {
		return s
	}
	return prefix + user + ":***" + rest[at:]
}
