package server_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"authd/identity"
	"authd/server"
)

// withSignup turns sign-up on with role, at most perIP sign-ups an hour
// from one client (0: no limit).
func withSignup(role string, perIP int) option {
	return func(_ *server.Config, c *identity.Config, _ *envOpts) {
		c.SignupRole, c.SignupsPerIP = role, perIP
	}
}

// newSignupEnv is an API with sign-up on, creating users of the env's own
// role.
func newSignupEnv(t *testing.T, perIP int, opts ...option) *env {
	t.Helper()
	e := newEnv(t)
	e.srv, e.core, e.cfg, e.tokens, e.logs = e.newServer(append([]option{withSignup(e.role, perIP)}, opts...)...)
	return e
}

func signupFrom(e *env, ip, user, pass string) response {
	e.t.Helper()
	h := jsonHeader()
	h.Set("X-Forwarded-For", ip)
	return e.post("/rpc/signup", h, loginBody(user, pass))
}

func TestSignupOffIsAnUnknownFunction(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		want   string
	}{
		{"user_ and pass", jsonHeader(), loginBody("bob", "a good long password"),
			`{"code":"PGRST202","details":"Searched for the function auth.signup with parameters pass, user_ or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.","hint":null,"message":"Could not find the function auth.signup(pass, user_) in the schema cache"}`},
		{"no arguments", jsonHeader(), `{}`,
			`{"code":"PGRST202","details":"Searched for the function auth.signup with parameters  or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.","hint":null,"message":"Could not find the function auth.signup() in the schema cache"}`},
		// Not the origin policy's 403: there is no endpoint to protect.
		{"cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}, `user_=bob&pass=x`,
			`{"code":"PGRST202","details":"Searched for the function auth.signup with parameters pass, user_ or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.","hint":null,"message":"Could not find the function auth.signup(pass, user_) in the schema cache"}`},
		{"broken JSON", jsonHeader(), `{"user_":`, `{"code":"PGRST102","details":null,"hint":null,"message":"Empty or invalid json"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "cross-site" {
				tc.header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			r := e.post("/rpc/signup", tc.header, tc.body)
			want := http.StatusNotFound
			if strings.Contains(tc.want, "PGRST102") {
				want = http.StatusBadRequest
			}
			wantStatus(t, r, want)
			wantBody(t, r, tc.want)
			if len(r.setCookies()) != 0 {
				t.Errorf("got cookies %q, want none", r.setCookies())
			}
		})
	}
	if n := e.count(`select count(*) from auth.user where username = 'bob'`); n != 0 {
		t.Errorf("got %d users bob, want 0", n)
	}
}

func TestSignupCreatesUserAndLogsIn(t *testing.T) {
	e := newSignupEnv(t, 0)
	hashes := e.metric("authd_bcrypt_wait_seconds_count")
	h := jsonHeader()
	h.Set("User-Agent", "signup-test/1.0")
	r := e.post("/rpc/signup", h, loginBody("bob", "a good long password"))
	wantStatus(t, r, http.StatusNoContent)
	// The session remembers where it began, as a login's does
	// (/rpc/sessions shows it).
	if n := e.count(`select count(*) from auth.session where username = 'bob' and client_addr is not null and user_agent = 'signup-test/1.0'`); n != 1 {
		t.Errorf("got %d sessions of bob with the client address and User-Agent, want 1", n)
	}
	// The hash was made in the bcrypt gate, where a flood is shed.
	if got := e.metric("authd_bcrypt_wait_seconds_count"); got != hashes+1 {
		t.Errorf("bcrypt slots taken by a sign-up: got %v, want 1", got-hashes)
	}
	claims := verifyJWT(t, accessValue(t, r))
	if claims["role"] != e.role || claims["sub"] != "bob" {
		t.Errorf("got claims role %v sub %v, want %q and bob", claims["role"], claims["sub"], e.role)
	}
	if n := e.count(`select count(*) from auth.user where username = 'bob' and role = $1 and disabled_at is null`, e.role); n != 1 {
		t.Errorf("got %d users bob of role %s, want 1", n, e.role)
	}
	if n := e.count(`select count(*) from auth.session where username = 'bob' and revoked_at is null`); n != 1 {
		t.Errorf("got %d live sessions of bob, want 1", n)
	}
	// The session works as a login's: its refresh token rotates.
	wantStatus(t, e.refreshWith(refreshValue(t, r)), http.StatusNoContent)
	// And the password is bob's from now on.
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody("bob", "a good long password")), http.StatusNoContent)
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody("bob", "another password")), http.StatusUnauthorized)

	// Prefer: return=representation answers as login does.
	h = jsonHeader()
	h.Set("Prefer", "return=representation")
	r = e.post("/rpc/signup", h, loginBody("carol", "a good long password"))
	wantStatus(t, r, http.StatusOK)
	var got struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if got.TokenType != "bearer" || got.RefreshToken == "" || got.ExpiresIn != 3600 {
		t.Errorf("got body %s, want a bearer token pair expiring in 3600 s", r.body)
	}
	if c := verifyJWT(t, got.AccessToken); c["sub"] != "carol" {
		t.Errorf("got sub %v, want carol", c["sub"])
	}
}

func TestSignupRefusals(t *testing.T) {
	e := newSignupEnv(t, 0)
	pw := "a good long password"
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"short password", loginBody("bob", "short"), 400,
			`{"code":"22023","details":null,"hint":"Choose a longer password that is not one of the most common ones nor the username.","message":"password is too short: at least 8 characters"}`},
		{"common password", loginBody("bob", "Password"), 400,
			`{"code":"22023","details":null,"hint":"Choose a longer password that is not one of the most common ones nor the username.","message":"password is one of the most common passwords, or the username: choose another"}`},
		{"password is the username", loginBody("bobbybobby", "BobbyBobby"), 400,
			`{"code":"22023","details":null,"hint":"Choose a longer password that is not one of the most common ones nor the username.","message":"password is one of the most common passwords, or the username: choose another"}`},
		{"73-byte password", loginBody("bob", strings.Repeat("p", 73)), 400,
			`{"code":"22023","details":null,"hint":"Choose a longer password that is not one of the most common ones nor the username.","message":"password is longer than bcrypt's 72-byte limit"}`},
		{"short username", loginBody("bo", pw), 400,
			`{"code":"22023","details":null,"hint":null,"message":"Invalid username: username must be at least 3 characters"}`},
		{"short username in characters", loginBody("日本", pw), 400,
			`{"code":"22023","details":null,"hint":null,"message":"Invalid username: username must be at least 3 characters"}`},
		{"long username", loginBody(strings.Repeat("u", 257), pw), 400,
			`{"code":"22023","details":null,"hint":null,"message":"Invalid username: the username must be UTF-8 of at most 256 bytes, without NUL"}`},
		{"NUL in username", `{"user_": "bob\u0000", "pass": "` + pw + `"}`, 400,
			`{"code":"22023","details":null,"hint":null,"message":"Invalid username: the username must be UTF-8 of at most 256 bytes, without NUL"}`},
		{"control character in username", `{"user_": "bob\n", "pass": "` + pw + `"}`, 400,
			`{"code":"22023","details":null,"hint":null,"message":"Invalid username: the username may not contain control characters"}`},
		{"space around username", loginBody(" bob", pw), 400,
			`{"code":"22023","details":null,"hint":null,"message":"Invalid username: the username may not begin or end with white space"}`},
		{"taken name", loginBody(testUser, pw), 409,
			`{"code":"23505","details":null,"hint":"Choose another user name, or log in if it is yours.","message":"User name is taken"}`},
		{"missing password", `{"user_": "bob"}`, 404,
			`{"code":"PGRST202","details":"Searched for the function auth.signup with parameters user_ or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.","hint":"Perhaps you meant to call the function auth.signup(pass, user_)","message":"Could not find the function auth.signup(user_) in the schema cache"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post("/rpc/signup", jsonHeader(), tc.body)
			wantStatus(t, r, tc.status)
			wantBody(t, r, tc.want)
			if len(r.setCookies()) != 0 {
				t.Errorf("got cookies %q, want none", r.setCookies())
			}
		})
	}
	// Nothing was written: alice alone, with her own password.
	if n := e.count(`select count(*) from auth.user`); n != 1 {
		t.Errorf("got %d users, want 1 (alice)", n)
	}
	if n := e.count(`select count(*) from auth.session`); n != 0 {
		t.Errorf("got %d sessions, want 0", n)
	}
	e.login()
}

