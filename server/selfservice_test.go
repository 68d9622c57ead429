package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"authd/identity"
	"authd/server"
)

const (
	newPassword      = "a brand new passphrase"
	wrongPasswordMsg = `{"code":"PT401","details":null,"hint":null,"message":"Invalid user or password"}`
)

func withPasswordMinLength(n int) option {
	return func(_ *server.Config, ic *identity.Config, _ *envOpts) { ic.PasswordMinLength = n }
}

// selfHeader is a JSON RPC request authenticated by access token tok.
func selfHeader(tok string) http.Header {
	h := jsonHeader()
	h.Set("Authorization", "Bearer "+tok)
	return h
}

func changeBody(current, next string) string {
	b, _ := json.Marshal(map[string]string{"pass": current, "new_pass": next})
	return string(b)
}

// sessionOf is the sid claim of access token tok.
func sessionOf(t *testing.T, tok string) string {
	t.Helper()
	sid, _ := verifyJWT(t, tok)["sid"].(string)
	if sid == "" {
		t.Fatalf("no sid in %s", tok)
	}
	return sid
}

// TestChangePassword: the caller's current password and access token
// change the password; every other session dies (its refresh token at
// once, its access token at /auth/verify within a second), and the
// caller's session goes on with rotated tokens, answered as a refresh is.
func TestChangePassword(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	mine, other := e.login(), e.login()
	myAccess, otherAccess := accessValue(t, mine), accessValue(t, other)
	wantStatus(t, e.verify(http.MethodGet, bearer(otherAccess)), http.StatusOK) // cached as live

	r := e.post("/rpc/change_password", selfHeader(myAccess), changeBody(testPassword, newPassword))
	wantStatus(t, r, http.StatusNoContent)
	newAccess, newRefresh := accessValue(t, r), refreshValue(t, r)
	if got, want := sessionOf(t, newAccess), sessionOf(t, myAccess); got != want {
		t.Errorf("new access token's sid %q, want the caller's session %q", got, want)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}

	// The other session is over, at once for refresh and within a second
	// at /auth/verify.
	wantStatus(t, e.refreshWith(refreshValue(t, other)), http.StatusUnauthorized)
	clk.advance(time.Second)
	rv := e.verify(http.MethodGet, bearer(otherAccess))
	wantStatus(t, rv, http.StatusUnauthorized)
	wantBody(t, rv, sessionEnded)

	// The caller's session goes on: its access tokens pass, the new
	// refresh token works, the one from before the change does not.
	wantStatus(t, e.verify(http.MethodGet, bearer(myAccess)), http.StatusOK)
	wantStatus(t, e.verify(http.MethodGet, bearer(newAccess)), http.StatusOK)
	wantStatus(t, e.refreshWith(refreshValue(t, mine)), http.StatusUnauthorized)
	wantStatus(t, e.refreshWith(newRefresh), http.StatusNoContent)

	// The new password is the password.
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword)), http.StatusUnauthorized)
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody(testUser, newPassword)), http.StatusNoContent)
	if n := e.count(`select count(*) from auth.refresh_token where revoked_reason = 'password_change'`); n != 2 {
		t.Errorf("%d refresh tokens revoked for password_change, want 2 (the other session's and the caller's old one)", n)
	}
}

// TestChangePasswordRepresentation: with Prefer: return=representation
// the tokens come in the body, as refresh answers.
func TestChangePasswordRepresentation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := selfHeader(accessValue(t, e.login()))
	h.Set("Prefer", "return=representation")
	r := e.post("/rpc/change_password", h, changeBody(testPassword, newPassword))
	wantStatus(t, r, http.StatusOK)
	var body struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if body.TokenType != "bearer" || body.AccessToken != accessValue(t, r) || body.RefreshToken != refreshValue(t, r) {
		t.Errorf("body %s does not carry the cookies' tokens", r.body)
	}
	wantStatus(t, e.refreshWith(body.RefreshToken), http.StatusNoContent)
}

