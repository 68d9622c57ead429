package server_test

import (
	"net/http"
	"testing"
)

const crossSiteBody = `{"code":"PT403","details":null,"hint":"Log in, refresh and log out from the application's own origin, or add that origin to AUTHD_ALLOWED_ORIGINS.","message":"Cross-site request refused"}`

// TestOriginPolicy: login, refresh and logout answer the site itself, the
// origins the operator allows, and clients that are not browsers; any
// other browser request is refused before it is read.
func TestOriginPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAllowedOrigins("https://app.example.com"))
	own := e.srv.URL // http://127.0.0.1:port, the Host the client addresses
	cases := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no browser headers (curl, scripts)", nil, http.StatusNoContent},
		{"same-origin", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {own}}, http.StatusNoContent},
		{"user's own action", http.Header{"Sec-Fetch-Site": {"none"}}, http.StatusNoContent},
		{"cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"sibling subdomain", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://evil.example.com"}}, http.StatusForbidden},
		{"same-site without Origin", http.Header{"Sec-Fetch-Site": {"same-site"}}, http.StatusForbidden},
		{"unknown Sec-Fetch-Site", http.Header{"Sec-Fetch-Site": {"other"}}, http.StatusForbidden},
		{"allowed sibling", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://app.example.com"}}, http.StatusNoContent},
		{"allowed origin, default port", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://APP.example.com:443"}}, http.StatusNoContent},
		{"old browser, own origin", http.Header{"Origin": {own}}, http.StatusNoContent},
		{"old browser, allowed origin", http.Header{"Origin": {"https://app.example.com"}}, http.StatusNoContent},
		{"old browser, other origin", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"old browser, other port", http.Header{"Origin": {own + "1"}}, http.StatusForbidden},
		{"old browser, https seen by the gateway", http.Header{"Origin": {"https" + own[len("http"):]}, "X-Forwarded-Proto": {"https"}}, http.StatusNoContent},
		{"old browser, http page, https site", http.Header{"Origin": {own}, "X-Forwarded-Proto": {"https"}}, http.StatusForbidden},
		{"opaque origin", http.Header{"Origin": {"null"}}, http.StatusForbidden},
		{"old browser, Referer only, own", http.Header{"Referer": {own + "/login?next=/"}}, http.StatusNoContent},
		{"old browser, Referer only, other", http.Header{"Referer": {"https://evil.example/"}}, http.StatusForbidden},
		{"two Origin headers", http.Header{"Origin": {own, "https://evil.example"}}, http.StatusForbidden},
		{"two Sec-Fetch-Site headers", http.Header{"Sec-Fetch-Site": {"same-origin", "cross-site"}}, http.StatusForbidden},
	}
	let := 0 // logins let through
	for _, tc := range cases {
		if tc.want == http.StatusNoContent {
			let += 2
		}
		t.Run(tc.name, func(t *testing.T) {
			for _, form := range []bool{false, true} {
				h, body := jsonHeader(), loginBody(testUser, testPassword)
				if form {
					h, body = formHeader(), "user_=alice&pass=correct+horse+battery+staple"
				}
				for k, v := range tc.header {
					h[k] = v
				}
				r := e.post("/rpc/login", h, body)
				wantStatus(t, r, tc.want)
				if tc.want == http.StatusForbidden {
					wantBody(t, r, crossSiteBody)
					if len(r.cookies) != 0 {
						t.Errorf("got cookies %q on a refused login", r.setCookies())
					}
				}
			}
		})
	}
	if n, want := e.count(`select count(*) from auth.session`), let; n != want {
		t.Errorf("got %d sessions, want %d: one per login let through", n, want)
	}
}

// TestOriginPolicyRefreshLogout: refresh and logout, which read the
// session cookies, follow the same policy; a refused request spends and
// revokes nothing.
func TestOriginPolicyRefreshLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rt := refreshValue(t, e.login())
	for _, path := range []string{"/rpc/refresh_token", "/rpc/logout"} {
		for _, hdr := range []http.Header{
			{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://evil.example.com"}},
			{"Origin": {"https://evil.example.com"}},
		} {
			h := jsonHeader()
			h.Set("Cookie", "refresh_token="+rt)
			for k, v := range hdr {
				h[k] = v
			}
			r := e.post(path, h, "")
			wantStatus(t, r, http.StatusForbidden)
			wantBody(t, r, crossSiteBody)
			if len(r.cookies) != 0 {
				t.Errorf("%s: got cookies %q on a refused request", path, r.setCookies())
			}
		}
	}
	// The token was neither spent nor revoked; from the page itself it works.
	h := jsonHeader()
	h.Set("Cookie", "refresh_token="+rt)
	h.Set("Sec-Fetch-Site", "same-origin")
	wantStatus(t, e.post("/rpc/refresh_token", h, ""), http.StatusNoContent)
}
