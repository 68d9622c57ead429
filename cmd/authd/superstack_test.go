package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/store/storetest"
)

// The SuperStack guide's own curl session shows this refresh token.
const superstackRefreshToken = "028caa10-d087-41d8-8d8c-62d60bb419b5"

// TestSuperStackUpgrade starts from a database set up by the SuperStack
// guide's SQL (testdata/superstack.sql), upgrades it with `authd migrate
// up`, and checks that its users keep their passwords while its plaintext
// refresh tokens die.
func TestSuperStackUpgrade(t *testing.T) {
	t.Parallel()
	url := storetest.NewEmptyURL(t)
	role := storetest.NewRole(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	schema, err := os.ReadFile("testdata/superstack.sql")
	if err != nil {
		t.Fatal(err)
	}
	// The fixture must never change the cluster: no ALTER SYSTEM, and no
	// psql meta-commands (which the server would reject anyway).
	if regexp.MustCompile(`(?im)^\s*(alter\s+system|\\)`).Match(schema) {
		t.Fatal("testdata/superstack.sql holds an ALTER SYSTEM or a psql meta-command")
	}
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, string(schema)); err != nil {
		t.Fatalf("load testdata/superstack.sql: %v", err)
	}
	// Users and tokens the SuperStack way: the encrypt_pass trigger hashes
	// the password, auth.login stored the token in clear.
	if _, err := conn.Exec(ctx, `insert into auth.user (username, password, role) values ('alice', 'wonderland', $1)`, role); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `insert into auth.refresh_token (token, username) values ($1, 'alice')`, superstackRefreshToken); err != nil {
		t.Fatal(err)
	}
	var oldHash string
	if err := conn.QueryRow(ctx, `select password from auth.user where username = 'alice'`).Scan(&oldHash); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(oldHash, "$2a$06$") {
		t.Fatalf("SuperStack's hash: got %q, want pgcrypto's $2a$06$…", oldHash)
	}

	env := baseEnv(url)
	mustRun(t, env, "", "migrate", "up")

	// The password survives, as it was.
	hash := passwordHash(t, url, "alice")
	if hash != oldHash {
		t.Errorf("hash after upgrade: got %q, want it unchanged %q", hash, oldHash)
	}
	if !store.CheckPassword(hash, "wonderland") {
		t.Error("alice's SuperStack password does not verify after the upgrade")
	}
	if n := count(t, url, `select count(*) from pg_trigger where tgname = 'encrypt_pass'`); n != 0 {
		t.Errorf("encrypt_pass triggers after upgrade: got %d, want 0", n)
	}
	if n := count(t, url, `select count(*) from pg_proc where proname in ('encrypt_pass', 'login', 'logout', 'refresh_token', 'sign_raw', 'generate_access_token', 'url_encode') and pronamespace = 'auth'::regnamespace`); n != 0 {
		t.Errorf("SuperStack functions left in schema auth: got %d, want 0", n)
	}

	// authd writes hashes, and they are stored as given, not hashed again.
	db := storetest.Open(t, url)
	newHash, err := store.HashPassword("looking-glass", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AddUser(ctx, "bob", newHash, role); err != nil {
		t.Fatalf("add user after upgrade: %v", err)
	}
	if got := passwordHash(t, url, "bob"); got != newHash {
		t.Errorf("stored hash of a new user: got %q, want %q as given", got, newHash)
	}
	// And so does `authd user passwd`, through the same column.
	mustRun(t, env, "queen-of-hearts\n", "user", "passwd", "bob")
	if h := passwordHash(t, url, "bob"); !store.CheckPassword(h, "queen-of-hearts") {
		t.Errorf("user passwd after upgrade stored %q, which does not verify", h)
	}

	// The plaintext token is gone: no column for it, and no row anywhere
	// holds it.
	if n := count(t, url, `select count(*) from information_schema.columns where table_schema = 'auth' and table_name = 'refresh_token' and column_name = 'token'`); n != 0 {
		t.Errorf("auth.refresh_token still has a token column")
	}
	if n := count(t, url, `select count(*) from auth.refresh_token`); n != 0 {
		t.Errorf("auth.refresh_token rows after upgrade: got %d, want 0", n)
	}
	rows, err := conn.Query(ctx, `
		select quote_ident(table_schema) || '.' || quote_ident(table_name)
		  from information_schema.tables
		 where table_type = 'BASE TABLE'
		   and table_schema not in ('pg_catalog', 'information_schema')`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		var n int
		if err := conn.QueryRow(ctx, `select count(*) from `+tbl+` t where t::text like '%' || $1 || '%'`, superstackRefreshToken).Scan(&n); err != nil {
			t.Fatalf("search %s: %v", tbl, err)
		}
		if n != 0 {
			t.Errorf("the SuperStack refresh token is still in %s (%d rows)", tbl, n)
		}
	}

	// Serve the upgraded database.
	srv := startServer(t, url, map[string]string{"AUTHD_BCRYPT_COST": "10"})

	resp := srv.post(t, "/rpc/login", `{"user_":"alice","pass":"wonderland"}`, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("login with the SuperStack password: got %d %s, want 204", resp.StatusCode, resp.body)
	}
	upgraded := passwordHash(t, url, "alice")
	if !strings.HasPrefix(upgraded, "$2a$10$") {
		t.Errorf("hash after login: got %q, want it re-hashed at cost 10 ($2a$10$…)", upgraded)
	}
	if !store.CheckPassword(upgraded, "wonderland") {
		t.Error("the upgraded hash does not verify the password")
	}
	var refresh string
	for _, c := range resp.cookies {
		if c.Name == "refresh_token" && c.Value != "" {
			refresh = c.Value
		}
	}
	if refresh == "" {
		t.Fatalf("login set no refresh_token cookie: %v", resp.cookies)
	}

	// The token issued by SuperStack's auth.login is dead; authd's works.
	resp = srv.post(t, "/rpc/refresh_token", "", []*http.Cookie{{Name: "refresh_token", Value: superstackRefreshToken}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("refresh with the SuperStack token: got %d %s, want 401", resp.StatusCode, resp.body)
	}
	var body struct{ Code string }
	if err := json.Unmarshal(resp.body, &body); err != nil || body.Code != "PT401" {
		t.Errorf("refresh with the SuperStack token: body %s, want code PT401", resp.body)
	}
	resp = srv.post(t, "/rpc/refresh_token", "", []*http.Cookie{{Name: "refresh_token", Value: refresh}})
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("refresh with the token from login: got %d %s, want 204", resp.StatusCode, resp.body)
	}

	// A second login finds nothing to upgrade.
	resp = srv.post(t, "/rpc/login", `{"user_":"alice","pass":"wonderland"}`, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("second login: got %d %s, want 204", resp.StatusCode, resp.body)
	}
	if h := passwordHash(t, url, "alice"); h != upgraded {
		t.Errorf("hash after second login: got %q, want unchanged %q", h, upgraded)
	}

	logs := srv.stop(t)
	for _, secret := range []string{"wonderland", refresh, srv.secret} {
		if strings.Contains(logs, secret) {
			t.Errorf("server logs contain the secret %q:\n%s", secret, logs)
		}
	}
}

