package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"authd/identity"
	"authd/server"
	"authd/store"
	"authd/store/storetest"
	"authd/token"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const (
	testSecret   = "test-secret-that-is-at-least-32-bytes-long"
	testUser     = "alice"
	testPassword = "correct horse battery staple"
	testCost     = 4 // bcrypt's minimum: fast tests; cost itself is tested where it matters
)

// env is one authd API on a fresh database, with one user.
type env struct {
	t      testing.TB
	url    string // database URL
	db     *store.DB
	role   string
	srv    *httptest.Server
	api    *server.Server
	core   *identity.Core
	tokens *token.Issuer
	logs   *syncBuffer
	cfg    server.Config
}

type option func(*server.Config, *identity.Config, *envOpts)

type envOpts struct {
	accessTTL time.Duration
	audience  string
	issuer    string
	keys      *token.KeySet
}

func withGrace(d time.Duration) option {
	return func(c *server.Config, _ *identity.Config, _ *envOpts) { c.ReuseGrace = d }
}

func withSessionLifetime(d time.Duration) option {
	return func(c *server.Config, _ *identity.Config, _ *envOpts) { c.SessionLifetime = d }
}

func withAccessTTL(d time.Duration) option {
	return func(_ *server.Config, _ *identity.Config, o *envOpts) { o.accessTTL = d }
}

func withCost(n int) option {
	return func(_ *server.Config, c *identity.Config, _ *envOpts) { c.BcryptCost = n }
}

func withCookie(cc server.CookieConfig) option {
	return func(c *server.Config, _ *identity.Config, _ *envOpts) { c.Cookie = cc }
}

func withAllowedOrigins(origins ...string) option {
	return func(c *server.Config, _ *identity.Config, _ *envOpts) { c.AllowedOrigins = origins }
}

func withRequestTimeout(d time.Duration) option {
	return func(c *server.Config, _ *identity.Config, _ *envOpts) { c.RequestTimeout = d }
}

func withLoginLimits(perUser, perIP int) option {
	return func(_ *server.Config, c *identity.Config, _ *envOpts) {
		c.LoginFailuresPerUser, c.LoginFailuresPerIP = perUser, perIP
	}
}

func withAPIKeyTTL(d time.Duration) option {
	return func(_ *server.Config, c *identity.Config, _ *envOpts) { c.APIKeyTokenTTL = d }
}

func withKeys(ks *token.KeySet) option {
	return func(_ *server.Config, _ *identity.Config, o *envOpts) { o.keys = ks }
}

func withIssuer(iss string) option {
	return func(_ *server.Config, _ *identity.Config, o *envOpts) { o.issuer = iss }
}

func withLoginQueueWait(d time.Duration) option {
	return func(_ *server.Config, c *identity.Config, _ *envOpts) { c.LoginQueueWait = d }
}

func withLoginQueue(slots, queue int) option {
	return func(_ *server.Config, c *identity.Config, _ *envOpts) { c.BcryptSlots, c.LoginQueue = slots, queue }
}

// withLoginsPerIP sets the logins a minute one client address gets.
func withLoginsPerIP(n int) option {
	return func(_ *server.Config, c *identity.Config, _ *envOpts) { c.LoginsPerIP = n }
}

// withBcryptCPUs counts cpus CPUs for the default slots (narrow: one
// fewer, wide: all), whatever this machine has.
func withBcryptCPUs(cpus int) option {
	return func(_ *server.Config, c *identity.Config, _ *envOpts) { c.BcryptCPUs = cpus }
}

func withAudience(aud string) option {
	return func(_ *server.Config, _ *identity.Config, o *envOpts) { o.audience = aud }
}

// withClock runs the server, and the tokens it issues, on c.
func withClock(c *clock) option {
	return func(cfg *server.Config, icfg *identity.Config, _ *envOpts) { cfg.Now, icfg.Now = c.now, c.now }
}

// clock is a settable clock for servers under test: time moves only when
// the test moves it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func defaultCookies() server.CookieConfig {
	return server.CookieConfig{SameSite: http.SameSiteLaxMode, RefreshSameSite: http.SameSiteStrictMode}
}

func newEnv(t testing.TB, opts ...option) *env {
	t.Helper()
	url := storetest.NewURL(t)
	e := &env{t: t, url: url, db: storetest.Open(t, url), role: storetest.NewRole(t)}
	e.addUser(testUser, testPassword, e.role)
	e.srv, e.core, e.cfg, e.tokens, e.logs = e.newServer(opts...)
	e.api = e.srv.Config.Handler.(*server.Server)
	return e
}

