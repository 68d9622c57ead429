// Package loadtest is the harness authd-bench and authd-soak share, so
// that their numbers compare: it builds authd, gives it a throwaway
// database, role and users, runs `authd serve` on a free loopback port
// and drives it over HTTP. Harness.Close removes everything it made, on
// error and Ctrl-C too.
package loadtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
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
	// AdminURLEnv and DBPrefixEnv are what the repository's tests read, so
	// that the tools run wherever the tests do.
	AdminURLEnv = "AUTHD_TEST_DATABASE_URL"
	DBPrefixEnv = "AUTHD_TEST_DB_PREFIX"
	// BcryptCost is authd's default, so that a login costs what it does in
	// production.
	BcryptCost = 10
	// Password is every user's.
	Password = "authd-load-password"
)

// Main runs a command whose context Ctrl-C and SIGTERM cancel, so that
// its cleanups still run.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(os.Stderr, "%s: interrupted; cleaned up\n", name)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	os.Exit(1)
}

// Config says where the harness finds PostgreSQL and authd.
type Config struct {
	// Name ("authd-bench") names the temporary directory, the API key's
	// plan, the command's application_name and (with "_") the database
	// and role, so that a leftover says which tool made it.
	Name      string
	AdminURL  string   // a superuser postgres:// URL
	DBPrefix  string   // before the database and role names
	ServerEnv []string // NAME=value for every server, after the harness's own
	Users     int      // users to create
	Log       io.Writer
}

// AddFlags defines the flags every command shares; c.Users is the default
// of -users.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	admin := cmp.Or(os.Getenv(AdminURLEnv), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	fs.StringVar(&c.AdminURL, "admin-url", admin, "superuser postgres:// URL to make the throwaway database on (default from $"+AdminURLEnv+")")
	fs.StringVar(&c.DBPrefix, "db-prefix", os.Getenv(DBPrefixEnv), "prefix of the throwaway database's and role's names (default from $"+DBPrefixEnv+")")
	fs.IntVar(&c.Users, "users", c.Users, "users to create; logins cycle through them")
	fs.Func("server-env", "a setting for every server, NAME=value (repeatable; AUTHD_LOG_LEVEL is warn unless set)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want NAME=value, got %q", v)
		}
		c.ServerEnv = append(c.ServerEnv, v)
		return nil
	})
}

// Harness is what a run owns; Close removes it all in reverse order.
type Harness struct {
	Tmp    string        // temporary directory
	DBName string        // <prefix><name>_<random>
	Role   string        // a nologin role for the users
	DBURL  string        // AdminURL with DBName as its database
	Secret string        // every server's JWT_SECRET
	Pool   *pgxpool.Pool // the command's own connections
	Users  []string      // user_000001…, of Role, with Password
	Hash   string        // the bcrypt hash they share

	bin      string
	env      []string // every server's settings
	cfg      Config
	cleanups []func()
}

