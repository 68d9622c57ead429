// Package loadtest is the harness that authd's load-test commands
// (cmd/authd-bench and cmd/authd-soak) share: it builds authd, gives it a
// throwaway database, role and users, runs `authd serve` on a free
// loopback port, drives it over HTTP at paced rates, and reads what the
// server process costs from /proc. Keeping it in one place means the two
// commands set up, measure and clean up authd the same way, so that their
// numbers compare.
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/store"
)

const (
	// DefaultAdminURL is the superuser URL of the local development
	// server, so that a bare `go run` works on a developer's machine.
	DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	// AdminURLEnv names the variable the repository's tests read the
	// superuser URL from; the commands default to it so that they run
	// wherever the tests do.
	AdminURLEnv = "AUTHD_TEST_DATABASE_URL"
	// DBPrefixEnv names the variable the tests read the prefix of their
	// database and role names from (see storetest), so that a suite
	// sharing a server with another finds and cleans up what is its own.
	DBPrefixEnv = "AUTHD_TEST_DB_PREFIX"

	// BcryptCost is every server's AUTHD_BCRYPT_COST and the users'
	// hashes': authd's default, so that a login costs what it does in
	// production.
	BcryptCost = 10
	// Password is every user's.
	Password = "authd-load-password"
)

// Main runs a load-test command as a process: run gets a context that
// Ctrl-C and SIGTERM cancel (so that its cleanups still run), and its
// error decides the exit status.
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

// Config says where the harness finds PostgreSQL and authd, and how it
// runs the servers.
type Config struct {
	// Name is the command's ("authd-bench"): it names the temporary
	// directory, the plan of the API key, the application_name of the
	// command's connections and, with "-" as "_", the database and role,
	// so that a leftover one says which tool made it.
	Name     string
	AdminURL string // a superuser postgres:// URL
	DBPrefix string // goes before the database and role names
	// Authd is a prebuilt authd binary; empty builds ./cmd/authd of the
	// module the command runs in.
	Authd string
	// ServerEnv is more settings for every authd the command starts, as
	// NAME=value (-server-env, repeatable); they win over the harness's.
	ServerEnv []string
	LogLevel  string // every server's AUTHD_LOG_LEVEL
	Logf      func(format string, a ...any)
}

// AddFlags defines -admin-url, -db-prefix, -authd, -server-env and
// -server-log-level on fs, into c, the same in every command.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	adminDefault := DefaultAdminURL
	if v := os.Getenv(AdminURLEnv); v != "" {
		adminDefault = v
	}
	fs.StringVar(&c.AdminURL, "admin-url", adminDefault, "superuser postgres:// URL of the server to create the throwaway database on (default from $"+AdminURLEnv+")")
	fs.StringVar(&c.DBPrefix, "db-prefix", os.Getenv(DBPrefixEnv), "prefix of the throwaway database's and role's names (default from $"+DBPrefixEnv+")")
	fs.StringVar(&c.Authd, "authd", "", "prebuilt authd binary; empty builds ./cmd/authd")
	fs.StringVar(&c.LogLevel, "server-log-level", "warn", "AUTHD_LOG_LEVEL of the servers (request lines are logged at info)")
	fs.Func("server-env", "a setting for every server, NAME=value (repeatable), such as AUTHD_BCRYPT_NICE=19", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want NAME=value, got %q", v)
		}
		c.ServerEnv = append(c.ServerEnv, v)
		return nil
	})
}

// Harness is what a run owns: a temporary directory, the authd binary,
// a throwaway database and role, and after Seed the schema, users and a
// pool. Close removes all of it, with whatever the caller registered
// with Defer, in reverse order.
type Harness struct {
	Tmp    string // temporary directory, removed by Close
	Bin    string // the authd binary
	DBName string // the throwaway database: <prefix><name>_<random>
	Role   string // a nologin role for the users: <prefix><name>_role_<random>
	DBURL  string // AdminURL with DBName as its database

	// Set by Seed.
	Secret string        // every server's JWT_SECRET
	Env    []string      // every server's settings: JWT_SECRET, bcrypt cost, log level, -server-env
	Pool   *pgxpool.Pool // the command's own connections (application_name Name)
	Users  []string      // user_000001…, all of Role, all with Password
	Hash   string        // the bcrypt hash they share

	cfg      Config
	cleanups []func()
}