// testServer is an `authd serve` running in a goroutine of the test.
type testServer struct {
	base   string
	secret string
	cancel context.CancelFunc
	done   chan error
	stderr *syncBuffer
}

// listening finds the address in serve's JSON log line saying it is ready.
var listening = regexp.MustCompile(`"msg":"authd ready","addr":"([^"]+)"`)

// startServer runs `authd serve` on the database at url, on a free port,
// with extra environment variables.
func startServer(t *testing.T, url string, extra map[string]string) *testServer {
	t.Helper()
	s := &testServer{
		secret: "a-test-secret-that-is-long-enough-0123456789",
		done:   make(chan error, 1),
		stderr: &syncBuffer{},
	}
	env := baseEnv(url)
	env["AUTHD_ADDR"] = "127.0.0.1:0"
	env["JWT_SECRET"] = s.secret
	env["AUTHD_SHUTDOWN_GRACE"] = "5s"
	for k, v := range extra {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	stdout := &syncBuffer{}
	go func() {
		s.done <- run(ctx, []string{"authd", "serve"}, getenv(env), environList(env), strings.NewReader(""), stdout, s.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	})
	deadline := time.After(time.Minute)
	for {
		if m := listening.FindStringSubmatch(s.stderr.String()); m != nil {
			s.base = "http://" + m[1]
			return s
		}
		select {
		case err := <-s.done:
			s.done <- err // for the cleanup
			t.Fatalf("authd serve exited before listening: %v\n%s", err, s.stderr.String())
		case <-deadline:
			t.Fatalf("authd serve did not print its address; stdout %q, stderr %q", stdout.String(), s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type response struct {
	StatusCode int
	body       []byte
	cookies    []*http.Cookie
}

// post sends a JSON POST to path with cookies.
func (s *testServer) post(t *testing.T, path, body string, cookies []*http.Cookie) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{StatusCode: resp.StatusCode, body: bytes.TrimSpace(b), cookies: resp.Cookies()}
}

// stop cancels the server's context, as SIGTERM does, and asserts that run
// returns nil: a graceful drain. It returns the server's logs.
func (s *testServer) stop(t *testing.T) string {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- nil // for the cleanup
		if err != nil {
			t.Errorf("run after cancel: got %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("authd serve did not return after its context was cancelled")
	}
	return s.stderr.String()
}