// newServer starts one more authd API on e's database: several servers
// on one database behave as several authd processes.
func (e *env) newServer(opts ...option) (*httptest.Server, *identity.Core, server.Config, *token.Issuer, *syncBuffer) {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	cfg := server.Config{
		RefreshTTL: 30 * 24 * time.Hour,
		ReuseGrace: 10 * time.Second,
		Cookie:     defaultCookies(),
		Metrics:    reg,
		// authd's default: the test clients, on loopback, stand for a
		// gateway and name the client in X-Forwarded-For (loginFrom).
		TrustedProxies: mustTrust(e.t, server.DefaultTrustedProxies),
	}
	icfg := identity.Config{BcryptCost: testCost, Metrics: reg}
	o := envOpts{accessTTL: time.Hour}
	for _, opt := range opts {
		opt(&cfg, &icfg, &o)
	}
	ks := o.keys
	if ks == nil {
		var err error
		if ks, err = token.NewKeySet([]byte(testSecret), nil, ""); err != nil {
			e.t.Fatal(err)
		}
	}
	apiKeyTTL := icfg.APIKeyTokenTTL
	if apiKeyTTL == 0 {
		apiKeyTTL = identity.DefaultAPIKeyTokenTTL
	}
	// As authd serve has it: the longest-lived tokens authd mints.
	iss, err := token.New(ks, token.Options{TTL: o.accessTTL, Audience: o.audience, Issuer: o.issuer, Now: cfg.Now,
		MaxLifetime: max(o.accessTTL, apiKeyTTL)})
	if err != nil {
		e.t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	api, core := mustNewAPI(e.t, cfg, icfg, e.db, iss, log)
	srv := httptest.NewServer(api)
	e.t.Cleanup(srv.Close)
	return srv, core, cfg, iss, logs
}

func mustTrust(t testing.TB, proxies string) []netip.Prefix {
	t.Helper()
	p, err := server.ParseTrustedProxies(proxies)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mustNewAPI builds the identity core and the HTTP API on it, as
// `authd serve` does, with both series on one registry.
func mustNewAPI(t testing.TB, cfg server.Config, icfg identity.Config, db *store.DB, iss *token.Issuer, log *slog.Logger) (*server.Server, *identity.Core) {
	t.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	icfg.Metrics = cfg.Metrics
	core, err := identity.New(icfg, db, iss, log)
	if err != nil {
		t.Fatal(err)
	}
	return server.New(cfg, core, db, iss, log), core
}

func (e *env) addUser(name, password, role string) {
	e.t.Helper()
	hash, err := store.HashPassword(password, testCost)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.AddUser(context.Background(), name, hash, role); err != nil {
		e.t.Fatal(err)
	}
}

// response is what a client sees.
type response struct {
	status  int
	header  http.Header
	body    string
	cookies []*http.Cookie
	elapsed time.Duration
}

func (r response) setCookies() []string { return r.header.Values("Set-Cookie") }

// cookie returns the Set-Cookie named name with path path.
func (r response) cookie(name, path string) *http.Cookie {
	for _, c := range r.cookies {
		if c.Name == name && c.Path == path {
			return c
		}
	}
	return nil
}

func do(t testing.TB, client *http.Client, method, url string, header http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if client == nil {
		client = http.DefaultClient
	}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b), cookies: res.Cookies(), elapsed: time.Since(start)}
}

func (e *env) post(path string, header http.Header, body string) response {
	e.t.Helper()
	return do(e.t, nil, http.MethodPost, e.srv.URL+path, header, body)
}

func jsonHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Content-Profile": {"auth"}}
}

func formHeader() http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Content-Profile": {"auth"}}
}

func loginBody(user, pass string) string {
	return `{"user_": "` + user + `", "pass": "` + pass + `"}`
}

// login logs testUser in and returns the response, failing on anything
// but 204.
func (e *env) login() response {
	e.t.Helper()
	r := e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
	if r.status != http.StatusNoContent {
		e.t.Fatalf("login: got status %d (%s), want 204", r.status, r.body)
	}
	return r
}

func (e *env) refreshWith(token string) response {
	e.t.Helper()
	h := jsonHeader()
	h.Set("Cookie", "refresh_token="+token)
	return e.post("/rpc/refresh_token", h, "")
}

func refreshValue(t testing.TB, r response) string {
	t.Helper()
	c := r.cookie("refresh_token", "/rpc/refresh_token")
	if c == nil || c.Value == "" {
		t.Fatalf("no refresh_token cookie at /rpc/refresh_token in %q", r.setCookies())
	}
	return c.Value
}

func accessValue(t testing.TB, r response) string {
	t.Helper()
	c := r.cookie("access_token", "/")
	if c == nil || c.Value == "" {
		t.Fatalf("no access_token cookie at / in %q", r.setCookies())
	}
	return c.Value
}

// verifyJWT checks an access token with the shared secret, as PostgREST
// would, independently of authd's own parser.
func verifyJWT(t *testing.T, raw string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()).
		ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil })
	if err != nil {
		t.Fatalf("access token does not verify with the shared secret: %v", err)
	}
	return claims
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool().Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// metric returns the value of the series name (with its labels, if any)
// on e's /metrics.
func (e *env) metric(name string) float64 {
	e.t.Helper()
	r := do(e.t, nil, http.MethodGet, e.srv.URL+"/metrics", nil, "")
	wantStatus(e.t, r, http.StatusOK)
	for line := range strings.SplitSeq(r.body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	e.t.Fatalf("metrics lack %s", name)
	return 0
}

// waitFor polls cond until it holds, failing t after a minute: for what
// a test waits on but is not about how fast it comes, with a deadline
// far beyond a loaded machine.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after a minute waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("got status %d, want %d (body %s)", r.status, want, r.body)
	}
}

func wantBody(t testing.TB, r response, want string) {
	t.Helper()
	if r.body != want {
		t.Errorf("got body %s, want %s", r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("got Content-Type %q, want %q", ct, "application/json; charset=utf-8")
	}
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
