package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// browserFormHeader is what Chromium sends with a plain form post from the
// page at referer.
func browserFormHeader(referer string) http.Header {
	u, _ := url.Parse(referer)
	return http.Header{
		"Content-Type":   {"application/x-www-form-urlencoded"},
		"Accept":         {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"Sec-Fetch-Mode": {"navigate"},
		"Sec-Fetch-Site": {"same-origin"},
		"Origin":         {u.Scheme + "://" + u.Host},
		"Referer":        {referer},
	}
}

func formLogin(pass, next string) string {
	v := url.Values{"user_": {testUser}, "pass": {pass}}
	if next != "" {
		v.Set("next", next)
	}
	return v.Encode()
}

// noRedirect is a client that shows the 303 rather than following it.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestBrowserFormLogin: a form post from the page without JavaScript signs
// in with a 303 to the form's next (a path on the site only), with the
// session cookies; a refusal is an HTML page with authd's message and a
// link back, never JSON.
func TestBrowserFormLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	page := e.srv.URL + "/?next=%2Fapp%2Fhome"
	post := func(body string, h http.Header) response {
		t.Helper()
		return do(t, noRedirect, http.MethodPost, e.srv.URL+"/rpc/login", h, body)
	}

	cases := []struct{ name, next, want string }{
		{"next", "/app/home?tab=1", "/app/home?tab=1"},
		{"no next field: the page's ?next=", "", "/app/home"},
		{"backslash", "/\\evil.example", "/?next=%2Fapp%2Fhome"},
		{"two slashes", "//evil.example", "/?next=%2Fapp%2Fhome"},
		{"encoded backslash", "/%5Cevil.example", "/?next=%2Fapp%2Fhome"},
		{"scheme", "https://evil.example/", "/?next=%2Fapp%2Fhome"},
		{"javascript", "javascript:alert(1)", "/?next=%2Fapp%2Fhome"},
	}
	for _, tc := range cases {
		r := post(formLogin(testPassword, tc.next), browserFormHeader(page))
		wantStatus(t, r, http.StatusSeeOther)
		if got := r.header.Get("Location"); got != tc.want {
			t.Errorf("%s: Location %q, want %q", tc.name, got, tc.want)
		}
		verifyJWT(t, accessValue(t, r))
		refreshValue(t, r)
		if r.body != "" && strings.Contains(r.body, "{") {
			t.Errorf("%s: body %q, want no JSON", tc.name, r.body)
		}
	}
	// Without a next anywhere: back to the page.
	r := post(formLogin(testPassword, ""), browserFormHeader(e.srv.URL+"/signin"))
	wantStatus(t, r, http.StatusSeeOther)
	if got := r.header.Get("Location"); got != "/signin" {
		t.Errorf("no next: Location %q, want /signin", got)
	}
	// A page's ?next= that leaves the site is not followed either.
	r = post(formLogin(testPassword, ""), browserFormHeader(e.srv.URL+"/?next=%2F%5Cevil.example"))
	wantStatus(t, r, http.StatusSeeOther)
	if got := r.header.Get("Location"); got != "/" {
		t.Errorf("page's next leaves the site: Location %q, want /", got)
	}
	if n := e.count(`select count(*) from auth.session`); n != len(cases)+2 {
		t.Errorf("got %d sessions, want %d", n, len(cases)+2)
	}

	// Wrong password: 401, an HTML page, no cookies.
	r = post(formLogin("wrong", "/app"), browserFormHeader(page))
	wantStatus(t, r, http.StatusUnauthorized)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want text/html", ct)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	for _, want := range []string{"<h1>Sign-in failed</h1>", "Invalid user or password", `<a href="/?next=%2fapp%2fhome">`} {
		if !strings.Contains(strings.ToLower(r.body), strings.ToLower(want)) {
			t.Errorf("page lacks %q:\n%s", want, r.body)
		}
	}
	if len(r.cookies) != 0 {
		t.Errorf("cookies %q on a refused login", r.setCookies())
	}

	// An unknown field is still refused (the handler's check), as HTML.
	r = post(formLogin(testPassword, "")+"&extra=1", browserFormHeader(page))
	wantStatus(t, r, http.StatusNotFound)
	if !strings.Contains(r.body, "<h1>Sign-in failed</h1>") {
		t.Errorf("unknown field: page %s", r.body)
	}

	// The origin policy still applies: a cross-site form is refused.
	h := browserFormHeader("https://evil.example/")
	h.Set("Sec-Fetch-Site", "cross-site")
	r = post(formLogin(testPassword, "/app"), h)
	wantStatus(t, r, http.StatusForbidden)
	if !strings.Contains(r.body, "Cross-site request refused") || len(r.cookies) != 0 {
		t.Errorf("cross-site: cookies %q, page %s", r.setCookies(), r.body)
	}
	// The link back never leaves the site, whatever Referer says.
	if !strings.Contains(r.body, `<a href="/">`) {
		t.Errorf("cross-site: want a link back to /, page %s", r.body)
	}

	// fetch() with a form body and curl get the RPC answer, as before.
	h = browserFormHeader(page)
	h.Set("Sec-Fetch-Mode", "cors")
	h.Set("Accept", "*/*")
	r = post(formLogin(testPassword, "/app"), h) // next is no argument of login
	wantStatus(t, r, http.StatusNotFound)
	if !strings.Contains(r.body, `"code":"PGRST202"`) {
		t.Errorf("fetch with next: body %s, want PGRST202 JSON", r.body)
	}
	r = post(formLogin(testPassword, ""), h)
	wantStatus(t, r, http.StatusNoContent)
}

// TestBrowserFormLogout: a form post signs out with a 303 to next, clearing
// the cookies and ending the session; scope global ends every session.
func TestBrowserFormLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.login()
	second := e.login()
	page := e.srv.URL + "/"
	h := browserFormHeader(page)
	h.Set("Cookie", "access_token="+accessValue(t, first)+"; refresh_token="+refreshValue(t, first))
	r := do(t, noRedirect, http.MethodPost, e.srv.URL+"/rpc/logout", h, "next=%2Fbye")
	wantStatus(t, r, http.StatusSeeOther)
	if got := r.header.Get("Location"); got != "/bye" {
		t.Errorf("Location %q, want /bye", got)
	}
	if c := r.cookie("access_token", "/"); c == nil || c.MaxAge >= 0 {
		t.Errorf("access cookie not cleared: %q", r.setCookies())
	}
	if n := e.count(`select count(*) from auth.session where revoked_at is null`); n != 1 {
		t.Errorf("%d live sessions after logging one out, want 1", n)
	}

	h.Set("Cookie", "access_token="+accessValue(t, second))
	r = do(t, noRedirect, http.MethodPost, e.srv.URL+"/rpc/logout", h, "scope=global&next=%2F%5Cevil.example")
	wantStatus(t, r, http.StatusSeeOther)
	if got := r.header.Get("Location"); got != "/" {
		t.Errorf("Location %q, want / (the page; next leaves the site)", got)
	}
	if n := e.count(`select count(*) from auth.session where revoked_at is null`); n != 0 {
		t.Errorf("%d live sessions after a global logout, want 0", n)
	}

	r = do(t, noRedirect, http.MethodPost, e.srv.URL+"/rpc/logout", h, "scope=everything")
	wantStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(r.body, "<h1>Sign-out failed</h1>") || !strings.Contains(r.body, "invalid logout scope") {
		t.Errorf("bad scope: page %s", r.body)
	}
}