// TestChangePasswordRefused: a wrong current password is 401 as at login,
// a new password the policy refuses is 400, a missing or bad access token
// 401, a cross-site page 403 — and none of them changes anything.
func TestChangePasswordRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withPasswordMinLength(10))
	other := e.login()
	access := accessValue(t, e.login())
	for _, tt := range []struct {
		name   string
		header http.Header
		body   string
		status int
		want   string
	}{
		{"wrong current password", selfHeader(access), changeBody("not the password", newPassword),
			http.StatusUnauthorized, wrongPasswordMsg},
		{"too short", selfHeader(access), changeBody(testPassword, "short1234"), http.StatusBadRequest,
			`{"code":"22023","details":null,"hint":"Choose a longer password that is not one of the most common ones nor the username.","message":"password is too short: at least 10 characters"}`},
		{"common", selfHeader(access), changeBody(testPassword, "Password123"), http.StatusBadRequest,
			`{"code":"22023","details":null,"hint":"Choose a longer password that is not one of the most common ones nor the username.","message":"password is one of the most common passwords, or the username: choose another"}`},
		{"over 72 bytes", selfHeader(access), changeBody(testPassword, strings.Repeat("x", 73)), http.StatusBadRequest,
			`{"code":"22023","details":null,"hint":"Choose a longer password that is not one of the most common ones nor the username.","message":"password is longer than bcrypt's 72-byte limit"}`},
		{"no token", jsonHeader(), changeBody(testPassword, newPassword), http.StatusUnauthorized,
			`{"code":"PGRST302","details":null,"hint":null,"message":"Anonymous access is disabled"}`},
		{"forged token", selfHeader(access[:len(access)-4] + "AAAA"), changeBody(testPassword, newPassword), http.StatusUnauthorized, ""},
		{"missing argument", selfHeader(access), `{"pass": "x"}`, http.StatusNotFound, ""},
		{"cross-site cookie", func() http.Header {
			h := jsonHeader()
			h.Set("Cookie", "access_token="+access)
			h.Set("Origin", "https://evil.example")
			return h
		}(), changeBody(testPassword, newPassword), http.StatusForbidden, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post("/rpc/change_password", tt.header, tt.body)
			wantStatus(t, r, tt.status)
			if tt.want != "" {
				wantBody(t, r, tt.want)
			}
		})
	}
	// Nothing changed: the old password logs in, the other session refreshes.
	wantStatus(t, e.refreshWith(refreshValue(t, other)), http.StatusNoContent)
	e.login()
}

// TestChangePasswordByCookie: a browser's access cookie authenticates,
// from the site itself.
func TestChangePasswordByCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := jsonHeader()
	h.Set("Cookie", "access_token="+accessValue(t, e.login()))
	h.Set("Sec-Fetch-Site", "same-origin")
	wantStatus(t, e.post("/rpc/change_password", h, changeBody(testPassword, newPassword)), http.StatusNoContent)
}

type sessionRow struct {
	ID          string     `json:"id"`
	CreatedAt   time.Time  `json:"created_at"`
	RefreshedAt *time.Time `json:"refreshed_at"`
	NotAfter    time.Time  `json:"not_after"`
	IP          *string    `json:"ip"`
	UserAgent   *string    `json:"user_agent"`
	Current     bool       `json:"current"`
}

func (e *env) sessions(tok string) []sessionRow {
	e.t.Helper()
	r := e.post("/rpc/sessions", selfHeader(tok), "")
	if r.status != http.StatusOK {
		e.t.Fatalf("sessions: got %d %s, want 200", r.status, r.body)
	}
	var rows []sessionRow
	if err := json.Unmarshal([]byte(r.body), &rows); err != nil {
		e.t.Fatalf("sessions body %s: %v", r.body, err)
	}
	return rows
}