// Setup makes the temporary directory, builds authd unless c.Authd names
// one, and creates the database and role. On error, what it made is
// removed before it returns.
func Setup(ctx context.Context, c Config) (_ *Harness, err error) {
	h := &Harness{cfg: c}
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
	if h.Bin = c.Authd; h.Bin == "" {
		c.Logf("building ./cmd/authd")
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
	for _, s := range [][2]string{{"create database " + db, "drop database if exists " + db + " with (force)"}, {"create role " + role + " nologin", "drop role if exists " + role}} {
		if err := adminExec(ctx, c.AdminURL, s[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", s[0], err)
		}
		h.Defer(func() {
			if err := adminExec(context.Background(), c.AdminURL, s[1]); err != nil {
				c.Logf("cleanup: %s: %v", s[1], err)
			}
		})
	}
	c.Logf("database %s, role %s", h.DBName, h.Role)
	return h, nil
}

// maxIdentifier is the longest name PostgreSQL keeps (NAMEDATALEN - 1).
const maxIdentifier = 63

// Seed migrates the database with `authd migrate up`, as an operator
// would, opens the command's pool and creates users users of Role.
func (h *Harness) Seed(ctx context.Context, users int, env ...string) error {
	h.Secret = NewSecret()
	h.Env = append([]string{"JWT_SECRET=" + h.Secret, "AUTHD_BCRYPT_COST=" + strconv.Itoa(BcryptCost), "AUTHD_LOG_LEVEL=" + h.cfg.LogLevel}, env...)
	h.Env = append(h.Env, h.cfg.ServerEnv...)
	if _, err := h.Authd(ctx, nil, "migrate", "up"); err != nil {
		return err
	}
	u, err := h.URL(h.cfg.Name)
	if err != nil {
		return err
	}
	if h.Pool, err = pgxpool.New(ctx, u); err != nil {
		return fmt.Errorf("connect to %s: %w", h.DBName, err)
	}
	h.Defer(h.Pool.Close)
	h.Logf("creating %d users (bcrypt cost %d)", users, BcryptCost)
	h.Users = make([]string, users)
	for i := range h.Users {
		h.Users[i] = fmt.Sprintf("user_%06d", i+1)
	}
	// One hash serves them all: hashing is the slow part, and every login
	// still compares at the cost.
	if h.Hash, err = store.HashPassword(Password, BcryptCost); err != nil {
		return fmt.Errorf("create users: %w", err)
	}
	if _, err := h.Pool.Exec(ctx, `
		insert into auth.user (username, password_hash, role)
		select u, $2, $3 from unnest($1::text[]) u`, h.Users, h.Hash, h.Role); err != nil {
		return fmt.Errorf("create users: %w", err)
	}
	return nil
}

// URL is the database's URL for a client named app (application_name),
// which is how the bench tells the servers' backends from its own.
func (h *Harness) URL(app string) (string, error) {
	return PgURL(h.DBURL, func(u *url.URL, q url.Values) { q.Set("application_name", app) })
}

// Authd runs the authd binary with args and the servers' settings plus
// env, and returns its standard output.
func (h *Harness) Authd(ctx context.Context, env []string, args ...string) (string, error) {
	u, err := h.URL(h.cfg.Name)
	if err != nil {
		return "", err
	}
	return runAuthd(ctx, h.Bin, authdEnv(append(append(slices.Clone(h.Env), "DATABASE_URL="+u), env...)), args...)
}

// Start runs `authd serve` with the servers' settings plus env (which
// may override DATABASE_URL; by default the server's connections are
// named Name+"-server"), its log in the temporary directory as name.log.
func (h *Harness) Start(ctx context.Context, name string, env ...string) (*Server, error) {
	u, err := h.URL(h.cfg.Name + "-server")
	if err != nil {
		return nil, err
	}
	srv, err := startServer(ctx, h.Bin, authdEnv(append(append(slices.Clone(h.Env), "DATABASE_URL="+u), env...)), h.Tmp+"/"+name+".log")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return srv, nil
}

// APIKey makes a plan named Name for Role with a rate no load can reach
// (the limiter is consulted on every request but never refuses), and a
// key of it with `authd apikey create`, as an operator would.
func (h *Harness) APIKey(ctx context.Context) (string, error) {
	if _, err := h.Pool.Exec(ctx, `insert into auth.plan (name, role, requests_per_minute) values ($1, $2, 100000000)`, h.cfg.Name, h.Role); err != nil {
		return "", fmt.Errorf("create plan %s: %w", h.cfg.Name, err)
	}
	out, err := h.Authd(ctx, nil, "apikey", "create", "--plan", h.cfg.Name)
	if err != nil {
		return "", err
	}
	if k, ok := apiKeyFromOutput(out); ok {
		return k, nil
	}
	// Not echoed: the output holds the key if the format merely changed.
	return "", errors.New("authd apikey create: no \"key: authd_…\" line in its output")
}

// Logf reports progress on standard error.
func (h *Harness) Logf(format string, a ...any) { h.cfg.Logf(format, a...) }

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

// PgURL parses a postgres:// URL and lets mutate change it and its query,
// so that one admin URL yields each client's (application_name, pool
// sizes, a proxy's address).
func PgURL(base string, mutate func(u *url.URL, q url.Values)) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL may carry a password: do not echo it.
		return "", errors.New("-admin-url: want a postgres:// URL")
	}
	q := u.Query()
	mutate(u, q)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// adminExec runs one statement on its own connection to adminURL, so that
// cleanup works after the run's context is cancelled (it bounds itself to
// 30 s).
func adminExec(ctx context.Context, adminURL, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to -admin-url (set %s or -admin-url to a superuser URL): %w", AdminURLEnv, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// NewSecret is a JWT_SECRET for a throwaway server: 48 random bytes in
// base64url, well over the token.MinSecretLen authd insists on.
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