// Setup makes the temporary directory, builds authd from this checkout,
// creates the database and role, migrates with `authd migrate up` as
// an operator would, and creates c.Users users; env is for every server.
// On error it removes what it made.
func Setup(ctx context.Context, c Config, env ...string) (_ *Harness, err error) {
	h := &Harness{cfg: c, Secret: rand.Text() + rand.Text()}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if h.Tmp, err = os.MkdirTemp("", c.Name+"-"); err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	h.onClose(func() { _ = os.RemoveAll(h.Tmp) })
	prefix, suffix := c.DBPrefix+strings.ReplaceAll(c.Name, "-", "_"), strings.ToLower(rand.Text()[:12])
	h.DBName, h.Role = prefix+"_"+suffix, prefix+"_role_"+suffix
	// PostgreSQL would silently cut a name longer than NAMEDATALEN-1.
	if len(h.Role) > 63 {
		return nil, fmt.Errorf("-db-prefix %q: the role name %s is longer than PostgreSQL's 63 bytes", c.DBPrefix, h.Role)
	}
	if h.DBURL, err = PgURL(c.AdminURL, func(u *url.URL, q url.Values) { u.Path = "/" + h.DBName }); err != nil {
		return nil, err
	}
	h.Logf("building ./cmd/authd; database %s, role %s", h.DBName, h.Role)
	h.bin = filepath.Join(h.Tmp, "authd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", h.bin, "authd/cmd/authd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build authd (run inside the repository): %w\n%s", err, out)
	}
	db, role := pgx.Identifier{h.DBName}.Sanitize(), pgx.Identifier{h.Role}.Sanitize()
	for _, s := range [][2]string{{"create database " + db, "drop database if exists " + db + " with (force)"}, {"create role " + role + " nologin", "drop role if exists " + role}} {
		if err := adminExec(ctx, c.AdminURL, s[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", s[0], err)
		}
		h.onClose(func() {
			if err := adminExec(context.Background(), c.AdminURL, s[1]); err != nil {
				h.Logf("cleanup: %s: %v", s[1], err)
			}
		})
	}
	h.env = slices.Concat([]string{"JWT_SECRET=" + h.Secret, "AUTHD_BCRYPT_COST=" + strconv.Itoa(BcryptCost), "AUTHD_LOG_LEVEL=warn",
		// Plain HTTP on loopback: the clients read and send access_token.
		"AUTHD_COOKIE_SECURE=false"}, env, c.ServerEnv)
	if _, err := h.Authd(ctx, "migrate", "up"); err != nil {
		return nil, err
	}
	if h.Pool, err = pgxpool.New(ctx, h.dbURL(c.Name)); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", h.DBName, err)
	}
	h.onClose(h.Pool.Close)
	for i := range max(c.Users, 1) {
		h.Users = append(h.Users, fmt.Sprintf("user_%06d", i+1))
	}
	// One hash for all: hashing is slow, and each login still compares.
	if h.Hash, err = store.HashPassword(Password, BcryptCost); err == nil {
		_, err = h.Pool.Exec(ctx, `insert into auth.user (username, password_hash, role) select u, $2, $3 from unnest($1::text[]) u`, h.Users, h.Hash, h.Role)
	}
	if err != nil {
		return nil, fmt.Errorf("create users: %w", err)
	}
	return h, nil
}

// dbURL is the database's URL with application_name app, by which the
// bench tells the servers' backends from its own.
func (h *Harness) dbURL(app string) string {
	u, _ := PgURL(h.DBURL, func(u *url.URL, q url.Values) { q.Set("application_name", app) }) // DBURL parsed in Setup
	return u
}

// authdEnv is this process's environment without AUTHD_*, JWT_*, PGRST_*
// and DATABASE_URL, plus set: a developer's own settings must not change
// what is measured.
func authdEnv(set ...[]string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return strings.HasPrefix(k, "AUTHD_") || strings.HasPrefix(k, "JWT_") || strings.HasPrefix(k, "PGRST_") || k == "DATABASE_URL"
	})
	return slices.Concat(append([][]string{env}, set...)...)
}

