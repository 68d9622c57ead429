package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// sessionEnded is /auth/verify's answer for a token whose session, user or
// API key has ended.
const sessionEnded = `{"code":"PGRST303","details":null,"hint":null,"message":"JWT session has ended"}`

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// TestVerifyEndsWithTheSession: an access token stops passing /auth/verify
// once its session is logged out, at the latest a recheck (1 s) later
// without a change notification, while the user's other sessions go on.
func TestVerifyEndsWithTheSession(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	ended, other := accessValue(t, e.login()), accessValue(t, e.login())
	wantStatus(t, e.verify(http.MethodGet, bearer(ended)), http.StatusOK)

	wantStatus(t, e.post("/rpc/logout", bearer(ended), ""), http.StatusNoContent)
	clk.advance(time.Second)
	r := e.verify(http.MethodGet, bearer(ended))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, sessionEnded)
	wantStatus(t, e.verify(http.MethodGet, bearer(other)), http.StatusOK)
}

// TestVerifyEndsWithTheUser: disabling or deleting a user, changing their
// role or dropping it ends every token of theirs; a dropped role is 403,
// as at login.
func TestVerifyEndsWithTheUser(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		change func(e *env)
		status int
	}{
		{"disabled", func(e *env) {
			if err := e.db.SetDisabled(context.Background(), testUser, true); err != nil {
				e.t.Fatal(err)
			}
		}, http.StatusUnauthorized},
		{"deleted", func(e *env) { e.exec(`delete from auth.user where username = $1`, testUser) }, http.StatusUnauthorized},
		{"role changed", func(e *env) {
			other := storetest.NewRole(e.t)
			e.exec(`update auth.user set role = $1 where username = $2`, other, testUser)
		}, http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			e := newEnv(t, withClock(clk))
			access := accessValue(t, e.login())
			wantStatus(t, e.verify(http.MethodGet, bearer(access)), http.StatusOK)
			tt.change(e)
			clk.advance(time.Second)
			r := e.verify(http.MethodGet, bearer(access))
			wantStatus(t, r, tt.status)
			if tt.status == http.StatusUnauthorized {
				wantBody(t, r, sessionEnded)
			}
		})
	}
}

// TestVerifyEndsWithTheAPIKey: the JWT that /auth/verify minted for an API
// key stops passing, presented on its own, once the key is rotated or
// disabled — not after the JWT's 5 minutes.
func TestVerifyEndsWithTheAPIKey(t *testing.T) {
	t.Parallel()
	for _, change := range []string{"rotate", "disable"} {
		t.Run(change, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			e := newEnv(t, withClock(clk))
			id, key := e.newKey(600, nil)
			r := e.verify(http.MethodGet, apiKeyHeader(key))
			wantStatus(t, r, http.StatusOK)
			minted := strings.TrimPrefix(r.header.Get("Authorization"), "Bearer ")
			wantStatus(t, e.verify(http.MethodGet, bearer(minted)), http.StatusOK)

			var err error
			if change == "rotate" {
				err = e.db.RotateAPIKey(context.Background(), id, storetest.TokenHash("the new secret"))
			} else {
				err = e.db.DisableAPIKey(context.Background(), id)
			}
			if err != nil {
				t.Fatal(err)
			}
			clk.advance(time.Second)
			r = e.verify(http.MethodGet, bearer(minted))
			wantStatus(t, r, http.StatusUnauthorized)
			wantBody(t, r, sessionEnded)
		})
	}
}

// TestVerifyAcceptsANewSessionAtOnce: a login after the user's state was
// cached gets a token that passes at once, not a second later.
func TestVerifyAcceptsANewSessionAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withClock(newClock())) // time stands still: no re-read by age
	first := accessValue(t, e.login())
	wantStatus(t, e.verify(http.MethodGet, bearer(first)), http.StatusOK)
	second := accessValue(t, e.login())
	wantStatus(t, e.verify(http.MethodGet, bearer(second)), http.StatusOK)
}
