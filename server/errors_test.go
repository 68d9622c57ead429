package server_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"authd/identity"
	"authd/server"
	"authd/store"
	"authd/store/storetest"
	"authd/token"
)

// TestClientErrors: everything a client can get wrong is a 4xx in
// PostgREST's shape, sets no cookie and writes nothing.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := `{"user_": "alice", "pass": "` + strings.Repeat("x", 9000) + `"}`
	cases := []struct {
		name    string
		method  string
		path    string
		header  http.Header
		body    string
		status  int
		want    string
		allowed string
	}{
		{
			name: "other schema", method: "POST", path: "/rpc/login",
			header: http.Header{"Content-Profile": {"api"}}, body: loginBody(testUser, testPassword),
			status: 406, want: `{"code":"PGRST106","details":null,"hint":"Only the following schemas are exposed: auth","message":"Invalid schema: api"}`,
		},
		{
			name: "other schema on refresh", method: "POST", path: "/rpc/refresh_token",
			header: http.Header{"Content-Profile": {"public"}},
			status: 406, want: `{"code":"PGRST106","details":null,"hint":"Only the following schemas are exposed: auth","message":"Invalid schema: public"}`,
		},
		{
			name: "text/plain", method: "POST", path: "/rpc/login",
			header: http.Header{"Content-Type": {"text/plain"}}, body: "alice",
			status: 415, want: `{"code":"PGRST102","details":null,"hint":null,"message":"Content-Type not acceptable: text/plain"}`,
		},
		{
			name: "malformed json", method: "POST", path: "/rpc/login",
			header: jsonHeader(), body: `{"user_": "alice", `,
			status: 400, want: `{"code":"PGRST102","details":null,"hint":null,"message":"Empty or invalid json"}`,
		},
		{
			name: "json array", method: "POST", path: "/rpc/login",
			header: jsonHeader(), body: `[{"user_": "alice", "pass": "x"}]`,
			status: 400, want: `{"code":"PGRST102","details":null,"hint":null,"message":"Empty or invalid json"}`,
		},
		{
			name: "trailing garbage", method: "POST", path: "/rpc/login",
			header: jsonHeader(), body: loginBody(testUser, testPassword) + `x`,
			status: 400, want: `{"code":"PGRST102","details":null,"hint":null,"message":"Empty or invalid json"}`,
		},
		{
			name: "unknown argument", method: "POST", path: "/rpc/login",
			header: jsonHeader(), body: `{"user_": "alice", "pass": "x", "remember": true}`,
			status: 404,
			want: `{"code":"PGRST202","details":"Searched for the function auth.login with parameters pass, remember, user_ or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.login(pass, user_)","message":"Could not find the function auth.login(pass, remember, user_) in the schema cache"}`,
		},
		{
			name: "missing argument", method: "POST", path: "/rpc/login",
			header: jsonHeader(), body: `{"user_": "alice"}`,
			status: 404,
			want: `{"code":"PGRST202","details":"Searched for the function auth.login with parameters user_ or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.login(pass, user_)","message":"Could not find the function auth.login(user_) in the schema cache"}`,
		},
		{
			name: "empty body", method: "POST", path: "/rpc/login",
			header: jsonHeader(), body: ``,
			status: 404,
			want: `{"code":"PGRST202","details":"Searched for the function auth.login with parameters  or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.login(pass, user_)","message":"Could not find the function auth.login() in the schema cache"}`,
		},
		{
			name: "unknown argument on logout", method: "POST", path: "/rpc/logout",
			header: jsonHeader(), body: `{"everywhere": true}`,
			status: 404,
			want: `{"code":"PGRST202","details":"Searched for the function auth.logout with parameters everywhere or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",` +
				`"hint":"Perhaps you meant to call the function auth.logout()","message":"Could not find the function auth.logout(everywhere) in the schema cache"}`,
		},
		{
			name: "repeated form field", method: "POST", path: "/rpc/login",
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, body: "user_=alice&user_=bob&pass=x",
			status: 400, want: `{"code":"PGRST102","details":null,"hint":null,"message":"Invalid form data: repeated field user_"}`,
		},
		{
			name: "bad form encoding", method: "POST", path: "/rpc/login",
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, body: "user_=%zz&pass=x",
			status: 400, want: `{"code":"PGRST102","details":null,"hint":null,"message":"Invalid form data"}`,
		},
		{
			name: "body too large", method: "POST", path: "/rpc/login",
			header: jsonHeader(), body: big,
			status: 413, want: `{"code":"PT413","details":null,"hint":null,"message":"Request body is larger than 8192 bytes"}`,
		},
		{
			name: "GET login", method: "GET", path: "/rpc/login",
			status: 405, want: `{"code":"PGRST101","details":null,"hint":null,"message":"Cannot use the GET method on RPC"}`, allowed: "OPTIONS, POST",
		},
		{
			name: "PUT logout", method: "PUT", path: "/rpc/logout",
			status: 405, want: `{"code":"PGRST101","details":null,"hint":null,"message":"Cannot use the PUT method on RPC"}`, allowed: "OPTIONS, POST",
		},
		{
			name: "POST healthz", method: "POST", path: "/healthz",
			status: 405, want: `{"code":"PGRST101","details":null,"hint":null,"message":"Cannot use the POST method on /healthz"}`, allowed: "OPTIONS, GET, HEAD",
		},
		{
			name: "unknown path", method: "POST", path: "/rpc/no_such_function",
			status: 404, want: `{"code":"PGRST125","details":null,"hint":null,"message":"Invalid path specified in request URL"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, nil, tc.method, e.srv.URL+tc.path, tc.header, tc.body)
			wantStatus(t, r, tc.status)
			wantBody(t, r, tc.want)
			if got := r.header.Get("Allow"); got != tc.allowed {
				t.Errorf("got Allow %q, want %q", got, tc.allowed)
			}
			if len(r.cookies) != 0 {
				t.Errorf("got cookies %q", r.setCookies())
			}
		})
	}
	if n := e.count(`select count(*) from auth.session`); n != 0 {
		t.Errorf("bad requests wrote %d sessions", n)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := do(t, nil, "GET", e.srv.URL+"/healthz", nil, "")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, `{"status":"ok"}`)
	r = do(t, nil, "GET", e.srv.URL+"/readyz", nil, "")
	wantStatus(t, r, http.StatusOK)
	wantBody(t, r, `{"status":"ok","database":"ok"}`)
}

func TestReadyzWithoutDatabase(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, storetest.NewURL(t))
	iss, _ := token.NewIssuer([]byte(testSecret), time.Hour, "", nil)
	h, _ := mustNewAPI(t, server.Config{Cookie: defaultCookies()}, identity.Config{BcryptCost: testCost}, db, iss, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	defer srv.Close()
	db.Close() // the database goes away
	r := do(t, nil, "GET", srv.URL+"/readyz", nil, "")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantBody(t, r, `{"code":"PT503","details":null,"hint":null,"message":"Database unavailable"}`)
	wantStatus(t, do(t, nil, "GET", srv.URL+"/healthz", nil, ""), http.StatusOK)
	// A login while the database is down is a 500, not a hang or a crash.
	r = do(t, nil, "POST", srv.URL+"/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
	wantStatus(t, r, http.StatusInternalServerError)
	wantBody(t, r, `{"code":"PT500","details":null,"hint":null,"message":"Internal server error"}`)
}

// TestLogsHoldNoSecrets: a full session's log has no password and no
// token, but does have one line per request.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(0))
	login := e.login()
	e.post("/rpc/login", jsonHeader(), loginBody(testUser, "wrong-password-here"))
	access, refresh := accessValue(t, login), refreshValue(t, login)
	r := e.refreshWith(refresh)
	e.refreshWith(refresh) // reuse: logged as a warning
	h := jsonHeader()
	h.Set("Authorization", "Bearer "+accessValue(t, r))
	e.post("/rpc/logout", h, "")

	logs := e.logs.String()
	for _, secret := range []string{testPassword, "wrong-password-here", access, refresh, refreshValue(t, r), testSecret, strings.Split(access, ".")[2]} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains a secret %.12q…:\n%s", secret, logs)
		}
	}
	if n := strings.Count(logs, `"msg":"request"`); n != 5 {
		t.Errorf("got %d request log lines, want 5:\n%s", n, logs)
	}
}

// TestDeadlineIsA503: a request whose deadline passes while it waits on the
// database is told to retry (503), not that authd broke (500).
func TestDeadlineIsA503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRequestTimeout(300*time.Millisecond))
	e.lockUser(testUser)
	r := e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantBody(t, r, `{"code":"PT503","details":null,"hint":null,"message":"Request timed out"}`)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// TestRefreshDeadlineIsA503: a refresh whose rotation waits on the
// database past the request's deadline (its token's row locked) is told
// to retry at the deadline, whoever writes the rotation; once the lock is
// gone the same token still refreshes.
func TestRefreshDeadlineIsA503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRequestTimeout(300*time.Millisecond))
	refresh := refreshValue(t, e.login())
	tx, err := e.db.Pool().Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(context.Background(), `select 1 from auth.refresh_token where token_hash = $1 for update`, token.HashRefresh(refresh)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := e.refreshWith(refresh)
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantBody(t, r, `{"code":"PT503","details":null,"hint":null,"message":"Request timed out"}`)
	// Loose: the deadline is 300 ms; the rotation's own bound is 10 s.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %s, want at the 300 ms deadline", d)
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.refreshWith(refresh), http.StatusNoContent)
}

// TestClientGoneIsNotAFailure: a client that hangs up while its request
// waits on the database is counted as 499 (nginx's "client closed
// request"), not a 500, and nothing is logged as an error.
func TestClientGoneIsNotAFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.lockUser(testUser)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/rpc/login", strings.NewReader(loginBody(testUser, testPassword)))
	req.Header.Set("Content-Type", "application/json")
	answered := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("the login answered %d with the user's row locked", resp.StatusCode)
		}
		answered <- err
	}()
	// Hang up once the login waits on the lock, however long it took to
	// get there.
	waitFor(t, "the login to wait on the user's row lock", func() bool {
		return e.count(`select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`) > 0
	})
	cancel()
	if err := <-answered; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want the client's own cancellation", err)
	}
	want := `authd_http_requests_total{method="POST",route="/rpc/login",status="499"} 1`
	waitFor(t, "metrics to show "+want, func() bool {
		return strings.Contains(do(t, nil, http.MethodGet, e.srv.URL+"/metrics", nil, "").body, want)
	})
	if logs := e.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("a client hanging up was logged as an error:\n%s", logs)
	}
}

// TestDatabaseDownIsA503: with the database unreachable, requests that need
// it fail at once with 503 + Retry-After in PostgREST's shape, /readyz says
// not ready and /healthz stays up; when the database is back, so is authd.
func TestDatabaseDownIsA503(t *testing.T) {
	t.Parallel()
	dbURL, proxy := viaProxy(t, storetest.NewURL(t))
	db := storetest.Open(t, dbURL)
	role := storetest.NewRole(t)
	hash, _ := store.HashPassword(testPassword, testCost)
	if err := db.AddUser(context.Background(), testUser, hash, role); err != nil {
		t.Fatal(err)
	}
	iss, _ := token.NewIssuer([]byte(testSecret), time.Hour, "", nil)
	h, _ := mustNewAPI(t, server.Config{
		Cookie: defaultCookies(), RefreshTTL: time.Hour,
		// The default grace: a refresh whose answer was lost when the
		// database went away may be retried with the same token.
		ReuseGrace: 10 * time.Second,
	}, identity.Config{BcryptCost: testCost}, db, iss, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	defer srv.Close()
	login := func() response {
		return do(t, nil, http.MethodPost, srv.URL+"/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
	}
	refresh := refreshValue(t, login())

	proxy.stop() // the database goes away, connections and all
	for _, r := range []response{login(), e2eRefresh(t, srv.URL, refresh)} {
		wantStatus(t, r, http.StatusServiceUnavailable)
		wantBody(t, r, `{"code":"PT503","details":null,"hint":null,"message":"Database unavailable"}`)
		if r.header.Get("Retry-After") != "1" || r.elapsed > 5*time.Second {
			t.Errorf("Retry-After %q after %s", r.header.Get("Retry-After"), r.elapsed)
		}
	}
	wantStatus(t, do(t, nil, "GET", srv.URL+"/readyz", nil, ""), http.StatusServiceUnavailable)
	wantStatus(t, do(t, nil, "GET", srv.URL+"/healthz", nil, ""), http.StatusOK)

	proxy.start() // back: the session from before the outage still refreshes
	waitFor(t, "the refresh to work again", func() bool {
		return e2eRefresh(t, srv.URL, refresh).status == http.StatusNoContent
	})
	wantStatus(t, do(t, nil, "GET", srv.URL+"/readyz", nil, ""), http.StatusOK)
}

func e2eRefresh(t *testing.T, base, tok string) response {
	h := jsonHeader()
	h.Set("Cookie", "refresh_token="+tok)
	return do(t, nil, http.MethodPost, base+"/rpc/refresh_token", h, "")
}

// viaProxy returns dbURL going through a new tcpProxy to the server that
// dbURL names: its host and port, or its Unix socket (host=/dir).
func viaProxy(t *testing.T, dbURL string) (string, *tcpProxy) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("test database URL: %v", err)
	}
	q := u.Query()
	port := cmp.Or(u.Port(), q.Get("port"), "5432")
	network, target := "tcp", net.JoinHostPort(u.Hostname(), port)
	if h := q.Get("host"); strings.HasPrefix(h, "/") {
		network, target = "unix", filepath.Join(h, ".s.PGSQL."+port)
		q.Del("host")
		q.Del("port")
		u.RawQuery = q.Encode()
	} else if h != "" || q.Has("port") || u.Hostname() == "" {
		t.Fatalf("test database URL %s: want the server's host in the URL's authority or a socket directory in host=", u.Redacted())
	}
	p := newTCPProxy(t, network, target)
	u.Host = p.addr()
	return u.String(), p
}

// tcpProxy forwards a local port to target; stop drops the listener and
// every open connection, as a database crash would, start listens again
// on the same port.
type tcpProxy struct {
	t       *testing.T
	network string
	target  string
	port    string
	mu      sync.Mutex
	ln      net.Listener
	conns   []net.Conn
}

func newTCPProxy(t *testing.T, network, target string) *tcpProxy {
	p := &tcpProxy{t: t, network: network, target: target}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) addr() string { return "127.0.0.1:" + p.port }

func (p *tcpProxy) start() {
	addr := "127.0.0.1:" + p.port
	if p.port == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	_, p.port, _ = net.SplitHostPort(ln.Addr().String())
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial(p.network, p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// lockUser holds a lock on a user's row until the test ends, so that a
// login's session insert waits on it.
func (e *env) lockUser(name string) {
	e.t.Helper()
	tx, err := e.db.Pool().Begin(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(context.Background(), `select 1 from auth.user where username = $1 for update`, name); err != nil {
		e.t.Fatal(err)
	}
}