// TestSessions: the caller's live sessions, with the login's client
// address (from the trusted gateway's X-Forwarded-For) and User-Agent cut
// to 200 bytes, which one is the caller's, and when each was refreshed;
// never another user's or a revoked one.
func TestSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("bob", testPassword, e.role)
	wantStatus(t, loginFrom(e, "203.0.113.9", "bob", testPassword), http.StatusNoContent)

	h := jsonHeader()
	h.Set("X-Forwarded-For", "203.0.113.7")
	h.Set("User-Agent", "Phone/1.0")
	phone := e.post("/rpc/login", h, loginBody(testUser, testPassword))
	wantStatus(t, phone, http.StatusNoContent)
	h.Set("X-Forwarded-For", "2001:db8::1")
	long := "Desk/" + strings.Repeat("é", 200)
	h.Set("User-Agent", long)
	desk := e.post("/rpc/login", h, loginBody(testUser, testPassword))
	wantStatus(t, desk, http.StatusNoContent)
	gone := e.login()
	wantStatus(t, e.post("/rpc/logout", bearer(accessValue(t, gone)), ""), http.StatusNoContent)
	wantStatus(t, e.refreshWith(refreshValue(t, phone)), http.StatusNoContent)

	rows := e.sessions(accessValue(t, desk))
	if len(rows) != 2 {
		t.Fatalf("got %d sessions %+v, want 2 (phone, desk)", len(rows), rows)
	}
	p, d := rows[0], rows[1]
	if p.ID != sessionOf(t, accessValue(t, phone)) || d.ID != sessionOf(t, accessValue(t, desk)) {
		t.Errorf("sessions %s, %s: want phone's then desk's", p.ID, d.ID)
	}
	if p.Current || !d.Current {
		t.Errorf("current: phone %v, desk %v; want false, true", p.Current, d.Current)
	}
	if p.IP == nil || *p.IP != "203.0.113.7" || d.IP == nil || *d.IP != "2001:db8::1" {
		t.Errorf("ip %v, %v; want 203.0.113.7, 2001:db8::1", p.IP, d.IP)
	}
	wantUA := "Desk/" + strings.Repeat("é", 97) // 5 + 97*2 = 199 bytes: no character cut in two
	if p.UserAgent == nil || *p.UserAgent != "Phone/1.0" || d.UserAgent == nil || *d.UserAgent != wantUA {
		t.Errorf("user_agent %v, %v; want Phone/1.0 and %q", p.UserAgent, d.UserAgent, wantUA)
	}
	if p.RefreshedAt == nil || d.RefreshedAt != nil {
		t.Errorf("refreshed_at %v, %v; want phone's set, desk's null", p.RefreshedAt, d.RefreshedAt)
	}
	if !d.NotAfter.After(d.CreatedAt) {
		t.Errorf("not_after %v not after created_at %v", d.NotAfter, d.CreatedAt)
	}
	// Without an access token: 401.
	r := e.post("/rpc/sessions", jsonHeader(), "")
	wantStatus(t, r, http.StatusUnauthorized)
}

// TestRevokeSession: the caller ends one of their own sessions (its
// refresh token at once, its access token at /auth/verify within a
// second); another user's session, or an unknown one, is 404 and stays.
func TestRevokeSession(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	e.addUser("bob", testPassword, e.role)
	bob := loginFrom(e, "203.0.113.9", "bob", testPassword)
	wantStatus(t, bob, http.StatusNoContent)
	mine, other := accessValue(t, e.login()), e.login()
	otherAccess := accessValue(t, other)
	wantStatus(t, e.verify(http.MethodGet, bearer(otherAccess)), http.StatusOK)

	notFound := `{"code":"PT404","details":null,"hint":null,"message":"Session not found"}`
	for _, id := range []string{sessionOf(t, accessValue(t, bob)), "9b2f6c1e-8d7a-4f4e-9a51-1c0f3b2d4e5f"} {
		r := e.post("/rpc/revoke_session", selfHeader(mine), `{"session_id": "`+id+`"}`)
		wantStatus(t, r, http.StatusNotFound)
		wantBody(t, r, notFound)
	}
	wantStatus(t, e.refreshWith(refreshValue(t, bob)), http.StatusNoContent)
	r := e.post("/rpc/revoke_session", selfHeader(mine), `{"session_id": "nope"}`)
	wantStatus(t, r, http.StatusBadRequest)
	wantBody(t, r, `{"code":"22P02","details":null,"hint":null,"message":"invalid input syntax for type uuid"}`)
	wantStatus(t, e.post("/rpc/revoke_session", jsonHeader(), `{"session_id": "`+sessionOf(t, otherAccess)+`"}`), http.StatusUnauthorized)

	wantStatus(t, e.post("/rpc/revoke_session", selfHeader(mine), `{"session_id": "`+sessionOf(t, otherAccess)+`"}`), http.StatusNoContent)
	wantStatus(t, e.refreshWith(refreshValue(t, other)), http.StatusUnauthorized)
	clk.advance(time.Second)
	rv := e.verify(http.MethodGet, bearer(otherAccess))
	wantStatus(t, rv, http.StatusUnauthorized)
	wantBody(t, rv, sessionEnded)
	wantStatus(t, e.verify(http.MethodGet, bearer(mine)), http.StatusOK)
	if rows := e.sessions(mine); len(rows) != 1 || !rows[0].Current {
		t.Errorf("sessions after revoke: %+v, want only the caller's", rows)
	}
}

