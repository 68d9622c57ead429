package deploy_test

// The login page (web/) in a real browser: headless Chromium (Debian's),
// driven by playwright-core from npm through e2e/browser.mjs, against Caddy
// in front of authd and the echoing upstream, all on 127.0.0.1. The script
// logs in through the form, checks that page scripts cannot see the tokens
// (HttpOnly), calls the protected route, refreshes, logs out, and sees the
// protected route refuse; it leaves screenshots in test-results/ at the
// repository root (a CI artifact). TestBrowser runs the script on the node
// this machine has; TestBrowserDebianNode18 (node18_test.go) runs it on
// Debian bookworm's Node.js 18 and leaves its screenshots in
// test-results/node18/.

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// browserTimeout bounds the whole script; it takes a few seconds.
const browserTimeout = 90 * time.Second

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
	var shots []string
	for _, name := range []string{"browser-e2e-login.png", "browser-e2e-whoami.png", "browser-e2e.png"} {
		shots = append(shots, filepath.Join(results, name))
	}
	for _, f := range append(shots, filepath.Join(results, "browser-e2e-failure.png")) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}

	s := newStack(t, buildAuthd(t))
	base := startCaddy(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "deploy", "e2e", "browser.mjs"))
	cmd.Dir = root
	vars := map[string]string{
		"E2E_BASE_URL":  base,
		"E2E_USER":      s.user,
		"E2E_PASSWORD":  s.password,
		"E2E_ROLE":      s.role,
		"E2E_OUT_DIR":   results,
		"CHROMIUM_PATH": chromium,
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

	for _, f := range shots {
		checkPNG(t, f)
	}
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
