package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"authd/store/storetest"
)

// pgbouncer starts Debian's PgBouncer in transaction mode on a free
// 127.0.0.1 port, in front of the test PostgreSQL server, with a small
// server pool so that clients really do share server connections (what
// breaks named prepared statements and session settings). It returns
// dbURL with its host and port replaced by the pooler's.
func pgbouncer(t *testing.T, dbURL string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr != nil {
			t.Fatalf("pgbouncer is not installed: run scripts/test-deps.sh (Debian's pgbouncer package)")
		}
		bin = "/usr/sbin/pgbouncer"
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	backendHost, backendPort := u.Hostname(), u.Port()
	if backendPort == "" {
		backendPort = "5432"
	}
	dir, err := os.MkdirTemp("", "authd-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port := freePort(t)
	conf := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = 4
max_client_conn = 500
logfile = %s
pidfile = %s
`, backendHost, backendPort, port, filepath.Join(dir, "users.txt"), filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	users := fmt.Sprintf("%q \"\"\n", u.User.Username())
	for name, body := range map[string]string{"pgbouncer.ini": conf, "users.txt": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	if os.Getuid() == 0 {
		// PgBouncer refuses to run as root: it switches to -u's user,
		// who must own its directory.
		giveToPostgres(t, dir, filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "users.txt"))
		args = append([]string{"-u", "postgres"}, args...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cancel(); <-exited })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer exited: %v\n%s%s", err, out, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer not listening on %s within a minute:\n%s", addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	u.Host = addr
	return u.String()
}

// TestBehindTransactionPooler: authd serve, its admin commands and its
// migrations work through PgBouncer in transaction mode with
// AUTHD_DB_POOLER=transaction and AUTHD_DB_DIRECT_URL, under concurrency:
// logins, a 20-way refresh race with exactly one winner, logout, API keys,
// and a change notification heard on the direct connection. Without the
// setting, serve stops at start-up with PgBouncer's refusal, as operators
// saw it.
func TestBehindTransactionPooler(t *testing.T) {
	t.Parallel()
	direct := storetest.NewURL(t)
	pooled := pgbouncer(t, direct)
	bin := goBuild(t, "authd", ".")

	// As before: PgBouncer refuses the statement_timeout startup parameter.
	plain := serveEnv(pooled)
	plain["AUTHD_DB_WAIT"] = "0"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve")
	cmd.Env = environ(plain)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unsupported startup parameter") {
		t.Errorf("serve through PgBouncer without AUTHD_DB_POOLER: got %v\n%s\nwant a start-up failure naming the unsupported startup parameter", err, out)
	}

	env := serveEnv(pooled)
	env["AUTHD_DB_POOLER"] = "transaction"
	env["AUTHD_REFRESH_REUSE_GRACE"] = "0s"
	env["AUTHD_CACHE_RECHECK"] = "1h" // only a notification can reach the cache
	// The concurrent logins stand for many users, all on loopback: one
	// address's share of logins is tested in server.
	env["AUTHD_LOGINS_PER_IP"] = "0"

	// Migrations take a session lock: refused through the pooler alone,
	// run on the direct URL when it is given.
	if r := runCLI(t, env, "", "migrate", "up"); r.err == nil || !strings.Contains(r.err.Error(), "AUTHD_DB_DIRECT_URL") {
		t.Errorf("migrate up through the pooler without AUTHD_DB_DIRECT_URL: got %v, want an error naming AUTHD_DB_DIRECT_URL", r.err)
	}
	env["AUTHD_DB_DIRECT_URL"] = direct
	if r := mustRun(t, env, "", "migrate", "up"); !strings.Contains(r.stdout, "already up to date") {
		t.Errorf("migrate up via AUTHD_DB_DIRECT_URL: got %q", r.stdout)
	}

	// Admin commands through the pooler.
	role := storetest.NewRole(t)
	const users = 8
	for i := range users {
		mustRun(t, env, fmt.Sprintf("pw-of-user-%d\n", i), "user", "add", fmt.Sprintf("user%d", i), "--role", role)
	}
	keyPlain, keyID := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", newPlan(t, direct, role, 100000, "")))

	base := serveProcess(t, bin, env)
	waitListening(t, base) // on the direct connection

	// Every user logs in at once, each twice.
	var mu sync.Mutex
	refresh := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 2*users)
	for i := range 2 * users {
		wg.Go(func() {
			name := fmt.Sprintf("user%d", i%users)
			tok, err := poolerLogin(base, name, fmt.Sprintf("pw-of-user-%d", i%users))
			if err != nil {
				errs <- fmt.Errorf("login %s: %w", name, err)
				return
			}
			mu.Lock()
			refresh[name] = tok
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Refresh races, one per user at once: exactly one winner each.
	statuses := make(chan [2]int, users)
	for name, tok := range refresh {
		wg.Go(func() {
			var won, lost int
			var inner sync.WaitGroup
			var imu sync.Mutex
			for range 20 {
				inner.Go(func() {
					status := poolerPost(t, base, "/rpc/refresh_token", map[string]string{"refresh_token": tok})
					imu.Lock()
					defer imu.Unlock()
					switch status {
					case http.StatusOK:
						won++
					case http.StatusUnauthorized:
						lost++
					default:
						t.Errorf("refresh of %s: got %d, want 200 or 401", name, status)
					}
				})
			}
			inner.Wait()
			statuses <- [2]int{won, lost}
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != [2]int{1, 19} {
			t.Errorf("refresh race: got %d winners and %d refusals, want 1 and 19", s[0], s[1])
		}
	}

	// API keys at once, then disabled by another process: the change
	// notification reaches serve through AUTHD_DB_DIRECT_URL.
	for range 32 {
		wg.Go(func() {
			if got := verifyKey(t, base, keyPlain); got != http.StatusOK {
				t.Errorf("API key through the pooler: got %d, want 200", got)
			}
		})
	}
	wg.Wait()
	mustRun(t, env, "", "apikey", "disable", keyID)
	deadline := time.Now().Add(time.Minute)
	for verifyKey(t, base, keyPlain) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("a disabled key still passes a minute later (AUTHD_CACHE_RECHECK is 1h: no notification arrived)")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Logout ends the session: its refresh token is refused afterwards.
	tok, err := poolerLogin(base, "user0", "pw-of-user-0")
	if err != nil {
		t.Fatal(err)
	}
	if got := poolerPost(t, base, "/rpc/logout", map[string]string{"refresh_token": tok}); got != http.StatusNoContent {
		t.Errorf("logout: got %d, want 204", got)
	}
	if got := poolerPost(t, base, "/rpc/refresh_token", map[string]string{"refresh_token": tok}); got != http.StatusUnauthorized {
		t.Errorf("refresh after logout: got %d, want 401", got)
	}
}

// poolerLogin logs in at base and returns the refresh token.
func poolerLogin(base, name, password string) (string, error) {
	body, _ := json.Marshal(map[string]string{"user_": name, "pass": password})
	req, err := http.NewRequest(http.MethodPost, base+"/rpc/login", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "return=representation")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.RefreshToken == "" {
		return "", fmt.Errorf("got %d (%v), want 200 with a refresh token", resp.StatusCode, err)
	}
	return out.RefreshToken, nil
}

// poolerPost posts args as JSON to base+path, asking for the tokens in
// the body, and returns the status.
func poolerPost(t *testing.T, base, path string, args map[string]string) int {
	body, _ := json.Marshal(args)
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(string(body)))
	if err != nil {
		t.Error(err)
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "return=representation")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
