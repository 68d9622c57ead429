package server_test

import (
	"net/http"
	"strconv"
	"testing"
)

func loginFrom(e *env, ip, user, pass string) response {
	e.t.Helper()
	h := jsonHeader()
	h.Set("X-Forwarded-For", ip)
	return e.post("/rpc/login", h, loginBody(user, pass))
}

func wantThrottled(t *testing.T, r response) {
	t.Helper()
	wantStatus(t, r, http.StatusTooManyRequests)
	wantBody(t, r, `{"code":"PT429","details":null,"hint":null,"message":"Too many failed logins; try again later"}`)
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 60 {
		t.Errorf("got Retry-After %q, want 1 to 60 seconds", r.header.Get("Retry-After"))
	}
	if len(r.cookies) != 0 {
		t.Errorf("throttled login set cookies %q", r.setCookies())
	}
}

func TestLoginThrottledPerUsername(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLoginLimits(3, 0))
	e.addUser("other-user", "other-password", e.role)
	// Successes cost nothing.
	for range 5 {
		wantStatus(t, loginFrom(e, "203.0.113.1", testUser, testPassword), http.StatusNoContent)
	}
	// Three failures from three addresses: the username is what counts.
	for i, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		r := loginFrom(e, ip, testUser, "guess-"+strconv.Itoa(i))
		wantStatus(t, r, http.StatusUnauthorized)
	}
	wantThrottled(t, loginFrom(e, "203.0.113.4", testUser, "guess-4"))
	// Even the right password waits: the attacker cannot learn it now.
	wantThrottled(t, loginFrom(e, "203.0.113.5", testUser, testPassword))
	// Another account is not affected.
	wantStatus(t, loginFrom(e, "203.0.113.1", "other-user", "other-password"), http.StatusNoContent)
}

func TestLoginThrottledPerAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLoginLimits(0, 4))
	for i := range 4 {
		wantStatus(t, loginFrom(e, "198.51.100.7", "user-"+strconv.Itoa(i), "x"), http.StatusUnauthorized)
	}
	wantThrottled(t, loginFrom(e, "198.51.100.7", "user-9", "x"))
	wantThrottled(t, loginFrom(e, "198.51.100.7", testUser, testPassword))
	// Another client, and the same user from it, are fine.
	wantStatus(t, loginFrom(e, "198.51.100.8", testUser, testPassword), http.StatusNoContent)
}
