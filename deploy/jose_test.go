package deploy_test

// authd's asymmetric tokens checked by an independent verifier: the `jose`
// npm package (panva/jose, the exact version in package-lock.json) through
// e2e/jose-verify.mjs, which finds the keys as a Node.js service would:
// the OpenID discovery document, then createRemoteJWKSet on
// /.well-known/jwks.json, and jwtVerify with the issuer, audience and the
// one algorithm it expects. For each of ES256, EdDSA and RS256: a key made
// by `authd keygen`, authd serving with AUTHD_SIGNING_KEYS_DIR and no HMAC
// secret, a login, and then
//   - the token verifies, with the user's role and sub;
//   - one byte of its signature changed, or the wrong algorithm expected,
//     jose refuses it;
//   - a second key is written (rotation): once the JWKS lists both, a new
//     login is signed by the new key, and a jose that fetched the JWKS
//     before the rotation fetches it again for the new kid and accepts it;
//   - the first key file is removed: once the JWKS lists only the new key,
//     a fresh jose refuses the token the first key signed.
// Node and jose come from scripts/test-deps.sh (npm ci). TestJoseVerifier
// runs the script on the node this machine has; TestJoseVerifierDebianNode18
// (node18_test.go) runs it on Debian bookworm's Node.js 18. All traffic is
// on 127.0.0.1.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

const (
	joseIssuer   = "https://authd.test"
	joseAudience = "postgrest"
	// joseRunTimeout bounds one run of the script (it takes a fraction of
	// a second) and one answer of the long-running one.
	joseRunTimeout = 15 * time.Second
	// keysTimeout bounds the wait for a key change to show in the JWKS
	// (fsnotify plus authd's 200 ms debounce).
	keysTimeout = 5 * time.Second
)

// joseAlgs are the algorithms under test, each with one that jose is told
// to expect instead in the wrong-algorithm case.
var joseAlgs = []struct{ alg, wrong string }{
	{"ES256", "RS256"},
	{"EdDSA", "ES256"},
	{"RS256", "ES256"},
}

// joseVerifier runs deploy/e2e/jose-verify.mjs with node, in the
// environment env adds to.
type joseVerifier struct {
	node, script, root string
	env                map[string]string
}

func TestJoseVerifier(t *testing.T) {
	node, env := nodeOnPath(t)
	runJose(t, node, env)
}

// runJose checks every algorithm of joseAlgs with node.
func runJose(t *testing.T, node string, env map[string]string) {
	jv := newJoseVerifier(t, node, env)
	bin := buildAuthd(t)
	for _, a := range joseAlgs {
		t.Run(a.alg, func(t *testing.T) {
			t.Parallel()
			checkJose(t, jv, bin, a.alg, a.wrong)
		})
	}
}

// newJoseVerifier checks that the repository's node_modules has the jose
// of package-lock.json.
func newJoseVerifier(t *testing.T, node string, env map[string]string) *joseVerifier {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(root, "package-lock.json"))
	if err == nil {
		err = json.Unmarshal(b, &lock)
	}
	if err != nil {
		t.Fatalf("package-lock.json: %v", err)
	}
	want := lock.Packages["node_modules/jose"].Version
	if want == "" {
		t.Fatal("package-lock.json has no jose: add it with npm install --save-dev --save-exact jose")
	}
	var installed struct{ Version string }
	b, err = os.ReadFile(filepath.Join(root, "node_modules", "jose", "package.json"))
	if err != nil {
		t.Fatalf("jose is not installed in %s/node_modules: run scripts/test-deps.sh (npm ci from package-lock.json)", root)
	}
	if err := json.Unmarshal(b, &installed); err != nil || installed.Version != want {
		t.Fatalf("node_modules has jose %q, package-lock.json wants %s: run npm ci --ignore-scripts (or remove node_modules and run scripts/test-deps.sh)", installed.Version, want)
	}
	return &joseVerifier{node: node, script: filepath.Join(root, "deploy", "e2e", "jose-verify.mjs"), root: root, env: env}
}