// Authd runs the authd binary with the servers' settings and returns its
// standard output.
func (h *Harness) Authd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = authdEnv(h.env, []string{"DATABASE_URL=" + h.dbURL(h.cfg.Name)})
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("authd %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// Server is one `authd serve` process.
type Server struct {
	Addr    string // 127.0.0.1:port
	log     string // the file of its standard output and error
	cmd     *exec.Cmd
	exited  chan struct{} // closed once waited for
	waitErr error
}

// Start runs `authd serve` with the servers' settings plus env (which may
// set DATABASE_URL; by default application_name is Name+"-server") on a
// free loopback port, its log in Tmp/name.log, and returns once GET
// /readyz answers 200, so that no measurement includes start-up. The
// server is not tied to ctx: Stop ends it with SIGTERM, as production does.
func (h *Harness) Start(ctx context.Context, name string, env ...string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: find a free port: %w", name, err)
	}
	s := &Server{Addr: ln.Addr().String(), log: filepath.Join(h.Tmp, name+".log"), exited: make(chan struct{})}
	_ = ln.Close()
	logFile, err := os.Create(s.log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer logFile.Close() // the child has its own descriptor
	s.cmd = exec.Command(h.bin, "serve")
	s.cmd.Env = authdEnv(h.env, []string{"DATABASE_URL=" + h.dbURL(h.cfg.Name+"-server")}, env, []string{"AUTHD_ADDR=" + s.Addr})
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	c := NewClient(s.Addr, 1)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for c.Get(ctx, "/readyz", "", "", "") != nil {
		select {
		case <-s.exited:
			err = fmt.Errorf("authd exited (%v)", s.waitErr)
		case <-ctx.Done():
			err = fmt.Errorf("GET /readyz did not answer 200 within 30s: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
			continue
		}
		_ = s.Stop()
		return nil, fmt.Errorf("%s: %w\n%s", name, err, s.LogTail())
	}
	return s, nil
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM and waits for authd to drain; after 15 s it kills it.
func (s *Server) Stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("authd did not stop within 15s of SIGTERM; killed")
	}
}

// LogTail is the log's last 4000 bytes: why it failed, not buried.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.log)
	return string(b[max(len(b)-4000, 0):])
}

// LogProblems counts the WARN and ERROR lines authd logged, "" if none: a
// run whose requests all succeeded can still hide server-side trouble.
func (s *Server) LogProblems() string {
	b, _ := os.ReadFile(s.log)
	if bad := problemRe.FindAll(b, -1); len(bad) > 0 {
		return fmt.Sprintf("authd logged %d warning/error line(s); the first: %s", len(bad), bad[0])
	}
	return ""
}

var problemRe = regexp.MustCompile(`(?m)^.*"level":"(WARN|ERROR)".*$`)

// APIKey makes a plan named Name for Role with a rate no load reaches (so
// the limiter is consulted but never refuses) and a key of it with `authd
// apikey create`.
func (h *Harness) APIKey(ctx context.Context) (string, error) {
	if _, err := h.Pool.Exec(ctx, `insert into auth.plan (name, role, requests_per_minute) values ($1, $2, 100000000)`, h.cfg.Name, h.Role); err != nil {
		return "", fmt.Errorf("create plan %s: %w", h.cfg.Name, err)
	}
	out, err := h.Authd(ctx, "apikey", "create", "--plan", h.cfg.Name)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if k, ok := strings.CutPrefix(line, "key:"); ok && strings.HasPrefix(strings.TrimSpace(k), "authd_") {
			return strings.TrimSpace(k), nil
		}
	}
	// Not echoed: the output holds the key if only its format changed.
	return "", errors.New("authd apikey create: no \"key: authd_…\" line in its output")
}

// Logf reports progress on the configured log, prefixed with Name.
func (h *Harness) Logf(format string, a ...any) {
	fmt.Fprintf(h.cfg.Log, h.cfg.Name+": "+format+"\n", a...)
}

// onClose registers f to run at Close before everything registered earlier.
func (h *Harness) onClose(f func()) { h.cleanups = append(h.cleanups, f) }

// Close runs the cleanups once, in reverse order, on their own contexts.
func (h *Harness) Close() {
	for i := len(h.cleanups) - 1; i >= 0; i-- {
		h.cleanups[i]()
	}
	h.cleanups = nil
}

// PgURL lets mutate change a postgres:// URL and its query.
func PgURL(base string, mutate func(u *url.URL, q url.Values)) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("-admin-url: want a postgres:// URL") // it may hold a password: not echoed
	}
	q := u.Query()
	mutate(u, q)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// adminExec runs sql on a connection of its own, bounded to 30 s, so that
// cleanup works after the run's context is cancelled.
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
