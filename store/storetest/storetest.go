// Package storetest gives each test a fresh, migrated authd database on the
// real PostgreSQL server, cloned from a template that Main migrates once
// per test binary. There is no fallback: no PostgreSQL means failing tests.
//
// The server is $AUTHD_TEST_DATABASE_URL; every database and role made
// here is named $AUTHD_TEST_DB_PREFIX (default "authd_t_") and a random
// suffix.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store"
)

// AdminURLEnv names the variable holding a superuser URL of the test
// server; its default is the local trust-auth server of the dev machines.
const AdminURLEnv = "AUTHD_TEST_DATABASE_URL"

const defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PrefixEnv names the variable holding the prefix of every database and
// role the tests create, so that two suites sharing one server (two
// checkouts, two CI jobs) can be told apart and cleaned up separately.
const PrefixEnv = "AUTHD_TEST_DB_PREFIX"

// DefaultPrefix is the prefix when PrefixEnv is unset.
const DefaultPrefix = "authd_t_"

// maxPrefix leaves room in PostgreSQL's 63-byte identifiers for the
// longest suffix added here ("role_" and 12 hex digits).
const maxPrefix = 40

// template is the migrated database that NewDB clones; set by Main.
var template string

// AdminURL is the superuser URL tests connect with to create databases and
// roles.
func AdminURL() string {
	if u := os.Getenv(AdminURLEnv); u != "" {
		return u
	}
	return defaultAdminURL
}

// Prefix is what the names of test databases and roles start with:
// $AUTHD_TEST_DB_PREFIX, or DefaultPrefix.
func Prefix() string {
	if p := os.Getenv(PrefixEnv); p != "" {
		return p
	}
	return DefaultPrefix
}

// checkPrefix refuses a prefix that would not leave room for the names
// built on it: PostgreSQL would cut them short, and two could collide.
func checkPrefix(p string) error {
	if len(p) > maxPrefix {
		return fmt.Errorf("%s=%q is %d bytes, want at most %d", PrefixEnv, p, len(p), maxPrefix)
	}
	return nil
}

// Main creates and migrates the template database, runs the tests, and
// drops it. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := checkPrefix(Prefix()); err != nil {
		fmt.Fprintf(os.Stderr, "storetest: %v\n", err)
		return 1
	}
	template = Prefix() + "tpl_" + Unique()
	if err := createDB(ctx, template, ""); err != nil {
		fmt.Fprintf(os.Stderr, "storetest: %v (set %s to a superuser URL)\n", err, AdminURLEnv)
		return 1
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = dropDB(ctx, template)
		leftRoles.dropAll(ctx)
	}()
	db, err := store.Open(ctx, WithDatabase(AdminURL(), template))
	if err != nil {
		fmt.Fprintf(os.Stderr, "storetest: %v\n", err)
		return 1
	}
	p, err := db.Migrator()
	if err == nil {
		_, err = p.Up(ctx)
	}
	db.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "storetest: migrate template: %v\n", err)
		return 1
	}
	return m.Run()
}

// Unique returns a short random suffix for database and role names, which
// are cluster-wide and shared with every other test binary running now.
func Unique() string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// WithDatabase returns rawURL pointing at database name.
func WithDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(fmt.Sprintf("storetest: bad admin URL: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

// NewURL creates a fresh migrated database for t and returns its URL. The
// database is dropped when t passes; a failed test's database is kept and
// its URL logged, outside CI.
func NewURL(t testing.TB) string {
	t.Helper()
	if template == "" {
		t.Fatal("storetest: call storetest.Main from TestMain")
	}
	return newDB(t, template)
}

// NewEmptyURL creates an empty database (no migrations) for t.
func NewEmptyURL(t testing.TB) string {
	t.Helper()
	return newDB(t, "")
}

func newDB(t testing.TB, from string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := newName(t, "")
	if err := createDB(ctx, name, from); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	u := WithDatabase(AdminURL(), name)
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("CI") == "" {
			t.Logf("storetest: kept database of failed test: %s", u)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDB(ctx, name); err != nil {
			t.Errorf("storetest: %v", err)
		}
	})
	return u
}

// newName is a fresh name for a database or role of t's: the prefix,
// infix and a random suffix.
func newName(t testing.TB, infix string) string {
	t.Helper()
	if err := checkPrefix(Prefix()); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return Prefix() + infix + Unique()
}

// NewDB opens a fresh migrated database for t.
func NewDB(t testing.TB) *store.DB {
	t.Helper()
	return Open(t, NewURL(t))
}

// NewDBOneConnection opens a fresh migrated database for t whose pool
// holds a single connection: every statement of the test runs on it, so
// the connection's own state (pg_prepared_statements, a setting) is the
// test's to read.
func NewDBOneConnection(t testing.TB) *store.DB {
	t.Helper()
	u, err := url.Parse(NewURL(t))
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "1")
	u.RawQuery = q.Encode()
	return Open(t, u.String())
}

