package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"authd/store/storetest"
	"authd/token"
)

// TestServeReloadsKeys: a new key file is picked up without a restart, a
// broken one is logged and ignored, and SIGHUP reloads too.
func TestServeReloadsKeys(t *testing.T) {
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	mustRun(t, baseEnv(url), "pw-of-kim\n", "user", "add", "kim", "--role", role)
	dir := t.TempDir()
	writeKey := func(alg string, at time.Time) *token.Key { return writeKeyFile(t, dir, alg, at) }
	t0 := time.Now()
	k1 := writeKey(token.ES256, t0)
	s := startServer(t, url, map[string]string{"AUTHD_SIGNING_KEYS_DIR": dir})

	loginKid := func() string {
		t.Helper()
		r := s.post(t, "/rpc/login", `{"user_":"kim","pass":"pw-of-kim"}`, nil)
		if r.StatusCode != http.StatusNoContent {
			t.Fatalf("login: %d %s", r.StatusCode, r.body)
		}
		for _, c := range r.cookies {
			if c.Name == "access_token" {
				return kidOf(t, c.Value)
			}
		}
		t.Fatal("no access cookie")
		return ""
	}
	jwksKids := func() string {
		t.Helper()
		resp, err := http.Get(s.base + "/.well-known/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(b, &set); err != nil {
			t.Fatalf("jwks %s: %v", b, err)
		}
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k.Kid)
		}
		return strings.Join(kids, ",")
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		// Far beyond the reload's poll on a loaded machine: how soon
		// is not what this test is about.
		deadline := time.Now().Add(time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within a minute\nlogs:\n%s", what, s.stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if got := loginKid(); got != k1.ID {
		t.Fatalf("got kid %q, want %q", got, k1.ID)
	}
	k2 := writeKey(token.EdDSA, t0.Add(time.Second))
	eventually("new key signs after its file appears", func() bool { return loginKid() == k2.ID })
	if got := jwksKids(); got != k1.ID+","+k2.ID {
		t.Errorf("got JWKS kids %q, want both", got)
	}

	// A broken file: logged, and the keys in use stay.
	if err := os.WriteFile(filepath.Join(dir, "zzz-broken.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually("broken key file logged", func() bool { return strings.Contains(s.stderr.String(), "zzz-broken.pem: no PEM block") })
	if got := loginKid(); got != k2.ID {
		t.Errorf("after a broken file: got kid %q, want %q still", got, k2.ID)
	}

	// Fixed by hand and reloaded with SIGHUP: pin the old key to sign.
	if err := os.Remove(filepath.Join(dir, "zzz-broken.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, token.SigningKIDFile), []byte(k1.ID), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The file changes above reload too (after reloadDebounce), and may be
	// what makes k1 sign: wait for SIGHUP's own reload as well, before
	// stopping serve ends the watcher with the signal maybe still on its way.
	eventually("signing_kid honoured after SIGHUP", func() bool {
		return loginKid() == k1.ID && strings.Contains(s.stderr.String(), `"trigger":"SIGHUP"`)
	})
	if logs := s.stop(t); !strings.Contains(logs, `"trigger":"SIGHUP"`) {
		t.Errorf("no SIGHUP reload in the logs")
	}
}

// writeKeyFile makes a key and writes it to dir/<kid>.pem (0600), then
// rename, as secret syncers do.
func writeKeyFile(t *testing.T, dir, alg string, at time.Time) *token.Key {
	t.Helper()
	k, err := token.GenerateKey(alg, at)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.MarshalPEM()
	tmp := filepath.Join(dir, ".tmp-"+k.ID)
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, k.ID+".pem")); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestServeReloadDropsRemovedKeyDespiteBrokenFile: the removal of a
// (compromised) key takes effect on the next reload even when another
// file in the directory is broken at the same time; the broken file is
// logged by name, without its contents, and the other keys stay.
func TestServeReloadDropsRemovedKeyDespiteBrokenFile(t *testing.T) {
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	mustRun(t, baseEnv(url), "pw-of-lee\n", "user", "add", "lee", "--role", role)
	dir := t.TempDir()
	t0 := time.Now()
	k1 := writeKeyFile(t, dir, token.ES256, t0)
	k2 := writeKeyFile(t, dir, token.ES256, t0.Add(time.Second))
	s := startServer(t, url, map[string]string{"AUTHD_SIGNING_KEYS_DIR": dir, "JWT_SECRET": ""})
	login := func() string {
		t.Helper()
		r := s.post(t, "/rpc/login", `{"user_":"lee","pass":"pw-of-lee"}`, nil)
		for _, c := range r.cookies {
			if c.Name == "access_token" && r.StatusCode == http.StatusNoContent {
				return c.Value
			}
		}
		t.Fatalf("login: %d %s", r.StatusCode, r.body)
		return ""
	}
	verify := func(tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.base+"/auth/verify", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	byK2 := login()
	if kid := kidOf(t, byK2); kid != k2.ID {
		t.Fatalf("got kid %q, want the newest %q", kid, k2.ID)
	}
	if code, body := verify(byK2); code != http.StatusOK {
		t.Fatalf("verify before the removal: %d %s", code, body)
	}

	// In one go: a broken file appears and k2's file is removed.
	const junk = "-----BEGIN PRIVATE KEY-----\nsecret-looking-junk\n"
	if err := os.WriteFile(filepath.Join(dir, "broken.pem"), []byte(junk), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, k2.ID+".pem")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// A bound on a hang: SIGHUP and the file events reload at once.
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := verify(byK2)
		if code == http.StatusUnauthorized {
			want := `{"code":"PGRST301","details":"None of the keys was able to decode the JWT","hint":null,"message":"No suitable key or wrong key type"}`
			if body != want {
				t.Errorf("got %s, want %s", body, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a token of the removed key still verifies (%d) after a minute\nlogs:\n%s", code, s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if kid := kidOf(t, login()); kid != k1.ID {
		t.Errorf("after the removal: got kid %q, want %q", kid, k1.ID)
	}
	logs := s.stop(t)
	if !strings.Contains(logs, "broken.pem") {
		t.Errorf("the broken file is not named in the logs:\n%s", logs)
	}
	if strings.Contains(logs, "secret-looking-junk") {
		t.Errorf("the logs quote the broken file:\n%s", logs)
	}
}

// kidOf is the kid in a token's header.
func kidOf(t *testing.T, raw string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

// TestServeReconnectsOnNewDatabaseURL: a rewritten DATABASE_URL_FILE (a
// rotated password) moves authd to the new URL without a restart; an
// unusable one is logged and the connection in use stays.
func TestServeReconnectsOnNewDatabaseURL(t *testing.T) {
	t.Parallel()
	urlA, urlB := storetest.NewURL(t), storetest.NewURL(t)
	role := storetest.NewRole(t)
	mustRun(t, baseEnv(urlB), "pw-of-ann\n", "user", "add", "ann", "--role", role)
	dir := t.TempDir()
	file := filepath.Join(dir, "database-url")
	write := func(url string) {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(url+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(urlA)
	env := map[string]string{"DATABASE_URL_FILE": file}
	s := startServer(t, "", env)
	login := func() int {
		return s.post(t, "/rpc/login", `{"user_":"ann","pass":"pw-of-ann"}`, nil).StatusCode
	}
	if got := login(); got != http.StatusUnauthorized {
		t.Fatalf("ann is only in database B: got %d, want 401", got)
	}
	write("postgres://postgres@127.0.0.1:1/nowhere")
	deadline := time.Now().Add(time.Minute) // a bound on a hang: fsnotify reports the rename at once
	for !strings.Contains(s.stderr.String(), "database reconnect failed") {
		if time.Now().After(deadline) {
			t.Fatalf("unusable URL not logged:\n%s", s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := login(); got != http.StatusUnauthorized {
		t.Errorf("after an unusable URL: got %d, want 401 from database A still", got)
	}
	write(urlB)
	deadline = time.Now().Add(time.Minute)
	for login() != http.StatusNoContent {
		if time.Now().After(deadline) {
			t.Fatalf("authd did not move to the new URL within a minute:\n%s", s.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	logs := s.stop(t)
	for _, u := range []string{urlA, urlB} {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		// host:port/database is how a URL shows, whatever its scheme,
		// user, password or parameters.
		if hostPath := parsed.Host + parsed.Path; strings.Contains(logs, hostPath) {
			t.Errorf("the logs show the database URL %s:\n%s", hostPath, logs)
		}
	}
}

// TestReloadKeySet: a reload after a half-written JWT_SECRET_FILE keeps
// the secret read before; one after the file's removal drops it; and with
// every key gone the set verifies nothing and signs nothing.
func TestReloadKeySet(t *testing.T) {
	dir := t.TempDir()
	keysDir := filepath.Join(dir, "keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "jwt-secret")
	secret := strings.Repeat("s", 32)
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	k := writeKeyFile(t, keysDir, token.ES256, time.Now())
	cfg := config{Secret: secretSource{name: "JWT_SECRET_FILE", file: secretFile}, SigningKeysDir: keysDir}
	ks, st, err := cfg.keySet()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.New(ks, token.Options{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": "r", "exp": time.Now().Add(time.Minute).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	reload := func(what string) []error {
		t.Helper()
		next, nextState, problems := cfg.reloadKeySet(st)
		if next == nil {
			t.Fatalf("%s: no key set (%v)", what, problems)
		}
		iss.SetKeys(next)
		st = nextState
		return problems
	}

	if err := os.WriteFile(secretFile, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if problems := reload("half-written secret"); len(problems) != 1 || strings.Contains(problems[0].Error(), "half") {
		t.Errorf("half-written secret: got problems %v, want one, without the file's content", problems)
	}
	if _, err := iss.Verify(hs); err != nil {
		t.Errorf("half-written secret: an HS256 token no longer verifies: %v", err)
	}

	if err := os.Remove(secretFile); err != nil {
		t.Fatal(err)
	}
	reload("secret removed")
	if _, err := iss.Verify(hs); err == nil {
		t.Error("secret removed: an HS256 token still verifies")
	}
	if got := iss.Keys().SigningKeyID(); got != k.ID {
		t.Errorf("secret removed: got signing kid %q, want %q", got, k.ID)
	}

	byKey, _, err := iss.Issue("u", "r", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(keysDir, k.ID+".pem")); err != nil {
		t.Fatal(err)
	}
	reload("every key removed")
	if _, err := iss.Verify(byKey); err == nil {
		t.Error("every key removed: a token of the removed key still verifies")
	}
	if _, _, err := iss.Issue("u", "r", ""); !errors.Is(err, token.ErrNoKeys) {
		t.Errorf("every key removed: Issue got %v, want ErrNoKeys", err)
	}
}
