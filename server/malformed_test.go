package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestMalformedUsernameIsAnUnknownUser: a user name PostgreSQL cannot hold
// (a NUL, invalid UTF-8) or longer than any user's is answered exactly as
// an unknown user — 401, the same body, one dummy bcrypt compare, a failed
// login counted — without reaching the database, so without a 500 or an
// ERROR line repeating the client's text.
func TestMalformedUsernameIsAnUnknownUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const probe = "probe-name"
	cases := []struct {
		name   string
		header http.Header
		body   string
	}{
		{"json NUL", jsonHeader(), `{"user_": "` + probe + `\u0000", "pass": "x"}`},
		{"json NUL only", jsonHeader(), `{"user_": "\u0000", "pass": "x"}`},
		{"form NUL", formHeader(), "user_=" + probe + "%00&pass=x"},
		{"form invalid UTF-8", formHeader(), "user_=" + probe + "%FFce&pass=x"},
		{"form NUL after a real user", formHeader(), "user_=" + testUser + "%00&pass=" + strings.ReplaceAll(testPassword, " ", "+")},
		{"too long", jsonHeader(), loginBody(probe+strings.Repeat("x", 300), "x")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			compares := e.metric("authd_bcrypt_wait_seconds_count")
			failed := e.metric(`authd_logins_total{result="failed"}`)
			wantInvalidLogin(t, e.post("/rpc/login", tc.header, tc.body))
			// The same work as for an unknown user: one dummy compare.
			if got := e.metric("authd_bcrypt_wait_seconds_count") - compares; got != 1 {
				t.Errorf("got %v bcrypt compares, want 1", got)
			}
			if got := e.metric(`authd_logins_total{result="failed"}`) - failed; got != 1 {
				t.Errorf("got %v failed logins counted, want 1", got)
			}
		})
	}
	if n := e.count(`select count(*) from auth.session`); n != 0 {
		t.Errorf("got %d sessions, want 0", n)
	}
	logs := e.logs.String()
	if strings.Contains(logs, `"level":"ERROR"`) || strings.Contains(logs, probe) {
		t.Errorf("client input was logged as an error:\n%s", logs)
	}
}

// TestMalformedTokensAreInvalid: a refresh token or API key with a NUL or
// invalid UTF-8 is refused as any wrong one is, never with a 500.
func TestMalformedTokensAreInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const invalidRefresh = `{"code":"PT401","details":null,"hint":null,"message":"Invalid or expired refresh token"}`
	for _, body := range []string{`{"refresh_token": "abc\u0000def"}`, `{"refresh_token": "\u0000"}`} {
		r := e.post("/rpc/refresh_token", jsonHeader(), body)
		wantStatus(t, r, http.StatusUnauthorized)
		wantBody(t, r, invalidRefresh)
		wantStatus(t, e.post("/rpc/logout", jsonHeader(), body), http.StatusNoContent)
	}
	for _, body := range []string{"refresh_token=abc%00def", "refresh_token=%FF%FE"} {
		r := e.post("/rpc/refresh_token", formHeader(), body)
		wantStatus(t, r, http.StatusUnauthorized)
		wantBody(t, r, invalidRefresh)
		wantStatus(t, e.post("/rpc/logout", formHeader(), body), http.StatusNoContent)
	}
	r := e.post("/auth/verify", http.Header{"X-API-Key": {"authd_" + strings.Repeat("\xff", 56)}}, "")
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, `{"code":"PT401","details":null,"hint":null,"message":"Invalid API key"}`)
	if logs := e.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("client input was logged as an error:\n%s", logs)
	}
}
