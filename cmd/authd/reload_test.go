package main

import (
	"encoding/json"
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
	writeKey := func(alg string, at time.Time) *token.Key {
		k, err := token.GenerateKey(alg, at)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := k.MarshalPEM()
		// Write then rename, as secret syncers do.
		tmp := filepath.Join(dir, ".tmp-"+k.ID)
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, k.ID+".pem")); err != nil {
			t.Fatal(err)
		}
		return k
	}
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
				tok, _, err := jwt.NewParser().ParseUnverified(c.Value, jwt.MapClaims{})
				if err != nil {
					t.Fatal(err)
				}
				kid, _ := tok.Header["kid"].(string)
				return kid
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
	eventually("broken key file logged", func() bool { return strings.Contains(s.stderr.String(), "key reload failed") })
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
	eventually("signing_kid honoured after SIGHUP", func() bool { return loginKid() == k1.ID })
	if logs := s.stop(t); !strings.Contains(logs, `"trigger":"SIGHUP"`) {
		t.Errorf("no SIGHUP reload in the logs")
	}
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
