package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store/storetest"
)

func TestMain(m *testing.M) {
	storetest.Main(m)
}

// testCost keeps bcrypt fast where the cost itself is not under test.
const testCost = "4"

// baseEnv is the environment of a CLI run against the database at url. The
// authenticator role is a name no test creates, so that a role named
// "authenticator" elsewhere on the cluster adds no warnings to stderr.
// Compares run at normal priority: at the default nice 10, CPU-bound
// neighbours in the same scheduling group leave them a tenth of a CPU or
// less, and a password check then overruns the NATS callout's 1.5 s
// decision bound. What the priority does is tested in server.
func baseEnv(url string) map[string]string {
	return map[string]string{
		"DATABASE_URL":             url,
		"AUTHD_BCRYPT_COST":        testCost,
		"AUTHD_BCRYPT_NICE":        "0",
		"AUTHD_AUTHENTICATOR_ROLE": "authd_test_no_such_authenticator",
		// The tests' servers speak plain HTTP.
		"AUTHD_COOKIE_SECURE": "false",
	}
}

// getenv turns a map into run's getenv.
func getenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// result is what one run of the CLI left behind.
type result struct {
	err            error
	stdout, stderr string
}

// runCLI runs authd with args (without the program name), the environment
// env and stdin, as a user at a shell would.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append([]string{"authd"}, args...), getenv(env), environList(env), strings.NewReader(stdin), &stdout, &stderr)
	return result{err: err, stdout: stdout.String(), stderr: stderr.String()}
}

// mustRun is runCLI for commands that must succeed.
func mustRun(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	r := runCLI(t, env, stdin, args...)
	if r.err != nil {
		t.Fatalf("authd %s: %v (stderr %q)", strings.Join(args, " "), r.err, r.stderr)
	}
	return r
}

// connect opens a plain connection to url, closed at cleanup.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// queryRow scans one row of sql on url into dest.
func queryRow(t *testing.T, url, sql string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// passwordHash is the stored hash of username.
func passwordHash(t *testing.T, url, username string) string {
	t.Helper()
	var h string
	queryRow(t, url, `select password_hash from auth.user where username = $1`, []any{username}, &h)
	return h
}

// count runs a select count(*) … query.
func count(t *testing.T, url, sql string, args ...any) int {
	t.Helper()
	var n int
	queryRow(t, url, sql, args, &n)
	return n
}

// goBuild builds pkg (with extra go build flags) into a fresh directory
// and returns the binary's path.
func goBuild(t *testing.T, name, pkg string, flags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	args := append([]string{"build"}, flags...)
	args = append(args, "-o", bin, pkg)
	cmd := exec.Command("go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe to write from the server's goroutines
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// environ turns env into exec.Cmd's Env, without the test's own
// environment (PGHOST, DATABASE_URL, … of the machine must not leak in).
func environ(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// environList turns a map into run's environ.
func environList(env map[string]string) func() []string {
	return func() []string { return environ(env) }
}