// TestLogoutScopes: "others" ends every session of the user but the
// caller's, whose cookies stay; "global" ends all of them and clears the
// cookies; "local" (and no scope) only the caller's. A bad scope is 400
// and ends nothing.
func TestLogoutScopes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		scope             string
		status            int
		mineLives, others bool // whether the caller's and the other sessions live on
		clears            bool
	}{
		{`{"scope": "local"}`, http.StatusNoContent, false, true, true},
		{``, http.StatusNoContent, false, true, true},
		{`{"scope": "others"}`, http.StatusNoContent, true, false, false},
		{`{"scope": "global"}`, http.StatusNoContent, false, false, true},
		{`{"scope": "everywhere"}`, http.StatusBadRequest, true, true, false},
	} {
		t.Run(tt.scope, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			e := newEnv(t, withClock(clk))
			e.addUser("bob", testPassword, e.role)
			bob := loginFrom(e, "203.0.113.9", "bob", testPassword)
			mine, other := e.login(), e.login()
			otherAccess := accessValue(t, other)
			wantStatus(t, e.verify(http.MethodGet, bearer(otherAccess)), http.StatusOK)

			h := jsonHeader()
			h.Set("Cookie", "refresh_token="+refreshValue(t, mine))
			r := e.post("/rpc/logout", h, tt.scope)
			wantStatus(t, r, tt.status)
			if cleared := len(r.setCookies()) > 0; cleared != tt.clears {
				t.Errorf("Set-Cookie %q; want cookies cleared: %v", r.setCookies(), tt.clears)
			}
			if tt.status == http.StatusBadRequest {
				wantBody(t, r, `{"code":"22023","details":null,"hint":"scope is local (this session, the default), others or global","message":"invalid logout scope"}`)
			}
			wantRefresh := func(what string, refresh string, lives bool) {
				t.Helper()
				want := http.StatusUnauthorized
				if lives {
					want = http.StatusNoContent
				}
				if got := e.refreshWith(refresh).status; got != want {
					t.Errorf("%s session's refresh: got %d, want %d", what, got, want)
				}
			}
			clk.advance(time.Second)
			if got := e.verify(http.MethodGet, bearer(otherAccess)).status; (got == http.StatusOK) != tt.others {
				t.Errorf("other session's access token at /auth/verify: %d, want it live: %v", got, tt.others)
			}
			wantRefresh("the caller's", refreshValue(t, mine), tt.mineLives)
			wantRefresh("the other", refreshValue(t, other), tt.others)
			wantRefresh("another user's", refreshValue(t, bob), true)
		})
	}
}

// TestLogoutScopeNeedsALiveSession: a credential of an ended session
// cannot end the user's other sessions.
func TestLogoutScopeNeedsALiveSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old, other := e.login(), e.login()
	wantStatus(t, e.post("/rpc/logout", bearer(accessValue(t, old)), ""), http.StatusNoContent)
	wantStatus(t, e.post("/rpc/logout", bearer(accessValue(t, old)), `{"scope": "global"}`), http.StatusNoContent)
	wantStatus(t, e.refreshWith(refreshValue(t, other)), http.StatusNoContent)
}