func checkJose(t *testing.T, jv *joseVerifier, bin, alg, wrongAlg string) {
	s := &stack{
		bin:      bin,
		dbURL:    storetest.NewURL(t),
		role:     storetest.NewRole(t),
		user:     "alice",
		password: "correct horse battery staple",
	}
	s.cli(t, s.password+"\n", "user", "add", s.user, "--role", s.role)
	dir := t.TempDir()
	kid1, file1 := keygen(t, s, alg, dir)
	base := startKeyedAuthd(t, s, dir)
	waitKeys(t, base, kid1)
	checkDiscovery(t, base, alg)

	tok1 := joseLogin(t, s, base)
	checkHeader(t, tok1, alg, kid1)
	args := func(token, alg string) []string {
		return []string{"--base-url=" + base, "--token=" + token, "--alg=" + alg,
			"--issuer=" + joseIssuer, "--audience=" + joseAudience}
	}

	t.Run("verifies", func(t *testing.T) {
		checkPayload(t, s, jv.accept(t, args(tok1, alg)...))
	})
	t.Run("signature changed", func(t *testing.T) {
		jv.refuse(t, "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", args(tamper(t, tok1), alg)...)
	})
	t.Run("wrong algorithm", func(t *testing.T) {
		jv.refuse(t, "ERR_JOSE_ALG_NOT_ALLOWED", args(tok1, wrongAlg)...)
	})

	// A verifier that has the JWKS from before the rotation, as a running
	// service would. cooldown 0: it may refetch at once for an unknown kid
	// (jose's default waits 30 s after a fetch).
	long := jv.start(t, "--stdin", "--cooldown-ms=0", "--base-url="+base, "--alg="+alg,
		"--issuer="+joseIssuer, "--audience="+joseAudience)
	if r := long.verify(t, tok1); !r.OK || r.JWKSFetches != 1 {
		t.Fatalf("long-running jose on the first token: %+v, want ok after 1 JWKS fetch", r)
	}

	var tok2, kid2 string
	t.Run("rotation", func(t *testing.T) {
		kid2, _ = keygen(t, s, alg, dir)
		if kid2 <= kid1 {
			t.Fatalf("second key's kid %s does not sort after the first's %s: the first would keep signing", kid2, kid1)
		}
		waitKeys(t, base, kid1, kid2)
		tok2 = joseLogin(t, s, base)
		checkHeader(t, tok2, alg, kid2)
		r := long.verify(t, tok2)
		if !r.OK {
			t.Fatalf("long-running jose refused the new key's token: %s: %s", r.Code, r.Message)
		}
		if r.JWKSFetches != 2 {
			t.Fatalf("long-running jose fetched the JWKS %d times in all, want 2 (once more for the new kid)", r.JWKSFetches)
		}
		checkPayload(t, s, r.Payload)
		// The retired key still verifies what it signed.
		if r := long.verify(t, tok1); !r.OK {
			t.Fatalf("long-running jose refused the first key's token after the rotation: %s: %s", r.Code, r.Message)
		}
	})
	if tok2 == "" {
		return
	}

	t.Run("old key removed", func(t *testing.T) {
		if err := os.Remove(file1); err != nil {
			t.Fatal(err)
		}
		waitKeys(t, base, kid2)
		jv.refuse(t, "ERR_JWKS_NO_MATCHING_KEY", args(tok1, alg)...)
		checkPayload(t, s, jv.accept(t, args(tok2, alg)...))
	})
}

