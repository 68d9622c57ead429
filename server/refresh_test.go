package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const invalidRefreshBody = `{"code":"PT401","details":null,"hint":null,"message":"Invalid or expired refresh token"}`

func TestRefreshRotates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	login := e.login()
	first := refreshValue(t, login)

	r := e.refreshWith(first)
	wantStatus(t, r, http.StatusNoContent)
	second := refreshValue(t, r)
	if second == first {
		t.Fatalf("refresh returned the same refresh token")
	}
	if got := maskCookies(r.setCookies()); len(got) != 3 || got[0] != "access_token=JWT; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax" {
		t.Errorf("got Set-Cookie %q", got)
	}
	old, fresh := verifyJWT(t, accessValue(t, login)), verifyJWT(t, accessValue(t, r))
	if fresh["sid"] != old["sid"] || fresh["role"] != e.role || fresh["jti"] == old["jti"] {
		t.Errorf("refreshed claims %v, want same sid, role %s, new jti (login: %v)", fresh, e.role, old)
	}
	// The spent token has a child in the same session.
	if n := e.count(`select count(*) from auth.refresh_token c join auth.refresh_token p on c.parent_id = p.id
		where p.revoked_reason = 'rotated' and c.session_id = p.session_id and c.revoked_at is null`); n != 1 {
		t.Errorf("got %d parent/child rows, want 1", n)
	}
	wantStatus(t, e.refreshWith(second), http.StatusNoContent)
}

func TestRefreshFromBodyWithRepresentation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := refreshValue(t, e.login())
	h := jsonHeader()
	h.Set("Prefer", "return=representation")
	r := e.post("/rpc/refresh_token", h, `{"refresh_token": "`+first+`"}`)
	wantStatus(t, r, http.StatusOK)
	var body struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if body.RefreshToken == "" || body.RefreshToken == first || body.TokenType != "bearer" || body.ExpiresIn != 3600 {
		t.Errorf("got %+v", body)
	}
	if c := verifyJWT(t, body.AccessToken); c["sub"] != testUser {
		t.Errorf("got sub %v", c["sub"])
	}
}

func TestRefreshReuseAfterGraceRevokesSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(0))
	first := refreshValue(t, e.login())
	second := refreshValue(t, e.refreshWith(first))

	// A thief (or the victim) replays the spent token: 401, and the whole
	// session dies, the newest token included.
	r := e.refreshWith(first)
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, invalidRefreshBody)
	if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("got WWW-Authenticate %q", got)
	}
	r = e.refreshWith(second)
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, invalidRefreshBody)
	if n := e.count(`select count(*) from auth.session where revoked_at is not null`); n != 1 {
		t.Errorf("got %d revoked sessions, want 1", n)
	}
	if !strings.Contains(e.logs.String(), "reused") {
		t.Errorf("reuse was not logged: %s", e.logs.String())
	}
}

// TestRefreshGraceRaceKeepsOneChain: a spent token presented within the
// grace window still earns tokens (another tab, or a thief racing the
// user), but the session never forks: the first of the two children to
// be rotated supersedes the other, and presenting the superseded one is
// a replay that revokes the session, the winner's newest token included.
func TestRefreshGraceRaceKeepsOneChain(t *testing.T) {
	t.Parallel()
	for _, thiefFirst := range []bool{false, true} {
		name := map[bool]string{false: "user rotates first", true: "thief rotates first"}[thiefFirst]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withGrace(time.Minute))
			a := refreshValue(t, e.login())
			b := refreshValue(t, e.refreshWith(a)) // the user
			r := e.refreshWith(a)                  // the thief, within the grace window
			wantStatus(t, r, http.StatusNoContent)
			c := refreshValue(t, r)
			if c == a || c == b {
				t.Fatalf("grace refresh returned an old token")
			}
			winner, loser := b, c
			if thiefFirst {
				winner, loser = c, b
			}
			r = e.refreshWith(winner)
			wantStatus(t, r, http.StatusNoContent)
			next := refreshValue(t, r)
			// The loser's branch is dead before anyone presents it.
			if n := e.count(`select count(*) from auth.refresh_token where revoked_at is null`); n != 1 {
				t.Errorf("got %d live refresh tokens after the winner's rotation, want 1", n)
			}
			r = e.refreshWith(loser)
			wantStatus(t, r, http.StatusUnauthorized)
			wantBody(t, r, invalidRefreshBody)
			if n := e.count(`select count(*) from auth.session where revoked_at is not null`); n != 1 {
				t.Errorf("got %d revoked sessions, want 1", n)
			}
			r = e.refreshWith(next)
			wantStatus(t, r, http.StatusUnauthorized)
			wantBody(t, r, invalidRefreshBody)
			if got := e.metric("authd_refresh_reuse_detected_total"); got != 1 {
				t.Errorf("got %v reuses detected, want 1", got)
			}
		})
	}
}

