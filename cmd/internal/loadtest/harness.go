// Package loadtest is the harness that authd's load-test commands
// (cmd/authd-bench and cmd/authd-soak) share: it builds authd, gives it a
// throwaway database and role, runs `authd serve` on a free loopback port,
// drives it over HTTP at paced rates, and reads what the server process
// costs from /proc. Keeping it in one place means the two commands set up,
// measure and clean up authd the same way, so that their numbers compare.
//
// Everything it creates is its own and on 127.0.0.1, and is removed by
// Harness.Close, on error and on Ctrl-C too.
package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

const (
	// DefaultAdminURL is the superuser URL of the local development
	// server, so that a bare `go run` works on a developer's machine.
	DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	// AdminURLEnv names the variable the repository's tests read the
	// superuser URL from; the commands default to it so that they run
	// wherever the tests do.
	AdminURLEnv = "AUTHD_TEST_DATABASE_URL"
	// DBPrefixEnv names the variable the repository's tests read the
	// prefix of their database and role names from (see storetest); the
	// commands default -db-prefix to it, so that a suite sharing a server
	// with another finds and cleans up what is its own.
	DBPrefixEnv = "AUTHD_TEST_DB_PREFIX"
)

// Main runs a load-test command as a process: run gets a context that
// Ctrl-C and SIGTERM cancel (so that its cleanups still run), and its
// error decides the exit status. Both commands exit the same way, which
// scripts around them rely on.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(name, err, os.Stderr))
}

// exitCode reports err on stderr as name's and returns the exit status:
// 0 for success and -h, 1 for anything else.
func exitCode(name string, err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "%s: interrupted; cleaned up\n", name)
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
	}
	return 1
}

// Config says where the harness finds PostgreSQL and authd.
type Config struct {
	// Name is the command's ("authd-bench"): it names the temporary
	// directory and, with "-" as "_", the database and role, so that a
	// leftover one says which tool made it.
	Name string
	// AdminURL is a superuser postgres:// URL; the throwaway database and
	// role are created on that server.
	AdminURL string
	// DBPrefix goes before the database and role names.
	DBPrefix string
	// Authd is a prebuilt authd binary; empty builds ./cmd/authd of the
	// module the command runs in.
	Authd string
	// ServerEnv is more settings for every authd the command starts, as
	// NAME=value (-server-env, repeatable).
	ServerEnv []string
	// Logf reports progress (on standard error, beside the report).
	Logf func(format string, a ...any)
}

// AddFlags defines -admin-url, -db-prefix, -authd and -server-env on fs,
// into c, with the same defaults and help in every command.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	adminDefault := DefaultAdminURL
	if v := os.Getenv(AdminURLEnv); v != "" {
		adminDefault = v
	}
	fs.StringVar(&c.AdminURL, "admin-url", adminDefault, "superuser postgres:// URL of the server to create the throwaway database on (default from $"+AdminURLEnv+")")
	fs.StringVar(&c.DBPrefix, "db-prefix", os.Getenv(DBPrefixEnv), "prefix of the throwaway database's and role's names (default from $"+DBPrefixEnv+")")
	fs.StringVar(&c.Authd, "authd", "", "prebuilt authd binary; empty builds ./cmd/authd")
	fs.Func("server-env", "a setting for every server, NAME=value (repeatable), such as AUTHD_BCRYPT_NICE=19", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want NAME=value, got %q", v)
		}
		c.ServerEnv = append(c.ServerEnv, v)
		return nil
	})
}

// Harness is what a run owns: a temporary directory, the authd binary,
// and a throwaway database and role. Close removes all of it, with
// whatever the caller registered with Defer, in reverse order.
type Harness struct {
	Tmp    string // temporary directory, removed by Close
	Bin    string // the authd binary
	DBName string // the throwaway database: <prefix><name>_<random>
	Role   string // a nologin role for the users: <prefix><name>_role_<random>
	DBURL  string // AdminURL with DBName as its database

	logf     func(format string, a ...any)
	cleanups []func()
}

// Setup makes the temporary directory, builds authd unless c.Authd names
// one, and creates the database and role. On error, what it made is
// removed before it returns.
func Setup(ctx context.Context, c Config) (_ *Harness, err error) {
	h := &Harness{logf: c.Logf}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if h.Tmp, err = os.MkdirTemp("", c.Name+"-"); err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	tmp := h.Tmp
	h.Defer(func() { _ = os.RemoveAll(tmp) })

	h.Bin = c.Authd
	if h.Bin == "" {
		h.logf("building ./cmd/authd")
		if h.Bin, err = BuildAuthd(ctx, h.Tmp); err != nil {
			return nil, err
		}
	}

	prefix, suffix := c.DBPrefix+strings.ReplaceAll(c.Name, "-", "_"), randomHex(6)
	h.DBName, h.Role = prefix+"_"+suffix, prefix+"_role_"+suffix
	// PostgreSQL would cut a longer name short, silently.
	if len(h.Role) > maxIdentifier {
		return nil, fmt.Errorf("-db-prefix %q: the role name %s is longer than PostgreSQL's %d bytes", c.DBPrefix, h.Role, maxIdentifier)
	}
	if h.DBURL, err = PgURL(c.AdminURL, func(u *url.URL, q url.Values) { u.Path = "/" + h.DBName }); err != nil {
		return nil, err
	}
	db, role := pgx.Identifier{h.DBName}.Sanitize(), pgx.Identifier{h.Role}.Sanitize()
	if err := adminExec(ctx, c.AdminURL, "create database "+db); err != nil {
		return nil, fmt.Errorf("create database %s: %w", h.DBName, err)
	}
	h.Defer(func() {
		if err := adminExec(context.Background(), c.AdminURL, "drop database if exists "+db+" with (force)"); err != nil {
			h.logf("cleanup: drop database %s: %v", h.DBName, err)
		}
	})
	if err := adminExec(ctx, c.AdminURL, "create role "+role+" nologin"); err != nil {
		return nil, fmt.Errorf("create role %s: %w", h.Role, err)
	}
	h.Defer(func() {
		if err := adminExec(context.Background(), c.AdminURL, "drop role if exists "+role); err != nil {
			h.logf("cleanup: drop role %s: %v", h.Role, err)
		}
	})
	h.logf("database %s, role %s", h.DBName, h.Role)
	return h, nil
}

// maxIdentifier is the longest name PostgreSQL keeps (NAMEDATALEN - 1).
const maxIdentifier = 63

// Defer registers f to run at Close, before everything registered
// earlier: a pool on the database closes before the database is dropped.
func (h *Harness) Defer(f func()) { h.cleanups = append(h.cleanups, f) }

// Close runs the cleanups in reverse order, once. It uses its own
// contexts, so it works after the run's context was cancelled.
func (h *Harness) Close() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	h.cleanups = nil
}

// NewSecret is a JWT_SECRET for a throwaway server: 48 random bytes in
// base64url, 64 characters, well over the token.MinSecretLen authd
// insists on.
func NewSecret() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomHex is n random bytes in hex, to keep names of concurrent runs
// apart.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