func TestSignupThrottledPerClient(t *testing.T) {
	clk := newClock()
	e := newSignupEnv(t, 2, withClock(clk))
	pw := "a good long password"
	// Refused input costs nothing; a taken name counts (it tells
	// something), as does a sign-up.
	wantStatus(t, signupFrom(e, "203.0.113.5", "bo", pw), http.StatusBadRequest)
	wantStatus(t, signupFrom(e, "203.0.113.5", testUser, pw), http.StatusConflict)
	wantStatus(t, signupFrom(e, "203.0.113.5", "bob", pw), http.StatusNoContent)
	r := signupFrom(e, "203.0.113.5", "carol", pw)
	wantStatus(t, r, http.StatusTooManyRequests)
	wantBody(t, r, `{"code":"PT429","details":null,"hint":null,"message":"Too many sign-ups from this address; try again later"}`)
	// Two an hour: the next one in half an hour.
	if got := r.header.Get("Retry-After"); got != strconv.Itoa(30*60) {
		t.Errorf("got Retry-After %q, want %d", got, 30*60)
	}
	if n := e.count(`select count(*) from auth.user where username = 'carol'`); n != 0 {
		t.Errorf("got %d users carol, want 0", n)
	}
	// Another client is not held back, and the first one's budget refills.
	wantStatus(t, signupFrom(e, "198.51.100.7", "dave", pw), http.StatusNoContent)
	clk.advance(30 * time.Minute)
	wantStatus(t, signupFrom(e, "203.0.113.5", "carol", pw), http.StatusNoContent)
	wantStatus(t, signupFrom(e, "203.0.113.5", "erin", pw), http.StatusTooManyRequests)
}

