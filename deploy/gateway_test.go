package deploy_test

// The gateway configs in this directory, run for real: Caddy and nginx in
// front of the authd binary and an upstream that echoes what it received,
// all on 127.0.0.1. Traefik is not installed; its config is decoded
// strictly and checked for the same routes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"authd/deploy/strictyaml"
	"authd/store/storetest"
)

func TestMain(m *testing.M) {
	storetest.Main(m)
}

// pageCSP is the policy every gateway sends with the login page: the
// page's own <meta> policy plus frame-ancestors, which only a header can
// carry (clickjacking).
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// identityHeaders are what authd's verdict adds for the upstream besides
// Authorization; a client must never be able to set them.
var identityHeaders = []string{"X-Auth-User", "X-Auth-Role"}

// gateway starts one gateway in front of s and returns its base URL.
type gateway struct {
	name  string
	start func(t *testing.T, s *stack) string
}

var gateways = []gateway{
	{"caddy", startCaddy},
	{"nginx", startNginx},
}

// TestGateways runs the same session through each gateway, each with its
// own database, authd, upstream and ports.
func TestGateways(t *testing.T) {
	bin := buildAuthd(t)
	for _, g := range gateways {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, bin)
			base := g.start(t, s)
			t.Run("login page", func(t *testing.T) { checkLoginPage(t, base) })
			t.Run("public", func(t *testing.T) { checkPublic(t, s, base) })
			t.Run("cookie session", func(t *testing.T) { checkCookieSession(t, s, base) })
			t.Run("origin policy", func(t *testing.T) { checkOriginPolicy(t, base) })
			t.Run("api keys", func(t *testing.T) { checkAPIKeys(t, s, base) })
			t.Run("no metrics", func(t *testing.T) { checkNoMetrics(t, base) })
		})
	}
}

func webRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("web")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// caddyEnv keeps Caddy's state (autosave.json, certificates) in dir.
func caddyEnv(dir string, env map[string]string) []string {
	env["HOME"] = dir
	env["XDG_CONFIG_HOME"] = filepath.Join(dir, "config")
	env["XDG_DATA_HOME"] = filepath.Join(dir, "data")
	return environ(env)
}

// startCaddy runs deploy/caddy/Caddyfile as it is, its addresses given in
// the environment variables it documents.
func startCaddy(t *testing.T, s *stack) string {
	caddy := need(t, "caddy")
	base := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cmd := exec.Command(caddy, "run", "--config", filepath.Join("caddy", "Caddyfile"), "--adapter", "caddyfile")
	cmd.Env = caddyEnv(t.TempDir(), map[string]string{
		"SITE_ADDRESS":  base,
		"AUTHD_ADDR":    s.authdAddr,
		"UPSTREAM_ADDR": s.upstreamAddr,
		"WEB_ROOT":      webRoot(t),
		"CADDY_ADMIN":   "off",
	})
	p := startProc(t, "caddy", cmd)
	waitHTTP(t, p, base+"/public/ready", http.StatusOK)
	return base
}

// startNginx includes deploy/nginx/authd.conf, with its addresses, port
// and root replaced, in a minimal nginx.conf whose pid, logs and temporary
// files are in a temporary directory. The site must pass nginx -t first.
func startNginx(t *testing.T, s *stack) string {
	nginx := need(t, "nginx")
	dir := t.TempDir()
	port := freePort(t)
	conf := renderNginx(t, dir, map[string]string{
		"server 127.0.0.1:3001;": "server " + s.authdAddr + ";",
		"server 127.0.0.1:8080;": "server " + s.upstreamAddr + ";",
		"listen 80;":             fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"root /srv/authd/web;":   "root " + webRoot(t) + ";",
	})
	args := []string{"-p", dir + "/", "-c", conf, "-e", "stderr"}

	out, err := exec.Command(nginx, append(args, "-t")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}

	p := startProc(t, "nginx", exec.Command(nginx, append(args, "-g", "daemon off;")...))
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			t.Logf("nginx access log:\n%s", log)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, p, base+"/public/ready", http.StatusOK)
	return base
}

