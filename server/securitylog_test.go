package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// clientHeader is a JSON request from client address ip (through the
// loopback "gateway") with User-Agent ua.
func clientHeader(ip, ua string) http.Header {
	h := jsonHeader()
	h.Set("X-Forwarded-For", ip)
	h.Set("User-Agent", ua)
	return h
}

// wantLogged checks that entry has exactly the fields want, among those
// named in fields (absent: ""), and no other of them.
func wantLogged(t *testing.T, what string, entry map[string]any, want map[string]string, fields ...string) {
	t.Helper()
	for _, f := range fields {
		got, ok := entry[f]
		w, wanted := want[f]
		switch {
		case wanted && got != w:
			t.Errorf("%s: %s = %v, want %q", what, f, got, w)
		case !wanted && ok:
			t.Errorf("%s: %s = %v, want no such field", what, f, got)
		}
	}
}

// TestLoginRefusalsLogged: a refused login is logged with why, which
// client and which user — the user only when the name is one, since an
// unknown name may be a password typed into the wrong field — and never
// the password.
func TestLoginRefusalsLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("dormant", "pw-of-dormant", e.role)
	e.exec(`update auth.user set disabled_at = now() where username = 'dormant'`)
	longUA := strings.Repeat("é", 150) // 300 bytes

	for _, tc := range []struct {
		user, pass, ua string
		want           map[string]string
	}{
		{testUser, "wrong-password-1", "curl/8.5",
			map[string]string{"reason": "wrong_password", "user": testUser, "client": "203.0.113.7", "user_agent": "curl/8.5"}},
		{"hunter2-typed-as-name", "wrong-password-2", "curl/8.5",
			map[string]string{"reason": "unknown_user", "client": "203.0.113.7", "user_agent": "curl/8.5"}},
		{"dormant", "pw-of-dormant", longUA,
			map[string]string{"reason": "disabled", "user": "dormant", "client": "203.0.113.7", "user_agent": strings.Repeat("é", 100)}},
	} {
		before := len(logEntries(t, e.logs, "login refused"))
		wantInvalidLogin(t, e.post("/rpc/login", clientHeader("203.0.113.7", tc.ua), loginBody(tc.user, tc.pass)))
		lines := logEntries(t, e.logs, "login refused")
		if len(lines) != before+1 {
			t.Fatalf("login of %s: got %d more 'login refused' lines, want 1", tc.user, len(lines)-before)
		}
		got := lines[len(lines)-1]
		wantLogged(t, "login of "+tc.user, got, tc.want, "reason", "user", "client", "user_agent")
		if ua, _ := got["user_agent"].(string); len(ua) > 200 || !utf8.ValidString(ua) {
			t.Errorf("user_agent logged is %d bytes (valid UTF-8: %v), want at most 200", len(ua), utf8.ValidString(ua))
		}
	}
	// A login that succeeds is no security event: only the request line.
	wantStatus(t, e.post("/rpc/login", clientHeader("203.0.113.7", "curl/8.5"), loginBody(testUser, testPassword)), http.StatusNoContent)
	if n := len(logEntries(t, e.logs, "login refused")); n != 3 {
		t.Errorf("got %d 'login refused' lines after a good login, want still 3", n)
	}
	logs := e.logs.String()
	for _, secret := range []string{"wrong-password-1", "wrong-password-2", "pw-of-dormant", testPassword, "hunter2-typed-as-name"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// TestRefreshReuseLogged: the replay of a spent refresh token is logged
// with the user, the session it revoked and the client who replayed it,
// never the token.
func TestRefreshReuseLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(0))
	first := refreshValue(t, e.login())
	second := refreshValue(t, e.refreshWith(first))

	h := clientHeader("198.51.100.23", "thief-agent/1.0")
	h.Set("Cookie", "refresh_token="+first)
	wantStatus(t, e.post("/rpc/refresh_token", h, ""), http.StatusUnauthorized)

	var session string
	if err := e.db.Pool().QueryRow(context.Background(), `select id::text from auth.session where username = $1`, testUser).Scan(&session); err != nil {
		t.Fatal(err)
	}
	lines := logEntries(t, e.logs, "refresh token reused after rotation; session revoked")
	if len(lines) != 1 {
		t.Fatalf("got %d reuse lines, want 1: %s", len(lines), e.logs.String())
	}
	if lines[0]["level"] != "WARN" {
		t.Errorf("reuse logged at %v, want WARN", lines[0]["level"])
	}
	wantLogged(t, "reuse", lines[0], map[string]string{
		"user": testUser, "session": session, "client": "198.51.100.23", "user_agent": "thief-agent/1.0",
	}, "user", "session", "client", "user_agent")
	logs := e.logs.String()
	for _, tok := range []string{first, second} {
		if strings.Contains(logs, tok) {
			t.Errorf("the log holds a refresh token")
		}
	}
}
