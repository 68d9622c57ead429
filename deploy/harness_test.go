package deploy_test

// The pieces every gateway test starts: authd (the real binary, on a fresh
// database), an upstream that echoes what it received, and the processes'
// lifecycle. All traffic is on 127.0.0.1.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"authd/store/storetest"
)

// jwtSecret is the HS256 key authd signs with in these tests (32 bytes, the
// minimum PostgREST accepts).
const jwtSecret = "gateway-test-secret-0123456789-abcdef"

// need returns the path of an external program the tests need. Missing
// programs fail the test: CI installs them with scripts/test-deps.sh.
// nginx lives in /usr/sbin, which is not on a non-root user's PATH.
func need(t *testing.T, prog string) string {
	t.Helper()
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("%s is not installed: run scripts/test-deps.sh (as root it installs it; otherwise it prints the apt-get command)", prog)
	return ""
}

// buildAuthd builds ./cmd/authd into a directory removed when t ends; a
// top-level test builds it once for all its subtests.
func buildAuthd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "authd")
	cmd := exec.Command("go", "build", "-o", bin, "authd/cmd/authd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/authd: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// servers that must be told their port up front (caddy, nginx).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output while the test reads it.
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

// proc is a server process the test started, in its own process group so
// that nginx's workers are stopped with their master.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// startProc starts cmd and stops it at cleanup (SIGTERM to its group, then
// SIGKILL after 10 s), logging its output if the test failed.
func startProc(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) stop() {
	if p.exited() {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// waitHTTP polls url until it answers want, failing if p exits first or
// a minute passes.
func waitHTTP(t *testing.T, p *proc, url string, want int) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(time.Minute)
	var last string
	for {
		if p.exited() {
			t.Fatalf("%s exited (%v) before %s answered; output:\n%s", p.name, p.err, url, p.out)
		}
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s did not answer %d within a minute (last: %s); output:\n%s", p.name, url, want, last, p.out)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// environ is a child's whole environment: PATH and HOME, plus env. The
// test's own (PGHOST, DATABASE_URL, …) must not leak in.
func environ(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// stack is authd and an echoing upstream, ready for a gateway in front.
type stack struct {
	bin      string
	dbURL    string
	role     string // the test user's role
	user     string
	password string

	authd     *proc
	authdAddr string // host:port

	upstream     *httptest.Server
	upstreamAddr string // host:port
	upstreamHits atomic.Int64
}

// newStack creates a migrated database, a role and a user, and starts authd
// and the upstream.
func newStack(t *testing.T, bin string) *stack {
	t.Helper()
	return newStackWith(t, bin, nil)
}

// newStackWith is newStack with more settings for authd serve; a value
// "$ROLE" stands for the test user's role (for AUTHD_SIGNUP_ROLE).
func newStackWith(t *testing.T, bin string, settings map[string]string) *stack {
	t.Helper()
	s := &stack{
		bin:      bin,
		dbURL:    storetest.NewURL(t),
		role:     storetest.NewRole(t),
		user:     "alice",
		password: "correct horse battery staple",
	}
	s.cli(t, s.password+"\n", "user", "add", s.user, "--role", s.role)

	cmd := exec.Command(bin, "serve")
	vars := map[string]string{
		"DATABASE_URL":      s.dbURL,
		"JWT_SECRET":        jwtSecret,
		"AUTHD_ADDR":        "127.0.0.1:0",
		"AUTHD_BCRYPT_COST": "4",
		"AUTHD_LOG_LEVEL":   "info",
		// The gateways here listen on plain HTTP.
		"AUTHD_COOKIE_SECURE": "false",
	}
	for k, v := range settings {
		if v == "$ROLE" {
			v = s.role
		}
		vars[k] = v
	}
	cmd.Env = environ(vars)
	s.authd = startProc(t, "authd", cmd)
	listening := regexp.MustCompile(`"msg":"authd ready","addr":"(127\.0\.0\.1:\d+)"`)
	deadline := time.Now().Add(time.Minute)
	for s.authdAddr == "" {
		if m := listening.FindStringSubmatch(s.authd.out.String()); m != nil {
			s.authdAddr = m[1]
			break
		}
		if s.authd.exited() {
			t.Fatalf("authd serve exited (%v):\n%s", s.authd.err, s.authd.out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("authd serve did not report its address within a minute:\n%s", s.authd.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitHTTP(t, s.authd, "http://"+s.authdAddr+"/healthz", http.StatusOK)

	s.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.upstreamHits.Add(1)
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoed{
			Path:          r.URL.Path,
			Method:        r.Method,
			Authorization: strings.Join(r.Header.Values("Authorization"), ", "),
			XAuthUser:     strings.Join(r.Header.Values("X-Auth-User"), ", "),
			XAuthRole:     strings.Join(r.Header.Values("X-Auth-Role"), ", "),
			Body:          string(body),
		})
	}))
	t.Cleanup(s.upstream.Close)
	s.upstreamAddr = strings.TrimPrefix(s.upstream.URL, "http://")
	return s
}

// cli runs the authd binary against the stack's database and returns its
// standard output.
func (s *stack) cli(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = environ(map[string]string{"DATABASE_URL": s.dbURL, "AUTHD_BCRYPT_COST": "4"})
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("authd %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	return stdout.String()
}

// echoed is what the upstream received, as it answers it. Repeated headers
// are joined with ", ", so a spoofed copy next to the real one shows.
type echoed struct {
	Path          string `json:"path"`
	Method        string `json:"method"`
	Authorization string `json:"authorization"`
	XAuthUser     string `json:"x_auth_user"`
	XAuthRole     string `json:"x_auth_role"`
	Body          string `json:"body"`
}

// bearerClaims checks that auth is "Bearer <jwt>" signed with the test
// secret (HS256 only) and returns the JWT and its claims.
func bearerClaims(t *testing.T, auth string) (string, jwt.MapClaims) {
	t.Helper()
	raw, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || raw == "" {
		t.Fatalf("upstream's Authorization = %q, want Bearer <jwt>", auth)
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return []byte(jwtSecret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("upstream's token does not verify with the secret: %v", err)
	}
	return raw, claims
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

// echo decodes the upstream's answer, failing unless the gateway passed the
// request on (200 with the upstream's JSON).
func (r response) echo(t *testing.T) echoed {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("got %s, want 200 from the upstream", r)
	}
	var e echoed
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("upstream answer %q: %v", r.body, err)
	}
	return e
}

// do sends a request through c; headers are name, value pairs.
func do(t *testing.T, c *http.Client, method, url, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}