func TestSignupCrossSiteRefused(t *testing.T) {
	e := newSignupEnv(t, 0)
	h := jsonHeader()
	h.Set("Sec-Fetch-Site", "cross-site")
	h.Set("Origin", "https://evil.example")
	r := e.post("/rpc/signup", h, loginBody("bob", "a good long password"))
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, `{"code":"PT403","details":null,"hint":"Log in, refresh and log out from the application's own origin, or add that origin to AUTHD_ALLOWED_ORIGINS.","message":"Cross-site request refused"}`)
	if n := e.count(`select count(*) from auth.user where username = 'bob'`); n != 0 {
		t.Errorf("got %d users bob, want 0", n)
	}
}

func TestSignupRoleDroppedAfterStart(t *testing.T) {
	e := newSignupEnv(t, 1)
	e.exec(`drop role "` + e.role + `" `)
	r := signupFrom(e, "203.0.113.5", "bob", "a good long password")
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, `{"code":"PT403","details":null,"hint":"The user's database role was dropped; an administrator must recreate it or change the user's role.","message":"role \"`+e.role+`\" does not exist"}`)
	if n := e.count(`select count(*) from auth.user where username = 'bob'`); n != 0 {
		t.Errorf("got %d users bob, want 0", n)
	}
	// The client's budget was given back: the failure was not its doing.
	e.exec(`create role "` + e.role + `" nologin`)
	wantStatus(t, signupFrom(e, "203.0.113.5", "bob", "a good long password"), http.StatusNoContent)
}