// keygen runs `authd keygen` and returns the new key's kid and file.
func keygen(t *testing.T, s *stack, alg, dir string) (kid, file string) {
	t.Helper()
	// kids sort by creation time to the second, and the last one signs:
	// a second key made in the same second as the first could sort before
	// it. Wait for the next second after the newest key's.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		stamp, _, _ := strings.Cut(e.Name(), "-")
		if made, err := time.Parse("20060102T150405Z", stamp); err == nil {
			time.Sleep(time.Until(made.Add(time.Second)))
		}
	}
	out := s.cli(t, "", "keygen", "--alg", alg, "--out", dir)
	m := regexp.MustCompile(`(?m)^kid: (\S+)\nalg: (\S+)\nfile: (.+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("authd keygen printed %q, want kid, alg and file", out)
	}
	if m[2] != alg {
		t.Fatalf("authd keygen --alg %s made a %s key", alg, m[2])
	}
	if filepath.Base(m[3]) != m[1]+".pem" {
		t.Fatalf("authd keygen wrote %s for kid %s", m[3], m[1])
	}
	return m[1], m[3]
}

// startKeyedAuthd starts authd serve signing with the keys in dir (no HMAC
// secret) and returns its base URL.
func startKeyedAuthd(t *testing.T, s *stack, dir string) string {
	t.Helper()
	cmd := exec.Command(s.bin, "serve")
	cmd.Env = environ(map[string]string{
		"DATABASE_URL":           s.dbURL,
		"AUTHD_SIGNING_KEYS_DIR": dir,
		"AUTHD_JWT_ISS":          joseIssuer,
		"AUTHD_JWT_AUD":          joseAudience,
		"AUTHD_ADDR":             "127.0.0.1:0",
		"AUTHD_BCRYPT_COST":      "4",
		"AUTHD_LOG_LEVEL":        "info",
		"AUTHD_COOKIE_SECURE":    "false", // plain HTTP
	})
	s.authd = startProc(t, "authd", cmd)
	listening := regexp.MustCompile(`"msg":"authd ready","addr":"(127\.0\.0\.1:\d+)"`)
	deadline := time.Now().Add(time.Minute)
	for {
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
	base := "http://" + s.authdAddr
	waitHTTP(t, s.authd, base+"/healthz", http.StatusOK)
	return base
}

// jwk is what the tests read of a published key.
type jwk struct {
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Kty string `json:"kty"`
	D   string `json:"d"`
	K   string `json:"k"`
}

// waitKeys polls the JWKS until it lists exactly kids (reloads are
// asynchronous), checking that no key carries private material.
func waitKeys(t *testing.T, base string, kids ...string) {
	t.Helper()
	want := slices.Sorted(slices.Values(kids))
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(keysTimeout)
	var last []string
	for {
		r := do(t, c, http.MethodGet, base+"/.well-known/jwks.json", "")
		if r.status != http.StatusOK {
			t.Fatalf("GET /.well-known/jwks.json: %s", r)
		}
		var set struct{ Keys []jwk }
		if err := json.Unmarshal(r.body, &set); err != nil {
			t.Fatalf("JWKS %s: %v", r.body, err)
		}
		last = last[:0]
		for _, k := range set.Keys {
			if k.D != "" || k.K != "" {
				t.Fatalf("JWKS publishes private key material: %s", r.body)
			}
			last = append(last, k.Kid)
		}
		slices.Sort(last)
		if slices.Equal(last, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("JWKS lists %v, want %v within %v", last, want, keysTimeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// checkDiscovery checks what authd says about itself before jose reads it:
// the script checks issuer and jwks_uri again on its own.
func checkDiscovery(t *testing.T, base, alg string) {
	t.Helper()
	r := do(t, http.DefaultClient, http.MethodGet, base+"/.well-known/openid-configuration", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /.well-known/openid-configuration: %s", r)
	}
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("openid-configuration %s: %v", r.body, err)
	}
	if doc.Issuer != joseIssuer || doc.JWKSURI != joseIssuer+"/.well-known/jwks.json" {
		t.Fatalf("openid-configuration: issuer %q, jwks_uri %q; want %s and its /.well-known/jwks.json", doc.Issuer, doc.JWKSURI, joseIssuer)
	}
	// No JWT_SECRET: HS256 must not be offered.
	if !slices.Equal(doc.Algs, []string{alg}) {
		t.Fatalf("openid-configuration lists algorithms %v, want [%s]", doc.Algs, alg)
	}
}

// joseLogin logs the stack's user in and returns the access token.
func joseLogin(t *testing.T, s *stack, base string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"user_": s.user, "pass": s.password})
	r := do(t, http.DefaultClient, http.MethodPost, base+"/rpc/login", string(body),
		"Content-Type", "application/json", "Prefer", "return=representation")
	if r.status != http.StatusOK {
		t.Fatalf("POST /rpc/login: %s", r)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("POST /rpc/login answered %s: want access_token (%v)", r.body, err)
	}
	return tr.AccessToken
}

// checkHeader checks the token's alg and kid without verifying it (jose
// does that).
func checkHeader(t *testing.T, tok, alg, kid string) {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	var hdr struct{ Alg, Kid string }
	if err == nil {
		err = json.Unmarshal(b, &hdr)
	}
	if err != nil {
		t.Fatalf("token header %q: %v", h, err)
	}
	if hdr.Alg != alg || hdr.Kid != kid {
		t.Fatalf("token header alg %q kid %q, want %s signed by %s", hdr.Alg, hdr.Kid, alg, kid)
	}
}

// tamper changes one byte in the middle of the token's signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) == 0 {
		t.Fatalf("token signature %q: %v", tok[i+1:], err)
	}
	sig[len(sig)/2] ^= 0x01
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// checkPayload checks the claims jose verified: the user's role and sub,
// the issuer and audience (jose checked those too), and a future expiry.
func checkPayload(t *testing.T, s *stack, p map[string]any) {
	t.Helper()
	if p["role"] != s.role || p["sub"] != s.user || p["username"] != s.user {
		t.Fatalf("verified payload %v: want role %q, sub and username %q", p, s.role, s.user)
	}
	if p["iss"] != joseIssuer {
		t.Fatalf("verified payload iss %v, want %s", p["iss"], joseIssuer)
	}
	switch aud := p["aud"].(type) {
	case string:
		if aud == joseAudience {
			break
		}
		t.Fatalf("verified payload aud %q, want %s", aud, joseAudience)
	case []any:
		if !slices.Contains(aud, any(joseAudience)) {
			t.Fatalf("verified payload aud %v, want %s", aud, joseAudience)
		}
	default:
		t.Fatalf("verified payload aud %v, want %s", p["aud"], joseAudience)
	}
	if exp, ok := p["exp"].(float64); !ok || exp <= float64(time.Now().Unix()) {
		t.Fatalf("verified payload exp %v: want a time in the future", p["exp"])
	}
}

// run runs the script once and returns its output and exit code; a code of
// -1 means it did not finish in time.
func (jv *joseVerifier) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), joseRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, jv.node, append([]string{jv.script}, args...)...)
	cmd.Dir = jv.root
	cmd.Env = environ(jv.env)
	cmd.WaitDelay = 2 * time.Second
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("node jose-verify.mjs did not finish within %v; stderr:\n%s", joseRunTimeout, &errOut)
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	default:
		t.Fatalf("node jose-verify.mjs: %v", err)
	}
	return "", "", -1
}

// accept runs the script, which must verify the token, and returns the
// payload it printed.
func (jv *joseVerifier) accept(t *testing.T, args ...string) map[string]any {
	t.Helper()
	stdout, stderr, code := jv.run(t, args...)
	if code != 0 {
		t.Fatalf("jose refused the token (exit %d):\n%s", code, stderr)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("jose-verify.mjs printed %q: %v", stdout, err)
	}
	return p
}

// refuse runs the script, which must reject the token with jose's error
// code (exit 1: jose said no, not a setup failure) and print nothing.
func (jv *joseVerifier) refuse(t *testing.T, code string, args ...string) {
	t.Helper()
	stdout, stderr, exit := jv.run(t, args...)
	if exit != 1 || !strings.Contains(stderr, "rejected: "+code+":") {
		t.Fatalf("jose-verify.mjs exited %d with %q, want 1 and %s", exit, strings.TrimSpace(stderr), code)
	}
	if stdout != "" {
		t.Fatalf("jose-verify.mjs printed %q for a refused token", stdout)
	}
	t.Logf("refused: %s", strings.TrimSpace(stderr))
}

// joseSession is the script in --stdin mode: one remote JWKS for every
// token it is given.
type joseSession struct {
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
}

// joseResult is the session's answer for one token.
type joseResult struct {
	OK          bool           `json:"ok"`
	Payload     map[string]any `json:"payload"`
	Code        string         `json:"code"`
	Message     string         `json:"message"`
	JWKSFetches int            `json:"jwks_fetches"`
}

func (jv *joseVerifier) start(t *testing.T, args ...string) *joseSession {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, jv.node, append([]string{jv.script}, args...)...)
	cmd.Dir = jv.root
	cmd.Env = environ(jv.env)
	cmd.WaitDelay = 2 * time.Second
	js := &joseSession{lines: make(chan string, 16), stderr: &syncBuffer{}}
	cmd.Stderr = js.stderr
	var err error
	if js.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node jose-verify.mjs: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			js.lines <- sc.Text()
		}
		close(js.lines)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node jose-verify.mjs --stdin stderr:\n%s", js.stderr)
		}
		js.stdin.Close() // EOF: the script ends by itself
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil && !t.Failed() {
				t.Errorf("node jose-verify.mjs --stdin: %v\n%s", err, js.stderr)
			}
		case <-time.After(time.Minute): // a bound on a hang: node starts and verifies in about a second
			cancel()
			<-done
		}
		cancel()
	})
	return js
}

// verify sends one token and waits for the verdict.
func (js *joseSession) verify(t *testing.T, tok string) joseResult {
	t.Helper()
	if _, err := fmt.Fprintln(js.stdin, tok); err != nil {
		t.Fatalf("write to jose-verify.mjs --stdin: %v\n%s", err, js.stderr)
	}
	select {
	case line, ok := <-js.lines:
		if !ok {
			t.Fatalf("jose-verify.mjs --stdin ended:\n%s", js.stderr)
		}
		var r joseResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("jose-verify.mjs --stdin answered %q: %v", line, err)
		}
		return r
	case <-time.After(joseRunTimeout):
		t.Fatalf("jose-verify.mjs --stdin gave no answer within %v:\n%s", joseRunTimeout, js.stderr)
	}
	return joseResult{}
}
