package deploy_test

// The account page (web/) in a real browser: headless Chromium (Debian's),
// driven by playwright-core from npm through e2e/browser.mjs, against Caddy
// in front of authd (sign-up on) and the echoing upstream, all on
// 127.0.0.1. The script signs a new user up, sets up a second factor
// (expectMFA), signs out and in again (with a code, and through ?next=),
// checks that page scripts cannot see the tokens (HttpOnly), changes the
// password and sees a second browser's session end, asks for a password
// reset and follows the link, and signs in and out with JavaScript off;
// it leaves a screenshot of each step in test-results/ at the repository
// root (a CI artifact). TestBrowser runs the script on the node this
// machine has; TestBrowserDebianNode18 (node18_test.go) runs it on Debian
// bookworm's Node.js 18 and leaves its screenshots in
// test-results/node18/.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store"
)

// browserTimeout bounds the whole script. It takes a few seconds, plus up
// to 30 s with expectMFA: a TOTP code is not accepted twice, so the script
// waits for the next 30-second step before it signs in with one again.
const browserTimeout = 3 * time.Minute

// expectMFA says that authd has the second-factor endpoints
// (/rpc/mfa_enroll, /rpc/mfa_verify): the script then enrolls a TOTP
// factor through the page and signs in with codes, and fails if they are
// missing. While false, it checks that the page says the server has none.
const expectMFA = true

// shots are the screenshots the script leaves, one per step (03: the
// QR code with expectMFA, else the page saying there is no second factor).
var shots = []string{
	"browser-e2e-01-start.png", "browser-e2e-02-signed-up.png", "browser-e2e-03-mfa.png",
	"browser-e2e-04-signed-out.png", "browser-e2e-05-wrong-password.png", "browser-e2e-06-signed-in.png",
	"browser-e2e-07-next-refused.png", "browser-e2e-08-password-changed.png", "browser-e2e-09-other-session-ended.png",
	"browser-e2e-10-reset-requested.png", "browser-e2e-11-reset.png", "browser-e2e-12-signed-in-after-reset.png",
	"browser-e2e-13-nojs-error.png", "browser-e2e-14-nojs-signed-in.png", "browser-e2e-15-nojs-signed-out.png",
	"browser-e2e.png",
}

func TestBrowser(t *testing.T) {
	node, env := nodeOnPath(t)
	runBrowser(t, node, env, "")
}

// runBrowser runs e2e/browser.mjs with node, in the environment env adds
// to, leaving the screenshots in test-results/ (in its subdirectory sub if
// not empty).
func runBrowser(t *testing.T, node string, env map[string]string, sub string) {
	chromium := os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = need(t, "chromium")
	} else if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("CHROMIUM_PATH=%s: %v (scripts/test-deps.sh installs Debian's chromium at /usr/bin/chromium)", chromium, err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed in %s/node_modules: run scripts/test-deps.sh (npm ci from package-lock.json)", root)
	}

	// A screenshot from an earlier run must not pass for this one's.
	results := filepath.Join(root, "test-results", sub)
	if old, err := filepath.Glob(filepath.Join(results, "browser-e2e*.png")); err != nil {
		t.Fatal(err)
	} else {
		for _, f := range old {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
		}
	}

	s := newStackWith(t, buildAuthd(t), map[string]string{"AUTHD_SIGNUP_ROLE": "$ROLE"})
	base := startCaddy(t, s)
	mail := startMailbox(t, s.dbURL, base)
	expect := "0"
	if expectMFA {
		expect = "1"
	}

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "deploy", "e2e", "browser.mjs"))
	cmd.Dir = root
	vars := map[string]string{
		"E2E_BASE_URL":   base,
		"E2E_USER":       s.user,
		"E2E_PASSWORD":   s.password,
		"E2E_ROLE":       s.role,
		"E2E_OUT_DIR":    results,
		"E2E_MAILBOX":    mail,
		"E2E_EXPECT_MFA": expect,
		"CHROMIUM_PATH":  chromium,
	}
	for k, v := range env {
		vars[k] = v
	}
	cmd.Env = environ(vars)
	// Its own process group, so that a timeout also stops Chromium.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("%s deploy/e2e/browser.mjs did not finish within %v; output:\n%s", node, browserTimeout, &out)
	}
	if err != nil {
		t.Fatalf("%s deploy/e2e/browser.mjs: %v (after %v); output:\n%s", node, err, took, &out)
	}
	t.Logf("%s deploy/e2e/browser.mjs (%v):\n%s", node, took, &out)

	names := shots
	if expectMFA {
		names = append(names, "browser-e2e-03b-mfa-on.png") // the recovery codes
	}
	for _, name := range names {
		checkPNG(t, filepath.Join(results, name))
	}
}

// startMailbox stands for the application's mail worker: it LISTENs on
// authd's password reset channel and hands the latest reset link of a
// user, BASE/reset?token=..., to GET /?user=NAME, waiting for it up to
// 30 s (404 after). It returns its URL.
func startMailbox(t *testing.T, dbURL, base string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("mailbox: %v", err)
	}
	if _, err := conn.Exec(ctx, "listen "+store.ResetChannel); err != nil {
		t.Fatalf("mailbox: listen: %v", err)
	}
	var (
		mu      sync.Mutex
		links   = map[string]string{}
		arrived = make(chan struct{}, 1)
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				return // the test ended
			}
			var msg struct{ User, Token string }
			if err := json.Unmarshal([]byte(n.Payload), &msg); err != nil || msg.Token == "" {
				t.Errorf("mailbox: notification %q: %v", n.Payload, err)
				continue
			}
			mu.Lock()
			links[msg.User] = base + "/reset?token=" + url.QueryEscape(msg.Token)
			mu.Unlock()
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		deadline := time.After(30 * time.Second)
		for {
			mu.Lock()
			link, ok := links[user]
			delete(links, user)
			mu.Unlock()
			if ok {
				io.WriteString(w, link)
				return
			}
			select {
			case <-arrived:
			case <-deadline:
				http.Error(w, "no reset link for "+user, http.StatusNotFound)
				return
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		conn.Close(context.Background())
	})
	return srv.URL
}

// checkPNG fails unless file is a PNG of a real page: a decodable header,
// at least 300×200 pixels and more than a few kilobytes.
func checkPNG(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", file, err)
	}
	if cfg.Width < 300 || cfg.Height < 200 || len(b) < 10_000 {
		t.Fatalf("screenshot %s is %d×%d pixels, %d bytes: want a whole page", file, cfg.Width, cfg.Height, len(b))
	}
	t.Logf("screenshot %s: %d×%d, %d bytes", file, cfg.Width, cfg.Height, len(b))
}