// TestRefreshGraceAfterRaceDecided: once a child of a spent token has been
// rotated, presenting the spent token again is a replay, even within the
// grace window.
func TestRefreshGraceAfterRaceDecided(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(time.Minute))
	a := refreshValue(t, e.login())
	b := refreshValue(t, e.refreshWith(a))
	wantStatus(t, e.refreshWith(a), http.StatusNoContent) // a second tab
	d := refreshValue(t, e.refreshWith(b))
	r := e.refreshWith(a)
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, invalidRefreshBody)
	wantStatus(t, e.refreshWith(d), http.StatusUnauthorized)
}

// TestRefreshGraceConcurrent: many tabs refresh one token at once, across
// two authd servers, inside the grace window: every one gets tokens (none
// a 500 from a lock cycle), and after the next refresh the session has
// exactly one live token.
func TestRefreshGraceConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(time.Minute))
	other, _, _, _, _ := e.newServer(withGrace(time.Minute))
	tok := refreshValue(t, e.login())

	const n = 10
	got := refreshAtOnce(t, []string{e.srv.URL, other.URL}, slices.Repeat([]string{tok}, n))
	for i, r := range got {
		if r.status != http.StatusNoContent {
			t.Fatalf("refresh %d: got status %d (%s), want 204", i, r.status, r.body)
		}
	}
	wantStatus(t, e.refreshWith(refreshValue(t, got[n-1])), http.StatusNoContent)
	if c := e.count(`select count(*) from auth.refresh_token where revoked_at is null`); c != 1 {
		t.Errorf("got %d live refresh tokens, want 1", c)
	}
}

// TestRefreshSiblingsPresentedAtOnce: the children of one raced token are
// all presented at once: one wins, no lock cycle turns into a 500, and
// the losers' replay revokes the session.
func TestRefreshSiblingsPresentedAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(time.Minute))
	a := refreshValue(t, e.login())
	const n = 6
	siblings := make([]string, n)
	for i := range siblings {
		siblings[i] = refreshValue(t, e.refreshWith(a))
	}
	var statuses []int
	for _, r := range refreshAtOnce(t, []string{e.srv.URL}, siblings) {
		statuses = append(statuses, r.status)
	}
	won := 0
	for _, s := range statuses {
		switch s {
		case http.StatusNoContent:
			won++
		case http.StatusUnauthorized:
		default:
			t.Errorf("got status %d, want 204 or 401 (statuses %v)", s, statuses)
		}
	}
	if won != 1 {
		t.Errorf("got %d winners (statuses %v), want 1", won, statuses)
	}
	if c := e.count(`select count(*) from auth.session where revoked_at is not null`); c != 1 {
		t.Errorf("got %d revoked sessions, want 1", c)
	}
}

func TestRefreshRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name  string
		setup func() string // returns the token to present
	}{
		{"no token", func() string { return "" }},
		{"unknown", func() string { return "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }},
		{"superstack uuid", func() string { return "028caa10-d087-41d8-8d8c-62d60bb419b5" }},
		{"oversized", func() string { return strings.Repeat("x", 3000) }},
		{"expired", func() string {
			tok := refreshValue(t, e.login())
			e.exec(`update auth.refresh_token set expires_at = now() - interval '1 second' where revoked_at is null`)
			return tok
		}},
		{"session revoked", func() string {
			tok := refreshValue(t, e.login())
			e.exec(`update auth.session set revoked_at = now()`)
			return tok
		}},
		{"user deleted", func() string {
			e.addUser("bob-the-user", "pw-of-bob", e.role)
			h := jsonHeader()
			tok := refreshValue(t, e.post("/rpc/login", h, loginBody("bob-the-user", "pw-of-bob")))
			e.exec(`delete from auth.user where username = 'bob-the-user'`)
			return tok
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.setup()
			r := e.refreshWith(tok)
			wantStatus(t, r, http.StatusUnauthorized)
			wantBody(t, r, invalidRefreshBody)
			if len(r.cookies) != 0 {
				t.Errorf("got cookies %q", r.setCookies())
			}
		})
	}
}

// TestRefreshRaceOneWinner: 20 simultaneous refreshes of one token, spread
// over two authd servers on one database, with no grace: exactly one gets
// new tokens.
func TestRefreshRaceOneWinner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(0))
	other, _, _, _, _ := e.newServer(withGrace(0))
	tok := refreshValue(t, e.login())

	const n = 20
	var statuses []int
	for _, r := range refreshAtOnce(t, []string{e.srv.URL, other.URL}, slices.Repeat([]string{tok}, n)) {
		statuses = append(statuses, r.status)
	}
	won, lost := 0, 0
	for _, s := range statuses {
		switch s {
		case http.StatusNoContent:
			won++
		case http.StatusUnauthorized:
			lost++
		}
	}
	if won != 1 || lost != n-1 {
		t.Errorf("got %d winners and %d 401s of %d (statuses %v), want 1 and %d", won, lost, n, statuses, n-1)
	}
	if c := e.count(`select count(*) from auth.refresh_token where parent_id is not null`); c != 1 {
		t.Errorf("got %d child tokens, want exactly 1", c)
	}
	// Without a grace window each loser is a replay: the session is
	// revoked, and the winner's new refresh token with it.
	if c := e.count(`select count(*) from auth.session where revoked_at is not null`); c != 1 {
		t.Errorf("got %d revoked sessions, want 1", c)
	}
}

// TestSessionLifetime: a session ends AUTHD_SESSION_LIFETIME after login
// however often it is refreshed. No refresh token, and no refresh cookie,
// outlives it; past it the refresh token is refused as an expired one.
func TestSessionLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withSessionLifetime(2*time.Hour)) // refresh TTL 30 days
	login := e.login()
	for _, p := range []string{"/rpc/refresh_token", "/rpc/logout"} {
		if c := login.cookie("refresh_token", p); c == nil || c.MaxAge != 7200 {
			t.Errorf("login: got refresh cookie %v at %s, want Max-Age=7200", c, p)
		}
	}
	capped := `select count(*) from auth.refresh_token t join auth.session s on s.id = t.session_id
		where t.revoked_at is null and t.expires_at = s.expires_at`
	if n := e.count(capped); n != 1 {
		t.Errorf("login: got %d live tokens expiring with their session, want 1", n)
	}

	// An hour of the session is left: the refreshed token and its cookie
	// end with it, not 30 days from now.
	e.exec(`update auth.session set expires_at = now() + interval '1 hour'`)
	r := e.refreshWith(refreshValue(t, login))
	wantStatus(t, r, http.StatusNoContent)
	for _, p := range []string{"/rpc/refresh_token", "/rpc/logout"} {
		if c := r.cookie("refresh_token", p); c == nil || c.MaxAge > 3600 || c.MaxAge < 3000 {
			t.Errorf("refresh: got refresh cookie %v at %s, want Max-Age at most 3600", c, p)
		}
	}
	if n := e.count(capped); n != 1 {
		t.Errorf("refresh: got %d live tokens expiring with their session, want 1", n)
	}

	// The session has ended (its token made to outlive it, as no token
	// authd issues does): refused, and nothing is spent.
	e.exec(`update auth.session set expires_at = now() - interval '1 second'`)
	e.exec(`update auth.refresh_token set expires_at = now() + interval '1 day' where revoked_at is null`)
	r = e.refreshWith(refreshValue(t, r))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, invalidRefreshBody)
	if len(r.cookies) != 0 {
		t.Errorf("got cookies %q", r.setCookies())
	}
	if n := e.count(`select count(*) from auth.refresh_token where revoked_at is null`); n != 1 {
		t.Errorf("got %d live tokens after a refused refresh, want 1", n)
	}
}

// refreshAtOnce presents tokens[i] to the server at urls[i%len(urls)],
// all requests released together, and returns what each got (status 0
// where the request failed, which fails t).
func refreshAtOnce(t *testing.T, urls, tokens []string) []response {
	t.Helper()
	got := make([]response, len(tokens))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, tok := range tokens {
		req, err := http.NewRequest(http.MethodPost, urls[i%len(urls)]+"/rpc/refresh_token", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Cookie", "refresh_token="+tok)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Error(err)
			}
			got[i] = response{status: res.StatusCode, header: res.Header, body: string(b), cookies: res.Cookies()}
		}()
	}
	close(start)
	wg.Wait()
	return got
}
