package server_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

var clearedCookies = []string{
	"access_token=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; SameSite=Lax",
	"refresh_token=; Path=/rpc/refresh_token; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; SameSite=Strict",
	"refresh_token=; Path=/rpc/logout; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; SameSite=Strict",
}

func TestLogoutWithRefreshCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := refreshValue(t, e.login())
	h := jsonHeader()
	h.Set("Cookie", "refresh_token="+tok)
	r := e.post("/rpc/logout", h, "")
	wantStatus(t, r, http.StatusNoContent)
	if got := strings.Join(r.setCookies(), "\n"); got != strings.Join(clearedCookies, "\n") {
		t.Errorf("got Set-Cookie\n%s\nwant\n%s", got, strings.Join(clearedCookies, "\n"))
	}
	wantStatus(t, e.refreshWith(tok), http.StatusUnauthorized)
}

func TestLogoutWithAccessToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	login := e.login()
	h := jsonHeader()
	h.Set("Authorization", "bearer "+accessValue(t, login))
	wantStatus(t, e.post("/rpc/logout", h, ""), http.StatusNoContent)
	wantStatus(t, e.refreshWith(refreshValue(t, login)), http.StatusUnauthorized)
}

func TestLogoutWithForgedAccessTokenRevokesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	login := e.login()
	parts := strings.Split(accessValue(t, login), ".")
	forged := parts[0] + "." + parts[1] + ".AAAA" + parts[2][4:]
	h := jsonHeader()
	h.Set("Cookie", "access_token="+forged)
	wantStatus(t, e.post("/rpc/logout", h, ""), http.StatusNoContent)
	wantStatus(t, e.refreshWith(refreshValue(t, login)), http.StatusNoContent)
}

func TestLogoutIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := refreshValue(t, e.login())
	h := jsonHeader()
	h.Set("Cookie", "refresh_token="+tok)
	for i := range 2 {
		r := e.post("/rpc/logout", h, "")
		wantStatus(t, r, http.StatusNoContent)
		if r.body != "" {
			t.Errorf("logout %d: got body %q", i, r.body)
		}
	}
	// No session at all, no body, no cookies.
	r := e.post("/rpc/logout", nil, "")
	wantStatus(t, r, http.StatusNoContent)
	if got := len(r.setCookies()); got != 3 {
		t.Errorf("got %d Set-Cookie, want the 3 clearing cookies", got)
	}
}

// TestBrowserFlow drives the API with a cookie jar, as a browser would:
// log in, refresh, let the access cookie expire, log out, and check that
// the refresh token issued at login and its successor are dead.
func TestBrowserFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAccessTTL(time.Second), withGrace(0))
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar}
	base, _ := url.Parse(e.srv.URL)
	at := func(path string) string {
		var names []string
		for _, c := range jar.Cookies(base.ResolveReference(&url.URL{Path: path})) {
			names = append(names, c.Name)
		}
		return strings.Join(names, ",")
	}
	post := func(path, body string) response {
		return do(t, client, http.MethodPost, e.srv.URL+path, jsonHeader(), body)
	}

	login := post("/rpc/login", loginBody(testUser, testPassword))
	wantStatus(t, login, http.StatusNoContent)
	loginRefresh := refreshValue(t, login)
	if got := at("/rest/todos"); got != "access_token" {
		t.Errorf("cookies sent to /rest/todos: %q, want only access_token (the refresh token must not travel)", got)
	}

	r := post("/rpc/refresh_token", "")
	wantStatus(t, r, http.StatusNoContent)
	latest := refreshValue(t, r)

	// Max-Age=1: the browser drops the access cookie (the jar reads the
	// real clock) and keeps the refresh cookie.
	waitFor(t, "the jar to send only refresh_token to /rpc/logout", func() bool { return at("/rpc/logout") == "refresh_token" })
	wantStatus(t, post("/rpc/logout", ""), http.StatusNoContent)
	if got := at("/rpc/logout") + at("/rpc/refresh_token") + at("/"); got != "" {
		t.Errorf("cookies left after logout: %q", got)
	}
	for _, tok := range []string{loginRefresh, latest} {
		wantStatus(t, e.refreshWith(tok), http.StatusUnauthorized)
	}
	if n := e.count(`select count(*) from auth.session where revoked_at is not null`); n != 1 {
		t.Errorf("got %d revoked sessions, want 1", n)
	}
}

// TestLogoutWithBothTokens: a browser sends the access cookie and the
// refresh cookie; each names a session (normally the same one) and both
// end.
func TestLogoutWithBothTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b, other := e.login(), e.login(), e.login()
	h := jsonHeader()
	h.Set("Cookie", "access_token="+accessValue(t, a)+"; refresh_token="+refreshValue(t, b))
	wantStatus(t, e.post("/rpc/logout", h, ""), http.StatusNoContent)
	wantStatus(t, e.refreshWith(refreshValue(t, a)), http.StatusUnauthorized)
	wantStatus(t, e.refreshWith(refreshValue(t, b)), http.StatusUnauthorized)
	wantStatus(t, e.refreshWith(refreshValue(t, other)), http.StatusNoContent)
}
