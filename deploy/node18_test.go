package deploy_test

// The Node.js the e2e scripts (e2e/browser.mjs, e2e/jose-verify.mjs) run
// on. package.json's engines say >=18: Debian bookworm's nodejs package is
// Node.js 18, and that is what `apt-get install nodejs` gives a fresh
// bookworm machine. TestBrowser and TestJoseVerifier run the scripts on the
// node this machine has; TestBrowserDebianNode18 and
// TestJoseVerifierDebianNode18 run the same checks on Debian bookworm's own
// Node.js 18, which scripts/test-deps.sh fetches with `apt-get download`
// (packages nodejs and libnode108, and the libraries of libnode108 that are
// not installed) and unpacks with `dpkg -x` into .dev/node18 at the
// repository root, whatever node is installed. So CI proves the bookworm
// path on every run. A missing or wrong .dev/node18 fails the test; it
// never skips.
//
// By hand:
//
//	LD_LIBRARY_PATH=.dev/node18/lib .dev/node18/bin/node deploy/e2e/jose-verify.mjs ...

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// nodeMinMajor is the oldest Node.js major version package.json's engines
// allow.
const nodeMinMajor = 18

// node18Dir is where scripts/test-deps.sh unpacks Debian's Node.js 18,
// relative to the repository root.
const node18Dir = ".dev/node18"

// nodeOnPath returns the node the e2e tests run by default: the one on
// PATH, which must be one package.json's engines allow.
func nodeOnPath(t *testing.T) (node string, env map[string]string) {
	t.Helper()
	node = need(t, "node")
	version := nodeVersion(t, node, nil, "")
	if nodeMajor(version) < nodeMinMajor {
		t.Fatalf("%s is Node.js %s; package.json's engines want >=%d (Debian bookworm's nodejs is 18): install a newer one", node, version, nodeMinMajor)
	}
	return node, nil
}

// debianNode18 returns Debian bookworm's Node.js 18 in .dev/node18 and the
// environment it needs (its libnode and libraries).
func debianNode18(t *testing.T) (node string, env map[string]string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, filepath.FromSlash(node18Dir))
	fix := "run scripts/test-deps.sh (it fetches Debian's nodejs and libnode108 with apt-get download and unpacks them into " + node18Dir + ")"
	b, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil {
		t.Fatalf("Debian's Node.js 18 is not in %s: %v: %s", node18Dir, err, fix)
	}
	debVersion := strings.TrimSpace(string(b))
	if !strings.HasPrefix(debVersion, "18.") {
		t.Fatalf("%s/VERSION says Debian package version %q, want 18.*: remove %s and %s", node18Dir, debVersion, node18Dir, fix)
	}
	node = filepath.Join(dir, "bin", "node")
	env = map[string]string{"LD_LIBRARY_PATH": filepath.Join(dir, "lib")}
	// Without the files of node-undici, node-acorn and node-cjs-module-lexer
	// in /usr/share/nodejs it aborts at once.
	version := nodeVersion(t, node, env, "run scripts/test-deps.sh: it installs node-undici, node-acorn and node-cjs-module-lexer when their files are missing and fetches "+node18Dir+" again when it does not start")
	if nodeMajor(version) != 18 {
		t.Fatalf("%s is Node.js %s, want 18 (Debian %s): remove %s and %s", node, version, debVersion, node18Dir, fix)
	}
	t.Logf("Debian's Node.js %s (package nodejs %s)", version, debVersion)
	return node, env
}

// nodeVersion returns node's process.versions.node (starting it, not only
// asking --version: Debian's loads its built-ins then); if node fails, the
// test fails with fix.
func nodeVersion(t *testing.T, node string, env map[string]string, fix string) string {
	t.Helper()
	cmd := exec.Command(node, "-p", "process.versions.node")
	cmd.Env = environ(env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if fix == "" {
			fix = "is it a Node.js?"
		}
		t.Fatalf("%s -p process.versions.node: %v\n%s\n%s", node, err, out, fix)
	}
	return strings.TrimSpace(string(out))
}

// nodeMajor is the major number of a version such as 18.20.4; 0 if there
// is none.
func nodeMajor(version string) int {
	major, _, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0
	}
	return n
}

func TestBrowserDebianNode18(t *testing.T) {
	node, env := debianNode18(t)
	runBrowser(t, node, env, "node18")
}

func TestJoseVerifierDebianNode18(t *testing.T) {
	node, env := debianNode18(t)
	runJose(t, node, env)
}
