package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

func serveEnv(url string) map[string]string {
	env := baseEnv(url)
	env["AUTHD_ADDR"] = "127.0.0.1:0"
	env["JWT_SECRET"] = secret32
	return env
}

// TestServeRefusesToStart: problems serve can see at start-up stop it with
// an error instead of a server that fails every request.
func TestServeRefusesToStart(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // not defer: the subtests run after this function returns

	unmigrated := serveEnv(storetest.NewEmptyURL(t))
	busyPort := serveEnv(storetest.NewURL(t))
	busyPort["AUTHD_ADDR"] = busy.Addr().String()
	busyMetrics := serveEnv(storetest.NewURL(t))
	busyMetrics["AUTHD_METRICS_ADDR"] = busy.Addr().String()
	unreachable := serveEnv("postgres://postgres@127.0.0.1:1/postgres")
	unreachable["AUTHD_DB_WAIT"] = "0" // try once
	badRolePath := serveEnv(storetest.NewURL(t))
	badRolePath["AUTHD_JWT_ROLE_PATH"] = "exp.roles"
	missingSignupRole := serveEnv(storetest.NewURL(t))
	missingSignupRole["AUTHD_SIGNUP_ROLE"] = "authd_no_such_role_xyz"
	superSignupRole := serveEnv(storetest.NewURL(t))
	superSignupRole["AUTHD_SIGNUP_ROLE"] = "postgres"

	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unmigrated database", unmigrated, "authd migrate up"},
		{"port in use", busyPort, "listen on " + busy.Addr().String()},
		{"metrics port in use", busyMetrics, "AUTHD_METRICS_ADDR: listen on " + busy.Addr().String()},
		{"unreachable database", unreachable, "127.0.0.1:1"},
		{"role path over a registered claim", badRolePath, "AUTHD_JWT_ROLE_PATH"},
		{"missing sign-up role", missingSignupRole, `AUTHD_SIGNUP_ROLE: role "authd_no_such_role_xyz" does not exist`},
		{"superuser sign-up role", superSignupRole, `AUTHD_SIGNUP_ROLE: role "postgres" may not be the role of a token: it is a superuser`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, []string{"authd", "serve"}, getenv(tt.env), environList(tt.env), strings.NewReader(""), &stdout, &stderr)
			if err == nil {
				t.Fatal("serve: got no error")
			}
			if ctx.Err() != nil {
				t.Fatalf("serve only returned when the test's context expired: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
			// Logs are JSON, end with the error, and hold no warning:
			// no background job ran into the failed start-up.
			lines := jsonLines(t, stderr.String())
			if len(lines) == 0 {
				t.Fatal("nothing logged")
			}
			if last := lines[len(lines)-1]; last["level"] != "ERROR" || last["msg"] != "authd serve failed" || last["err"] != err.Error() {
				t.Errorf("last log line: got %v, want the error %q", last, err)
			}
			for _, l := range lines {
				if l["level"] == "WARN" || l["msg"] == "authd ready" {
					t.Errorf("log line %v: want no warning and no ready line", l)
				}
			}
		})
	}

	if r := runCLI(t, serveEnv(""), "", "serve", "extra"); r.err == nil {
		t.Error("serve extra: got no error")
	}
}

