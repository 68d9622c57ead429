package server_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"authd/token"
)

// newKey creates a plan with rpm requests per minute and a key on it.
func (e *env) newKey(rpm int, expiresAt *time.Time) (id, plain string) {
	e.t.Helper()
	plan := "plan-" + strconv.Itoa(rpm) + "-" + e.role
	e.exec(`insert into auth.plan (name, role, requests_per_minute) values ($1, $2, $3) on conflict do nothing`, plan, e.role, rpm)
	id, plain, hash, err := token.NewAPIKey()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.CreateAPIKey(context.Background(), id, hash, "", plan, expiresAt); err != nil {
		e.t.Fatal(err)
	}
	return id, plain
}

func apiKeyHeader(k string) http.Header { return http.Header{"X-Api-Key": {k}} }

func TestVerifyAPIKeyMintsReusedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, key := e.newKey(600, nil)

	r := e.verify(http.MethodGet, apiKeyHeader(key))
	wantStatus(t, r, http.StatusOK)
	tok, ok := strings.CutPrefix(r.header.Get("Authorization"), "Bearer ")
	if !ok {
		t.Fatalf("got Authorization %q, want a Bearer token", r.header.Get("Authorization"))
	}
	c := verifyJWT(t, tok)
	if c["role"] != e.role || c["sub"] != "apikey:"+id {
		t.Errorf("got role %v sub %v, want %s apikey:%s", c["role"], c["sub"], e.role, id)
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 {
		t.Errorf("got a token for %v s, want 300 (5 min)", exp-iat)
	}
	wantAssurance(t, tok, "aal1", []string{"api_key"}, 5*time.Minute)
	if got := r.header.Get("X-Auth-User") + " " + r.header.Get("X-Auth-Role"); got != "apikey:"+id+" "+e.role {
		t.Errorf("got X-Auth-User/Role %q", got)
	}
	// A busy key reuses its token: no signing per request.
	for range 5 {
		again := e.verify(http.MethodGet, apiKeyHeader(key))
		wantStatus(t, again, http.StatusOK)
		if again.header.Get("Authorization") != "Bearer "+tok {
			t.Fatalf("token re-minted within its life")
		}
	}
	// Use is recorded (in the background).
	deadline := time.Now().Add(time.Minute) // a bound on a hang: the touch is written within about a second
	for e.count(`select count(*) from auth.api_key where id = $1 and last_used_at is not null`, id) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("last_used_at was never set")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The X-API-Key is never logged.
	if strings.Contains(e.logs.String(), key) || strings.Contains(e.logs.String(), key[len(key)-43:]) {
		t.Errorf("log contains the API key")
	}
}

func TestVerifyAPIKeyDisabledWithinASecond(t *testing.T) {
	t.Parallel()
	clock := newClock()
	e := newEnv(t, withClock(clock))
	other, _, _, _, _ := e.newServer(withClock(clock)) // a second authd instance
	id, key := e.newKey(600, nil)
	for _, url := range []string{e.srv.URL, other.URL} {
		wantStatus(t, do(t, nil, http.MethodGet, url+"/auth/verify", apiKeyHeader(key), ""), http.StatusOK)
	}
	e.exec(`update auth.api_key set enabled = false where id = $1`, id)
	clock.advance(time.Second)
	for _, url := range []string{e.srv.URL, other.URL} {
		r := do(t, nil, http.MethodGet, url+"/auth/verify", apiKeyHeader(key), "")
		wantStatus(t, r, http.StatusUnauthorized)
		wantBody(t, r, `{"code":"PT401","details":null,"hint":null,"message":"API key disabled"}`)
		if r.header.Get("Authorization") != "" {
			t.Errorf("a disabled key still got a token")
		}
	}
}

func TestVerifyAPIKeyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, key := e.newKey(600, nil)
	past := time.Now().Add(-time.Minute)
	_, expired := e.newKey(600, &past)
	_, other := e.newKey(600, nil)
	wrongSecret := key[:len(key)-43] + other[len(other)-43:]
	for _, tc := range []struct{ name, key, message string }{
		{"malformed", "not-a-key", "Invalid API key"},
		{"unknown id", "authd_aaaaaaaaaaaa_" + key[len(key)-43:], "Invalid API key"},
		{"right id, wrong secret", wrongSecret, "Invalid API key"},
		{"expired", expired, "API key expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.verify(http.MethodGet, apiKeyHeader(tc.key))
			wantStatus(t, r, http.StatusUnauthorized)
			wantBody(t, r, `{"code":"PT401","details":null,"hint":null,"message":"`+tc.message+`"}`)
			if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
				t.Errorf("got WWW-Authenticate %q", got)
			}
		})
	}
	wantStatus(t, e.verify(http.MethodGet, apiKeyHeader(key)), http.StatusOK)
}

func TestVerifyAPIKeyRateLimitedPerPlan(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, slow := e.newKey(3, nil)
	_, fast := e.newKey(600, nil)
	for range 3 {
		wantStatus(t, e.verify(http.MethodGet, apiKeyHeader(slow)), http.StatusOK)
	}
	r := e.verify(http.MethodGet, apiKeyHeader(slow))
	// 403, not 429: nginx's auth_request turns anything but 2xx/401/403
	// into a 500.
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, `{"code":"PT403","details":null,"hint":null,"message":"API key rate limit exceeded (3 requests per minute)"}`)
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 || secs > 20 {
		t.Errorf("got Retry-After %q, want 1 to 20 s", r.header.Get("Retry-After"))
	}
	// Another key on another plan is unaffected.
	for range 10 {
		wantStatus(t, e.verify(http.MethodGet, apiKeyHeader(fast)), http.StatusOK)
	}
}

// TestVerifyAPIKeyRateWithoutTheSharedCount: while the shared rate
// (auth.api_key_rate) cannot be read, each instance still limits a key to
// its plan on its own, and says so in its log, without the key's secret.
func TestVerifyAPIKeyRateWithoutTheSharedCount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, key := e.newKey(3, nil)
	e.exec(`drop table auth.api_key_rate`)
	for range 3 {
		wantStatus(t, e.verify(http.MethodGet, apiKeyHeader(key)), http.StatusOK)
	}
	r := e.verify(http.MethodGet, apiKeyHeader(key))
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, `{"code":"PT403","details":null,"hint":null,"message":"API key rate limit exceeded (3 requests per minute)"}`)
	logs := e.logs.String()
	if !strings.Contains(logs, "the shared rate cannot be read") || !strings.Contains(logs, id) {
		t.Errorf("logs lack the warning about the shared rate for key %s:\n%s", id, logs)
	}
	if strings.Contains(logs, key) {
		t.Error("the logs hold the API key")
	}
}

func TestVerifyAPIKeyRoleDropped(t *testing.T) {
	t.Parallel()
	clock := newClock()
	e := newEnv(t, withAPIKeyTTL(time.Minute), withClock(clock))
	_, key := e.newKey(600, nil)
	wantStatus(t, e.verify(http.MethodGet, apiKeyHeader(key)), http.StatusOK)
	e.exec(`drop role ` + e.role)
	clock.advance(time.Second)
	r := e.verify(http.MethodGet, apiKeyHeader(key))
	wantStatus(t, r, http.StatusForbidden)
	if r.header.Get("Authorization") != "" {
		t.Errorf("a key whose role was dropped still got a token")
	}
}

// TestCacheRecheck: a key's row, and the absence of a key id, are
// trusted for CacheRecheck (1 s) and read again after it, so that a busy
// or made-up key costs one query per second, and disabling or creating a
// key takes effect within one. Timed by a synctest bubble's clock.
func TestCacheRecheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // on time.Now: the bubble's clock inside it
	id, key := e.newKey(600, nil)
	newID, newKey, newHash, err := token.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		identify := func(key, want string) {
			t.Helper()
			got := "ok"
			if _, err := e.core.IdentifyAPIKey(ctx, key); err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		}
		identify(key, "ok")
		identify(newKey, "Invalid API key")
		if _, err := e.db.Pool().Exec(ctx, `update auth.api_key set enabled = false where id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.CreateAPIKey(ctx, newID, newHash, "", "plan-600-"+e.role, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second - time.Nanosecond)
		identify(key, "ok")
		identify(newKey, "Invalid API key")
		time.Sleep(time.Nanosecond)
		identify(key, "API key disabled")
		identify(newKey, "ok")
	})
}
