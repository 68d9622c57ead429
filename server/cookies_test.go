package server_test

import (
	"net/http"
	"strings"
	"testing"
)

const duplicateBody = `{"code":"PT401","details":null,"hint":"Another site under the same domain may have set it: clear this site's cookies, then log in again.","message":"Cookie %s sent more than once"}`

// TestDuplicateCookiesRefused: a sibling subdomain can set a cookie of
// the same name for the parent domain (cookie tossing), and the browser
// then sends both. Neither is chosen: verify and refresh refuse, and
// nothing is spent.
func TestDuplicateCookiesRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	victim, mallory := e.login(), e.loginAs("mallory")

	// The planted cookie has the longer path, so browsers send it first.
	r := e.verify(http.MethodGet, http.Header{"Cookie": {"access_token=" + accessValue(t, mallory) + "; access_token=" + accessValue(t, victim)}})
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, strings.Replace(duplicateBody, "%s", "access_token", 1))
	if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("got WWW-Authenticate %q, want Bearer", got)
	}

	h := jsonHeader()
	h.Set("Cookie", "refresh_token="+refreshValue(t, mallory)+"; refresh_token="+refreshValue(t, victim))
	r = e.post("/rpc/refresh_token", h, "")
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, strings.Replace(duplicateBody, "%s", "refresh_token", 1))
	if len(r.cookies) != 0 {
		t.Errorf("got cookies %q on a refused refresh", r.setCookies())
	}
	// Neither token was spent.
	wantStatus(t, e.refreshWith(refreshValue(t, victim)), http.StatusNoContent)
	wantStatus(t, e.refreshWith(refreshValue(t, mallory)), http.StatusNoContent)
}

// TestLogoutWithDuplicateCookiesEndsBoth: a planted cookie must not keep
// a user from logging out; logout ends the session of every token
// presented.
func TestLogoutWithDuplicateCookiesEndsBoth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	victim, mallory := e.login(), e.loginAs("mallory")

	h := jsonHeader()
	h.Set("Cookie", "refresh_token="+refreshValue(t, mallory)+"; refresh_token="+refreshValue(t, victim))
	r := e.post("/rpc/logout", h, "")
	wantStatus(t, r, http.StatusNoContent)
	if n := e.count(`select count(*) from auth.session where revoked_at is null`); n != 0 {
		t.Errorf("got %d live sessions after logout, want 0", n)
	}
	wantStatus(t, e.refreshWith(refreshValue(t, victim)), http.StatusUnauthorized)
}

// TestHostPrefixCookie: with HostPrefix the access cookie is
// __Host-access_token, which no other host can set; an unprefixed
// access_token, which a sibling subdomain could, is not read at all.
func TestHostPrefixCookie(t *testing.T) {
	t.Parallel()
	cc := defaultCookies()
	cc.Secure, cc.HostPrefix = true, true
	e := newEnv(t, withCookie(cc))
	login := e.login()
	want := []string{
		"__Host-access_token=JWT; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Lax",
		"refresh_token=RT; Path=/rpc/refresh_token; Max-Age=2592000; HttpOnly; Secure; SameSite=Strict",
		"refresh_token=RT; Path=/rpc/logout; Max-Age=2592000; HttpOnly; Secure; SameSite=Strict",
	}
	if got := maskCookies(login.setCookies()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got Set-Cookie\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c := login.cookie("__Host-access_token", "/")
	if c == nil {
		t.Fatalf("no __Host-access_token cookie in %q", login.setCookies())
	}
	access := c.Value

	mallory := e.loginAs("mallory").cookie("__Host-access_token", "/").Value
	for _, tc := range []struct {
		name   string
		cookie string
		status int
		user   string
	}{
		{"prefixed", "__Host-access_token=" + access, http.StatusOK, testUser},
		{"planted unprefixed is ignored", "access_token=" + mallory + "; __Host-access_token=" + access, http.StatusOK, testUser},
		{"unprefixed alone is not read", "access_token=" + mallory, http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.verify(http.MethodGet, http.Header{"Cookie": {tc.cookie}})
			wantStatus(t, r, tc.status)
			if got := r.header.Get("X-Auth-User"); got != tc.user {
				t.Errorf("got X-Auth-User %q, want %q", got, tc.user)
			}
		})
	}

	h := jsonHeader()
	h.Set("Cookie", "__Host-access_token="+access)
	r := e.post("/rpc/logout", h, "")
	wantStatus(t, r, http.StatusNoContent)
	if got, want := r.setCookies()[0], "__Host-access_token=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"; got != want {
		t.Errorf("got Set-Cookie %q, want %q", got, want)
	}
	wantStatus(t, e.refreshWith(refreshValue(t, login)), http.StatusUnauthorized)
}

// loginAs adds the user name (testPassword, e's role) and logs in as it.
func (e *env) loginAs(name string) response {
	e.t.Helper()
	e.addUser(name, testPassword, e.role)
	r := e.post("/rpc/login", jsonHeader(), loginBody(name, testPassword))
	wantStatus(e.t, r, http.StatusNoContent)
	return r
}