// TestMetricsListener: with AUTHD_METRICS_ADDR, /metrics is served on
// that listener only, beside /healthz and /readyz; the API's listener,
// which a gateway may expose, answers 404 for it as for any unknown path.
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	srv := startServer(t, storetest.NewURL(t), map[string]string{"AUTHD_METRICS_ADDR": "127.0.0.1:0"})
	m := regexp.MustCompile(`"msg":"authd metrics listening","addr":"([^"]+)"`).FindStringSubmatch(srv.stderr.String())
	if m == nil {
		t.Fatalf("no metrics listening line in the log:\n%s", srv.stderr.String())
	}
	ops := "http://" + m[1]
	get := func(method, url string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}

	code, body := get(http.MethodGet, srv.base+"/metrics")
	if want := `{"code":"PGRST125","details":null,"hint":null,"message":"Invalid path specified in request URL"}`; code != http.StatusNotFound || body != want {
		t.Errorf("API GET /metrics: got %d %s, want 404 %s", code, body, want)
	}
	if code, _ := get(http.MethodHead, srv.base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("API HEAD /metrics: got %d, want 404", code)
	}
	if code, _ := get(http.MethodGet, srv.base+"/healthz"); code != http.StatusOK {
		t.Errorf("API GET /healthz: got %d, want 200 (probes stay on the API's port)", code)
	}

	code, body = get(http.MethodGet, ops+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("metrics listener GET /metrics: got %d %s, want 200", code, body)
	}
	for _, want := range []string{
		// The API's request above, counted on the API's registry.
		`authd_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`authd_logins_total{result="succeeded"} 0`,
		`authd_purged_total{kind="session"} `,
		`authd_db_pool_max_connections `,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics listener's /metrics lacks %s", want)
		}
	}
	for path, want := range map[string]string{
		"/healthz": `{"status":"ok"}`,
		"/readyz":  `{"status":"ok","database":"ok"}`,
	} {
		if code, body := get(http.MethodGet, ops+path); code != http.StatusOK || body != want {
			t.Errorf("metrics listener GET %s: got %d %s, want 200 %s", path, code, body, want)
		}
	}
	if code, body := get(http.MethodHead, ops+"/metrics"); code != http.StatusOK || body != "" {
		t.Errorf("metrics listener HEAD /metrics: got %d %q, want 200 and no body", code, body)
	}
	if code, _ := get(http.MethodGet, ops+"/rpc/login"); code != http.StatusNotFound {
		t.Errorf("metrics listener GET /rpc/login: got %d, want 404: the API is not served there", code)
	}
}

// TestServeDrain: cancelling serve's context (SIGTERM in main) lets a
// request in flight finish, then run returns nil.
func TestServeDrain(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	mustRun(t, baseEnv(url), "pw-of-alice\n", "user", "add", "alice", "--role", role)
	srv := startServer(t, url, nil)

	// Send a login's headers, and all of its body but the last byte once
	// the handler reads it, so the server holds a request in flight when
	// it is told to stop. Go's server answers "100 Continue" when the
	// handler first reads the body: that is the sign, rather than a sleep.
	body := `{"user_":"alice","pass":"pw-of-alice"}`
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /rpc/login HTTP/1.1\r\nHost: authd\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
		len(body))
	answers := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(answers, nil); err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("login with Expect: 100-continue: got %v (%v), want 100 Continue", resp, err)
	}
	if _, err := conn.Write([]byte(body[:len(body)-1])); err != nil {
		t.Fatal(err)
	}

	srv.cancel()
	// The listener closes; new connections are refused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.base, "http://"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 10s after cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-srv.done:
		t.Fatalf("run returned (%v) with a request in flight", err)
	default:
	}

	if _, err := conn.Write([]byte(body[len(body)-1:])); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(answers, nil)
	if err != nil {
		t.Fatalf("response to the request in flight: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("login in flight during shutdown: got %d, want 204", resp.StatusCode)
	}

	logs := srv.stop(t)
	if !strings.Contains(logs, "shutting down") {
		t.Errorf("logs do not record the shutdown:\n%s", logs)
	}
	if n := count(t, url, `select count(*) from auth.session where username = 'alice'`); n != 1 {
		t.Errorf("sessions of the login in flight: got %d, want 1", n)
	}
}

// TestServeStatementTimeout: a statement stuck behind a lock fails after
// AUTHD_STATEMENT_TIMEOUT with a 503 the client may retry, and the server
// is fine once the lock goes.
func TestServeStatementTimeout(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	mustRun(t, baseEnv(url), "pw-of-tim\n", "user", "add", "tim", "--role", role)
	s := startServer(t, url, map[string]string{"AUTHD_STATEMENT_TIMEOUT": "300ms"})

	conn := connect(t, url)
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The session insert needs a key-share lock on the user's row.
	if _, err := tx.Exec(ctx, `select 1 from auth.user where username = 'tim' for update`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := s.post(t, "/rpc/login", `{"user_":"tim","pass":"pw-of-tim"}`, nil)
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "PT503") {
		t.Errorf("login behind a lock: got %d %s, want 503 PT503", r.StatusCode, r.body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("login behind a lock took %s, want about the 300 ms timeout", d)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := s.post(t, "/rpc/login", `{"user_":"tim","pass":"pw-of-tim"}`, nil); r.StatusCode != http.StatusNoContent {
		t.Errorf("login after the lock: got %d %s", r.StatusCode, r.body)
	}
}

// TestServeSignup: AUTHD_SIGNUP_ROLE turns POST /rpc/signup on, with
// AUTHD_PASSWORD_MIN_LENGTH's policy and AUTHD_SIGNUP_PER_IP's limit.
func TestServeSignup(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	s := startServer(t, url, map[string]string{
		"AUTHD_SIGNUP_ROLE": role, "AUTHD_SIGNUP_PER_IP": "1", "AUTHD_PASSWORD_MIN_LENGTH": "12",
	})
	if r := s.post(t, "/rpc/signup", `{"user_":"zoe","pass":"eleven char"}`, nil); r.StatusCode != http.StatusBadRequest {
		t.Errorf("sign-up with an 11-character password: got %d %s, want 400", r.StatusCode, r.body)
	}
	if r := s.post(t, "/rpc/signup", `{"user_":"zoe","pass":"twelve chars"}`, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-up: got %d %s, want 204", r.StatusCode, r.body)
	}
	if r := s.post(t, "/rpc/signup", `{"user_":"zed","pass":"twelve chars"}`, nil); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("second sign-up from one client: got %d %s, want 429", r.StatusCode, r.body)
	}
	if r := s.post(t, "/rpc/login", `{"user_":"zoe","pass":"twelve chars"}`, nil); r.StatusCode != http.StatusNoContent {
		t.Errorf("login after sign-up: got %d %s, want 204", r.StatusCode, r.body)
	}
	var got string
	if err := connect(t, url).QueryRow(context.Background(), `select role from auth.user where username = 'zoe'`).Scan(&got); err != nil || got != role {
		t.Errorf("zoe's role: got %q (%v), want %q", got, err, role)
	}
}