// Open opens the database at url for t, closing it at cleanup.
func Open(t testing.TB, url string) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// NewRole creates a cluster-wide role with a unique name and drops it at
// cleanup (after the databases that may reference it).
func NewRole(t testing.TB) string {
	t.Helper()
	role := newName(t, "role_")
	Exec(t, AdminURL(), "create role "+pgx.Identifier{role}.Sanitize())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropRole(ctx, role); err != nil {
			// A database not dropped yet still holds grants to it
			// (cleanups run last-in first-out, and the database was
			// usually made first): Main drops it at the end.
			leftRoles.add(role)
		}
	})
	return role
}

// leftRoles are the roles whose drop failed at their test's cleanup.
var leftRoles roleList

type roleList struct {
	mu    sync.Mutex
	names []string
}

func (l *roleList) add(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, name)
}

// dropAll drops the roles again, once every test's databases are gone.
func (l *roleList) dropAll(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, name := range l.names {
		if err := dropRole(ctx, name); err != nil {
			fmt.Fprintf(os.Stderr, "storetest: %v (a kept database of a failed test may hold grants to it)\n", err)
		}
	}
	l.names = nil
}

func dropRole(ctx context.Context, name string) error {
	if err := adminExec(ctx, AdminURL(), "drop role if exists "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("drop role %s: %w", name, err)
	}
	return nil
}

// AddUser adds the user name, with a cost-4 hash of password and a new
// role of its own, to db.
func AddUser(t testing.TB, db *store.DB, name, password string) {
	t.Helper()
	hash, err := store.HashPassword(password, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AddUser(context.Background(), name, hash, NewRole(t)); err != nil {
		t.Fatalf("storetest: add user %q: %v", name, err)
	}
}

// TokenHash is the SHA-256 under which store keeps the refresh token s.
func TokenHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// StartSession starts a session of user whose refresh token is s, for an
// hour.
func StartSession(t testing.TB, db *store.DB, user, s string) store.Grant {
	t.Helper()
	u, err := db.User(context.Background(), user)
	if err != nil {
		t.Fatalf("storetest: load user %q: %v", user, err)
	}
	g, err := db.StartSession(context.Background(), u, TokenHash(s), time.Hour, 24*time.Hour)
	if err != nil {
		t.Fatalf("storetest: start a session of %q: %v", user, err)
	}
	return g
}

// Exec runs sql on the database at url, failing t on error.
func Exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, url, sql, args...); err != nil {
		t.Fatalf("storetest: %s: %v", sql, err)
	}
}

func adminExec(ctx context.Context, url, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

func createDB(ctx context.Context, name, from string) error {
	sql := "create database " + pgx.Identifier{name}.Sanitize()
	if from != "" {
		sql += " template " + pgx.Identifier{from}.Sanitize()
	}
	if err := adminExec(ctx, AdminURL(), sql); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func dropDB(ctx context.Context, name string) error {
	if err := adminExec(ctx, AdminURL(), "drop database if exists "+pgx.Identifier{name}.Sanitize()+" with (force)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}
