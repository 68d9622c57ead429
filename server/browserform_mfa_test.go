package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBrowserFormMFA: without JavaScript, a user with a factor signs in
// through two forms: the login's page asks for the code, and the code's
// form leads on to next.
func TestBrowserFormMFA(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	secret, _ := e.enrollMFA(clk)
	clk.advance(31e9)
	page := e.srv.URL + "/?next=%2Fapp"
	r := do(t, noRedirect, http.MethodPost, e.srv.URL+"/rpc/login", browserFormHeader(page), formLogin(testPassword, ""))
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `action="/rpc/mfa_verify"`) || !strings.Contains(r.body, `name="next" value="/app"`) {
		t.Fatalf("login page: %s", r.body)
	}
	aal1 := accessValue(t, r)
	h := browserFormHeader(e.srv.URL + "/rpc/login")
	h.Set("Cookie", "access_token="+aal1)
	r = do(t, noRedirect, http.MethodPost, e.srv.URL+"/rpc/mfa_verify", h, "next=%2Fapp&code=000000")
	wantStatus(t, r, http.StatusUnauthorized)
	if !strings.Contains(r.body, "Invalid MFA code") || !strings.Contains(r.body, "<h1>Sign-in failed</h1>") {
		t.Errorf("wrong code: page %s", r.body)
	}
	r = do(t, noRedirect, http.MethodPost, e.srv.URL+"/rpc/mfa_verify", h, "next=%2Fapp&code="+code(t, secret, clk.now()))
	wantStatus(t, r, http.StatusSeeOther)
	if got := r.header.Get("Location"); got != "/app" {
		t.Errorf("Location %q, want /app", got)
	}
	wantAssurance(t, accessValue(t, r), "aal2", []string{"pwd", "totp"}, time.Hour)
}
