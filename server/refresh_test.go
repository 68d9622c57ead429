package server_test

import (
	"encoding/json"
	"net/http"
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

func TestRefreshReuseWithinGraceIsAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(time.Minute))
	first := refreshValue(t, e.login())
	second := refreshValue(t, e.refreshWith(first))

	// Another tab refreshes with the same token a moment later.
	r := e.refreshWith(first)
	wantStatus(t, r, http.StatusNoContent)
	sibling := refreshValue(t, r)
	if sibling == first || sibling == second {
		t.Errorf("grace refresh returned an old token")
	}
	// Nothing revoked: both live tokens still work.
	wantStatus(t, e.refreshWith(second), http.StatusNoContent)
	wantStatus(t, e.refreshWith(sibling), http.StatusNoContent)
	if n := e.count(`select count(*) from auth.session where revoked_at is not null`); n != 0 {
		t.Errorf("got %d revoked sessions, want 0", n)
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
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := e.srv.URL
			if i%2 == 1 {
				url = other.URL
			}
			req, _ := http.NewRequest(http.MethodPost, url+"/rpc/refresh_token", nil)
			req.Header.Set("Cookie", "refresh_token="+tok)
			<-start
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			statuses[i] = res.StatusCode
		}()
	}
	close(start)
	wg.Wait()
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
}
