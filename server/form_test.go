package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		next string
		ok   bool
	}{
		{"/", true},
		{"/app", true},
		{"/app/page?x=1&y=%2F#top", true},
		{"/a%20b", true},
		{"", false},
		{"app", false},
		{"//evil.example", false},
		{"//evil.example/path", false},
		{"/\\evil.example", false},
		{"\\/evil.example", false},
		{"/%5Cevil.example", false},
		{"/%5cevil.example", false},
		{"/%2F/evil.example", false},
		{"/%2f%2fevil.example", false},
		{"https://evil.example", false},
		{"http:/evil.example", false},
		{"javascript:alert(1)", false},
		{"JavaScript:alert(1)", false},
		{"/\t/evil.example", false},
		{"/\n/evil.example", false},
		{"/%09/evil.example", false},
		{"/%0d%0aSet-Cookie:x=1", false},
		{"/ space", false},
		{"/\x00", false},
		{"/é", false},
		{"/%zz", false},
		{"/" + strings.Repeat("a", maxNextLen), false},
	} {
		got, ok := safeNext(tc.next)
		if ok != tc.ok || (ok && got != tc.next) {
			t.Errorf("safeNext(%q) = %q, %v; want %v", tc.next, got, ok, tc.ok)
		}
	}
}

// FuzzSafeNext: whatever safeNext accepts stays on the site however a
// browser reads it (a backslash as a slash, tabs and newlines dropped),
// and, percent-decoded, still starts with a single slash.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/app?x=1", "//evil", "/\\evil", "/%5Cevil", "https://evil", "javascript:x", "/%2F%2Fevil"} {
		f.Add(s)
	}
	site, _ := url.Parse("https://site.example/login?next=/")
	f.Fuzz(func(t *testing.T, next string) {
		got, ok := safeNext(next)
		if !ok {
			if got != "" {
				t.Fatalf("safeNext(%q) refused but returned %q", next, got)
			}
			return
		}
		if got != next {
			t.Fatalf("safeNext(%q) = %q, want it unchanged", next, got)
		}
		asBrowser := strings.NewReplacer("\\", "/", "\t", "", "\n", "", "\r", "").Replace(got)
		u, err := url.Parse(asBrowser)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", next, err)
		}
		if r := site.ResolveReference(u); r.Host != site.Host || r.Scheme != site.Scheme {
			t.Fatalf("accepted %q, which leads to %s", next, r)
		}
		dec, err := url.PathUnescape(got)
		if err != nil || !strings.HasPrefix(dec, "/") || strings.HasPrefix(dec, "//") || strings.Contains(dec, "\\") {
			t.Fatalf("accepted %q, which decodes to %q", next, dec)
		}
	})
}

func TestTakeField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, rest, value string }{
		{"user_=a&pass=b&next=%2Fapp", "user_=a&pass=b", "/app"},
		{"next=/x&user_=a", "user_=a", "/x"},
		{"user_=a&pass=b", "user_=a&pass=b", ""},
		{"next=/a&next=/b&pass=b", "pass=b", ""},
		{"ne%78t=/a&pass=b", "pass=b", "/a"},
		{"next", "", ""},
		{"pass=a%26next%3D%2Fx", "pass=a%26next%3D%2Fx", ""},
	} {
		rest, value := takeField([]byte(tc.body), "next")
		if string(rest) != tc.rest || value != tc.value {
			t.Errorf("takeField(%q) = %q, %q; want %q, %q", tc.body, rest, value, tc.rest, tc.value)
		}
	}
}

func TestFormNavigation(t *testing.T) {
	t.Parallel()
	const form = "application/x-www-form-urlencoded"
	const html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, tc := range []struct {
		name                 string
		contentType, mode, a string
		want                 bool
	}{
		{"browser form", form, "navigate", html, true},
		{"form, fetch metadata only", form, "navigate", "", true},
		{"old browser form", form, "", html, true},
		{"fetch of a form", form, "cors", "*/*", false},
		{"curl form", form, "", "*/*", false},
		{"form asking for JSON and HTML", form, "", "application/json, text/html", false},
		{"JSON navigation", "application/json", "navigate", html, false},
		{"no content type", "", "navigate", html, false},
	} {
		h := map[string][]string{"Content-Type": {tc.contentType}, "Sec-Fetch-Mode": {tc.mode}, "Accept": {tc.a}}
		if got := formNavigation(h); got != tc.want {
			t.Errorf("%s: formNavigation = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBrowserFormMFA: a login that answers {"mfa_required": true} (a user
// with a second factor) is answered to a form with a page asking for the
// code, posting to /rpc/mfa_verify with the same next; the cookies of the
// first step are kept.
func TestBrowserFormMFA(t *testing.T) {
	t.Parallel()
	e := echo.New()
	e.HTTPErrorHandler = errorHandler(slog.New(slog.DiscardHandler))
	e.POST("/rpc/login", func(c echo.Context) error {
		http.SetCookie(c.Response(), &http.Cookie{Name: "access_token", Value: "aal1"})
		return c.JSONBlob(http.StatusOK, []byte(`{"mfa_required": true, "aal": "aal1"}`))
	}, (&Server{}).browserForm(formSignIn))
	req := httptest.NewRequest(http.MethodPost, "/rpc/login", strings.NewReader("user_=a&pass=b&next=%2Fapp%3Fx%3D%22"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("got status %d, want 200", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{`action="/rpc/mfa_verify"`, `name="next" value="/app?x=&#34;"`, `autocomplete="one-time-code"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s:\n%s", want, body)
		}
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want text/html", ct)
	}
	if got := rec.Header().Get("Set-Cookie"); got != "access_token=aal1" {
		t.Errorf("Set-Cookie %q, want the handler's", got)
	}
}