// renderNginx writes the site with each key of replace (which must occur
// exactly once) replaced, and the nginx.conf that includes it; it returns
// the latter's path.
func renderNginx(t *testing.T, dir string, replace map[string]string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("nginx", "authd.conf"))
	if err != nil {
		t.Fatal(err)
	}
	site := string(src)
	for old, new := range replace {
		if n := strings.Count(site, old); n != 1 {
			t.Fatalf("nginx/authd.conf has %d copies of %q, want exactly 1 for the test to replace", n, old)
		}
		site = strings.Replace(site, old, new, 1)
	}
	sitePath := filepath.Join(dir, "authd.conf")
	if err := os.WriteFile(sitePath, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	// As root, nginx's workers would run as nobody, who cannot enter the
	// test's temporary directories.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	main := fmt.Sprintf(`%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log stderr notice;
events {
	worker_connections 256;
}
http {
	access_log %[2]s/access.log;
	client_body_temp_path %[2]s/client_body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	types {
		text/html html;
		text/css css;
		text/javascript js;
	}
	default_type application/octet-stream;
	include %[3]s;
}
`, user, dir, sitePath)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	return confPath
}

func checkLoginPage(t *testing.T, base string) {
	c := &http.Client{Timeout: 10 * time.Second}
	r := do(t, c, "GET", base+"/", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /: got %d, want 200", r.status)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET /: Content-Type %q, want text/html", ct)
	}
	page, err := os.ReadFile(filepath.Join("web", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.body, page) {
		t.Errorf("GET / is not web/index.html (%d bytes, want %d)", len(r.body), len(page))
	}
	// authd user reset-link's links are BASE/reset?token=...: the same page.
	if r := do(t, c, "GET", base+"/reset?token=x", ""); r.status != http.StatusOK || !bytes.Equal(r.body, page) {
		t.Errorf("GET /reset?token=x: got %d, %d bytes, want 200 and web/index.html", r.status, len(r.body))
	}
	// No other site may frame the page (clickjacking).
	for _, path := range []string{"/", "/index.html", "/app.js", "/reset"} {
		r := do(t, c, "GET", base+path, "")
		if got := r.header.Values("Content-Security-Policy"); len(got) != 1 || got[0] != pageCSP {
			t.Errorf("GET %s: Content-Security-Policy %q, want %q", path, got, pageCSP)
		}
		if got := r.header.Values("X-Frame-Options"); len(got) != 1 || got[0] != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q, want DENY", path, got)
		}
	}
}

// checkOriginPolicy: the gateway passes on what authd's origin policy
// needs (Host with its port, X-Forwarded-Proto), so that a browser
// without Fetch Metadata logs in from the site itself, and another site
// cannot log it in.
func checkOriginPolicy(t *testing.T, base string) {
	c := &http.Client{Timeout: 10 * time.Second}
	// What each endpoint answers a request it lets through: no such user,
	// no refresh token, nothing to log out.
	passed := []struct {
		path, body string
		status     int
	}{
		{"/rpc/login", `{"user_":"nobody","pass":"wrong"}`, http.StatusUnauthorized},
		{"/rpc/refresh_token", `{}`, http.StatusUnauthorized},
		{"/rpc/logout", `{}`, http.StatusNoContent},
		// The account page's calls reach authd too (no access token).
		{"/rpc/sessions", `{}`, http.StatusUnauthorized},
		{"/rpc/change_password", `{}`, http.StatusUnauthorized},
	}
	for _, tc := range []struct {
		name    string
		headers []string
		refused bool
	}{
		{"the site's own Origin", []string{"Origin", base}, false},
		{"the site's own Referer", []string{"Referer", base + "/"}, false},
		{"another site's Origin", []string{"Origin", "http://evil.example"}, true},
		{"another port's Origin", []string{"Origin", base + "1"}, true},
		{"a sibling subdomain", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://evil.127.0.0.1"}, true},
	} {
		for _, p := range passed {
			r := do(t, c, "POST", base+p.path, p.body, append([]string{"Content-Type", "application/json"}, tc.headers...)...)
			want := p.status
			if tc.refused {
				want = http.StatusForbidden
			}
			if r.status != want {
				t.Errorf("%s, POST %s: got %s, want %d", tc.name, p.path, r, want)
			}
			if tc.refused && !bytes.Contains(r.body, []byte(`"message":"Cross-site request refused"`)) {
				t.Errorf("%s, POST %s: body %s, want authd's PT403", tc.name, p.path, r.body)
			}
		}
	}
}

func checkPublic(t *testing.T, s *stack, base string) {
	c := &http.Client{Timeout: 10 * time.Second}
	e := do(t, c, "GET", base+"/public/x", "").echo(t)
	if e.Path != "/public/x" || e.Authorization != "" {
		t.Errorf("upstream saw %+v, want path /public/x and no Authorization", e)
	}

	// A client claiming to be postgres: the headers do not reach the
	// upstream at all.
	e = do(t, c, "GET", base+"/public/x", "", spoofed()...).echo(t)
	if e.XAuthUser != "" || e.XAuthRole != "" {
		t.Errorf("public route: upstream saw X-Auth-User %q, X-Auth-Role %q from the client, want neither", e.XAuthUser, e.XAuthRole)
	}
}

// checkNoMetrics: the gateway passes on only authd's public paths, never
// /metrics (routes, rates, pool use: for the operator).
func checkNoMetrics(t *testing.T, base string) {
	c := &http.Client{Timeout: 10 * time.Second}
	for _, method := range []string{"GET", "HEAD"} {
		r := do(t, c, method, base+"/metrics", "")
		if r.status != http.StatusNotFound || bytes.Contains(r.body, []byte("authd_")) {
			t.Errorf("%s /metrics through the gateway: got %s, want 404 from the gateway", method, r)
		}
	}
}

// spoofed is a client's attempt to choose its identity for the upstream.
func spoofed() []string {
	return []string{"X-Auth-User", "postgres", "X-Auth-Role", "postgres"}
}

// refused checks that a protected request was refused with 401 and a
// Bearer challenge, and that the upstream was not asked.
func refused(t *testing.T, s *stack, what string, send func() response) {
	t.Helper()
	hits := s.upstreamHits.Load()
	r := send()
	if r.status != http.StatusUnauthorized {
		t.Errorf("%s: got %s, want 401", what, r)
	}
	if ch := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
		t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", what, ch)
	}
	if n := s.upstreamHits.Load() - hits; n != 0 {
		t.Errorf("%s: the upstream was asked %d time(s), want never", what, n)
	}
}

// checkCookieSession is a browser's session through the gateway: log in,
// use the protected route, refresh, log out.
func checkCookieSession(t *testing.T, s *stack, base string) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	api := base + "/api/whoami"

	refused(t, s, "no credentials", func() response { return do(t, c, "GET", api, "") })
	refused(t, s, "no credentials, spoofed identity", func() response { return do(t, c, "GET", api, "", spoofed()...) })

	bad := fmt.Sprintf(`{"user_":%q,"pass":"wrong"}`, s.user)
	if r := do(t, c, "POST", base+"/rpc/login", bad, "Content-Type", "application/json"); r.status != http.StatusUnauthorized {
		t.Errorf("login with a wrong password: got %s, want 401", r)
	}
	login := fmt.Sprintf(`{"user_":%q,"pass":%q}`, s.user, s.password)
	if r := do(t, c, "POST", base+"/rpc/login", login, "Content-Type", "application/json"); r.status != http.StatusNoContent {
		t.Fatalf("login: got %s, want 204", r)
	}
	u, _ := url.Parse(base + "/")
	if !slices.ContainsFunc(jar.Cookies(u), func(c *http.Cookie) bool { return c.Name == "access_token" && c.Value != "" }) {
		t.Fatalf("after login the jar has no access_token cookie for %s", u)
	}

	e := do(t, c, "GET", api, "").echo(t)
	if e.Path != "/api/whoami" {
		t.Errorf("upstream path %q, want /api/whoami", e.Path)
	}
	token := checkIdentity(t, e, s.user, s.role)

	// The client's own identity headers are replaced by authd's.
	e = do(t, c, "GET", api, "", spoofed()...).echo(t)
	checkIdentity(t, e, s.user, s.role)

	// The original method and body reach the upstream; only the auth
	// check goes without them.
	e = do(t, c, "POST", api, `{"n":1}`, "Content-Type", "application/json").echo(t)
	if e.Method != "POST" || e.Body != `{"n":1}` {
		t.Errorf("POST through the gateway: upstream saw %s %q, want POST {\"n\":1}", e.Method, e.Body)
	}

	// A Bearer header works without cookies, and wins over a cookie.
	bare := &http.Client{Timeout: 10 * time.Second}
	e = do(t, bare, "GET", api, "", "Authorization", "Bearer "+token).echo(t)
	if e.Authorization != "Bearer "+token {
		t.Errorf("Bearer header: upstream saw Authorization %q, want the same token", e.Authorization)
	}
	refused(t, s, "a forged Bearer token beside a valid cookie", func() response {
		return do(t, c, "GET", api, "", "Authorization", "Bearer "+token[:len(token)-4]+"AAAA")
	})

	if r := do(t, c, "POST", base+"/rpc/refresh_token", ""); r.status != http.StatusNoContent {
		t.Fatalf("refresh: got %s, want 204", r)
	}
	e = do(t, c, "GET", api, "").echo(t)
	if refreshed := checkIdentity(t, e, s.user, s.role); refreshed == token {
		t.Errorf("after refresh the upstream still gets the first access token")
	}

	if r := do(t, c, "POST", base+"/rpc/logout", ""); r.status != http.StatusNoContent {
		t.Fatalf("logout: got %s, want 204", r)
	}
	refused(t, s, "after logout", func() response { return do(t, c, "GET", api, "") })
}

// checkIdentity checks what authd's verdict told the upstream: a Bearer
// JWT signed with the secret, for role, and matching X-Auth-* headers. It
// returns the JWT.
func checkIdentity(t *testing.T, e echoed, user, role string) string {
	t.Helper()
	raw, claims := bearerClaims(t, e.Authorization)
	if got := claims["role"]; got != role {
		t.Errorf("token role claim = %v, want %q", got, role)
	}
	if e.XAuthUser != user || e.XAuthRole != role {
		t.Errorf("upstream saw X-Auth-User %q, X-Auth-Role %q; want %q, %q", e.XAuthUser, e.XAuthRole, user, role)
	}
	return raw
}

var (
	keyLine = regexp.MustCompile(`(?m)^key:\s+(\S+)$`)
	idLine  = regexp.MustCompile(`(?m)^id:\s+(\S+)$`)
)

// newAPIKey creates a plan and a key on it, and returns the key and its id.
func newAPIKey(t *testing.T, s *stack, role string, perMinute int) (key, id string) {
	t.Helper()
	plan := "gw_" + storetest.Unique()
	storetest.Exec(t, s.dbURL, `insert into auth.plan (name, role, requests_per_minute) values ($1, $2, $3)`, plan, role, perMinute)
	out := s.cli(t, "", "apikey", "create", "--plan", plan)
	k, i := keyLine.FindStringSubmatch(out), idLine.FindStringSubmatch(out)
	if k == nil || i == nil {
		t.Fatalf("apikey create printed %q, want key: and id: lines", out)
	}
	return k[1], i[1]
}

// checkAPIKeys: an X-API-Key becomes a short-lived JWT for the key's role;
// a disabled key stops working within about two seconds; a key over its
// plan's rate gets 403 with Retry-After.
func checkAPIKeys(t *testing.T, s *stack, base string) {
	c := &http.Client{Timeout: 10 * time.Second}
	api := base + "/api/whoami"
	role := storetest.NewRole(t)
	key, id := newAPIKey(t, s, role, 600)

	e := do(t, c, "GET", api, "", append([]string{"X-API-Key", key}, spoofed()...)...).echo(t)
	_, claims := bearerClaims(t, e.Authorization)
	if got := claims["role"]; got != role {
		t.Errorf("API key token role claim = %v, want %q", got, role)
	}
	if e.XAuthRole != role || !strings.Contains(e.XAuthUser, id) {
		t.Errorf("API key: upstream saw X-Auth-User %q, X-Auth-Role %q; want the key id %s and role %q", e.XAuthUser, e.XAuthRole, id, role)
	}

	refused(t, s, "unknown API key", func() response {
		return do(t, c, "GET", api, "", "X-API-Key", key[:len(key)-4]+"AAAA")
	})

	s.cli(t, "", "apikey", "disable", id)
	disabled := time.Now()
	for {
		r := do(t, c, "GET", api, "", "X-API-Key", key)
		if r.status == http.StatusUnauthorized {
			t.Logf("disabled key refused after %v", time.Since(disabled).Round(time.Millisecond))
			break
		}
		if r.status != http.StatusOK {
			t.Fatalf("disabled key: got %s, want 200 until it is refused with 401", r)
		}
		if time.Since(disabled) > 2500*time.Millisecond {
			t.Fatalf("disabled key still passes %v after apikey disable", time.Since(disabled).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
	refused(t, s, "disabled API key", func() response { return do(t, c, "GET", api, "", "X-API-Key", key) })

	// Over the plan's rate: 403 (nginx's auth_request passes only 401 and
	// 403) with authd's Retry-After.
	slow, _ := newAPIKey(t, s, role, 2)
	for i := range 2 {
		if r := do(t, c, "GET", api, "", "X-API-Key", slow); r.status != http.StatusOK {
			t.Fatalf("request %d of 2 allowed per minute: got %s, want 200", i+1, r)
		}
	}
	hits := s.upstreamHits.Load()
	r := do(t, c, "GET", api, "", "X-API-Key", slow)
	if r.status != http.StatusForbidden {
		t.Errorf("third request of 2 allowed per minute: got %s, want 403", r)
	}
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("over the rate: Retry-After %q, want a number of seconds", r.header.Get("Retry-After"))
	}
	if s.upstreamHits.Load() != hits {
		t.Errorf("over the rate: the upstream was asked")
	}
}

// TestCaddyfiles adapts both Caddyfiles with the installed Caddy
// (--validate provisions every module) and checks the JSON for the
// forward_auth to /auth/verify, the headers it copies, and the site-wide
// removal of client identity headers.
func TestCaddyfiles(t *testing.T) {
	caddy := need(t, "caddy")
	for _, tc := range []struct {
		file  string
		authd string // forward_auth's upstream, as adapted
	}{
		{filepath.Join("caddy", "Caddyfile"), "127.0.0.1:3001"},
		{filepath.Join("compose", "Caddyfile"), "authd:3001"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cmd := exec.Command(caddy, "adapt", "--config", tc.file, "--adapter", "caddyfile", "--validate")
			cmd.Env = caddyEnv(t.TempDir(), map[string]string{})
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("caddy adapt %s: %v\n%s", tc.file, err, &stderr)
			}
			if strings.Contains(stderr.String(), "not formatted") {
				t.Errorf("%s is not as caddy fmt writes it:\n%s", tc.file, &stderr)
			}
			var cfg any
			if err := json.Unmarshal(stdout.Bytes(), &cfg); err != nil {
				t.Fatalf("caddy adapt output: %v", err)
			}

			var auths []map[string]any
			deleted := map[string]bool{}
			framing := 0 // handlers that set the login page's CSP and X-Frame-Options
			walk(cfg, func(m map[string]any) {
				if m["handler"] == "headers" {
					js, _ := json.Marshal(m["response"])
					csp, _ := json.Marshal(pageCSP)
					if bytes.Contains(js, []byte(`"Content-Security-Policy":[`+string(csp)+`]`)) &&
						bytes.Contains(js, []byte(`"X-Frame-Options":["DENY"]`)) {
						framing++
					}
				}
				if m["handler"] == "reverse_proxy" {
					if rw, ok := m["rewrite"].(map[string]any); ok && rw["uri"] == "/auth/verify" {
						auths = append(auths, m)
					}
				}
				if m["handler"] == "headers" {
					if req, ok := m["request"].(map[string]any); ok {
						if del, ok := req["delete"].([]any); ok {
							for _, h := range del {
								deleted[fmt.Sprint(h)] = true
							}
						}
					}
				}
			})
			if len(auths) == 0 {
				t.Fatalf("%s: no forward_auth to /auth/verify in the adapted config", tc.file)
			}
			for _, a := range auths {
				js, _ := json.Marshal(a)
				if !strings.Contains(string(js), `"dial":"`+tc.authd+`"`) {
					t.Errorf("forward_auth does not ask %s: %s", tc.authd, js)
				}
				for _, h := range append([]string{"Authorization"}, identityHeaders...) {
					if !strings.Contains(string(js), `{http.reverse_proxy.header.`+h+`}`) {
						t.Errorf("forward_auth does not copy %s from authd's answer: %s", h, js)
					}
				}
			}
			for _, h := range identityHeaders {
				if !deleted[h] {
					t.Errorf("%s: no request_header -%s: a client could send its own", tc.file, h)
				}
			}
			if framing != 1 {
				t.Errorf("%s: %d header blocks set Content-Security-Policy %q and X-Frame-Options DENY, want one, for the login page", tc.file, framing, pageCSP)
			}
		})
	}
}

// walk calls f on every JSON object in v.
func walk(v any, f func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		f(v)
		for _, x := range v {
			walk(x, f)
		}
	case []any:
		for _, x := range v {
			walk(x, f)
		}
	}
}

// The part of Traefik's file-provider schema the configs use. Decoding is
// strict: a misspelt or misplaced key fails the test instead of being
// ignored, as Traefik itself would ignore it. The YAML is decoded as JSON
// (package strictyaml), hence the json tags.
type traefikDynamic struct {
	HTTP struct {
		Routers     map[string]traefikRouter     `json:"routers"`
		Middlewares map[string]traefikMiddleware `json:"middlewares"`
		Services    map[string]traefikService    `json:"services"`
	} `json:"http"`
}

type traefikRouter struct {
	EntryPoints []string `json:"entryPoints"`
	Rule        string   `json:"rule"`
	Middlewares []string `json:"middlewares"`
	Service     string   `json:"service"`
	Priority    int      `json:"priority"`
}

type traefikMiddleware struct {
	ForwardAuth *struct {
		Address             string   `json:"address"`
		TrustForwardHeader  bool     `json:"trustForwardHeader"`
		AuthResponseHeaders []string `json:"authResponseHeaders"`
		AuthRequestHeaders  []string `json:"authRequestHeaders"`
	} `json:"forwardAuth"`
	Headers *struct {
		CustomRequestHeaders  map[string]string `json:"customRequestHeaders"`
		ContentSecurityPolicy string            `json:"contentSecurityPolicy"`
		FrameDeny             bool              `json:"frameDeny"`
		ContentTypeNosniff    bool              `json:"contentTypeNosniff"`
		ReferrerPolicy        string            `json:"referrerPolicy"`
	} `json:"headers"`
}

type traefikService struct {
	LoadBalancer struct {
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
	} `json:"loadBalancer"`
}

type traefikStatic struct {
	EntryPoints map[string]struct {
		Address          string `json:"address"`
		ForwardedHeaders struct {
			Insecure   bool     `json:"insecure"`
			TrustedIPs []string `json:"trustedIPs"`
		} `json:"forwardedHeaders"`
	} `json:"entryPoints"`
	Providers struct {
		File struct {
			Filename string `json:"filename"`
			Watch    bool   `json:"watch"`
		} `json:"file"`
	} `json:"providers"`
}

func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A duplicate key is an error, and "Rule:" is not "rule:".
	if err := strictyaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestTraefikConfig(t *testing.T) {
	var static traefikStatic
	decodeStrict(t, filepath.Join("traefik", "traefik.yml"), &static)
	var dyn traefikDynamic
	decodeStrict(t, filepath.Join("traefik", "dynamic.yml"), &dyn)
	h := dyn.HTTP

	if got := static.Providers.File.Filename; filepath.Base(got) != "dynamic.yml" {
		t.Errorf("traefik.yml file provider = %q, want dynamic.yml", got)
	}
	for name, ep := range static.EntryPoints {
		if ep.ForwardedHeaders.Insecure {
			t.Errorf("entry point %s trusts any client's X-Forwarded-For; authd throttles logins by it", name)
		}
	}

	serviceURL := func(name string) *url.URL {
		t.Helper()
		svc, ok := h.Services[name]
		if !ok || len(svc.LoadBalancer.Servers) == 0 {
			t.Fatalf("service %q is not defined with a server", name)
		}
		u, err := url.Parse(svc.LoadBalancer.Servers[0].URL)
		if err != nil || u.Host == "" {
			t.Fatalf("service %q URL %q: %v", name, svc.LoadBalancer.Servers[0].URL, err)
		}
		return u
	}

	byRule := func(rule string) traefikRouter {
		t.Helper()
		for _, r := range h.Routers {
			if r.Rule == rule {
				return r
			}
		}
		t.Fatalf("no router with rule %s", rule)
		return traefikRouter{}
	}
	forwardAuths := func(r traefikRouter) []string {
		var out []string
		for _, m := range r.Middlewares {
			if h.Middlewares[m].ForwardAuth != nil {
				out = append(out, m)
			}
		}
		return out
	}

	authdRouter := byRule("Path(`/rpc/login`) || Path(`/rpc/refresh_token`) || Path(`/rpc/logout`) || Path(`/rpc/signup`) || Path(`/rpc/change_password`) || Path(`/rpc/sessions`) || Path(`/rpc/revoke_session`) || Path(`/rpc/request_password_reset`) || Path(`/rpc/reset_password`) || Path(`/rpc/mfa_enroll`) || Path(`/rpc/mfa_verify`)")
	public := byRule("PathPrefix(`/public/`)")
	api := byRule("PathPrefix(`/api/`)")
	page := byRule("PathPrefix(`/`)")

	authdURL := serviceURL(authdRouter.Service)
	if api.Service != public.Service {
		t.Errorf("/api/ goes to service %q and /public/ to %q, want the same upstream", api.Service, public.Service)
	}
	if serviceURL(api.Service).Host == authdURL.Host {
		t.Errorf("the upstream service is authd itself")
	}
	serviceURL(page.Service)

	// authd is reached at its public paths only: no router sends
	// /metrics or anything else of authd's to it.
	for name, r := range h.Routers {
		if serviceURL(r.Service).Host == authdURL.Host && r.Rule != authdRouter.Rule {
			t.Errorf("router %s sends %s to authd, want only its public paths", name, r.Rule)
		}
	}

	// No other site may frame the login page (clickjacking).
	framed := true
	for _, m := range page.Middlewares {
		if hd := h.Middlewares[m].Headers; hd != nil && hd.ContentSecurityPolicy == pageCSP && hd.FrameDeny {
			framed = false
		}
	}
	if framed {
		t.Errorf("router %s: no headers middleware with contentSecurityPolicy %q and frameDeny", page.Rule, pageCSP)
	}

	for _, r := range []traefikRouter{authdRouter, public, page} {
		if fa := forwardAuths(r); len(fa) != 0 {
			t.Errorf("router %s checks credentials (%q), want a public route", r.Rule, fa)
		}
	}
	fa := forwardAuths(api)
	if len(fa) != 1 {
		t.Fatalf("router %s has forwardAuth middlewares %q, want one", api.Rule, fa)
	}
	auth := h.Middlewares[fa[0]].ForwardAuth
	u, err := url.Parse(auth.Address)
	if err != nil {
		t.Fatalf("forwardAuth address %q: %v", auth.Address, err)
	}
	if u.Host != authdURL.Host || u.Path != "/auth/verify" {
		t.Errorf("forwardAuth address %q, want http://%s/auth/verify (the authd service)", auth.Address, authdURL.Host)
	}
	wantHeaders := append([]string{"Authorization"}, identityHeaders...)
	if !slices.Equal(auth.AuthResponseHeaders, wantHeaders) {
		t.Errorf("forwardAuth authResponseHeaders = %q, want %q", auth.AuthResponseHeaders, wantHeaders)
	}
	if auth.TrustForwardHeader {
		t.Errorf("forwardAuth trustForwardHeader is on: clients could pick the X-Forwarded-* authd sees")
	}
	if len(auth.AuthRequestHeaders) != 0 {
		t.Errorf("forwardAuth authRequestHeaders = %q: authd needs Cookie, Authorization and X-API-Key, leave it unset", auth.AuthRequestHeaders)
	}

	for name, r := range h.Routers {
		if _, ok := h.Services[r.Service]; !ok {
			t.Errorf("router %s: service %q is not defined", name, r.Service)
		}
		for _, ep := range r.EntryPoints {
			if _, ok := static.EntryPoints[ep]; !ok {
				t.Errorf("router %s: entry point %q is not in traefik.yml", name, ep)
			}
		}
		// Every route removes a client's identity headers (forwardAuth
		// replaces them on /api/ anyway).
		stripped := map[string]bool{}
		for _, m := range r.Middlewares {
			mw, ok := h.Middlewares[m]
			if !ok {
				t.Errorf("router %s: middleware %q is not defined", name, m)
				continue
			}
			if mw.Headers != nil {
				for k, v := range mw.Headers.CustomRequestHeaders {
					if v == "" {
						stripped[http.CanonicalHeaderKey(k)] = true
					}
				}
			}
		}
		for _, hd := range identityHeaders {
			if !stripped[hd] {
				t.Errorf("router %s does not remove a client's %s", name, hd)
			}
		}
	}
}
