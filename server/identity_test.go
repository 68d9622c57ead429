package server_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"authd/identity"
	"authd/token"
)

// TestIdentifyPasswordSharesLoginRules: the password check other front
// doors use (NATS) is /rpc/login's: same answer, same throttle, no session.
func TestIdentifyPasswordSharesLoginRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLoginLimits(2, 0))
	ctx := context.Background()

	id, err := e.core.IdentifyPassword(ctx, testUser, testPassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if id.User != testUser || id.Role != e.role || time.Until(id.Expires) < 59*time.Minute {
		t.Errorf("got %+v", id)
	}
	c := verifyJWT(t, id.Token)
	if c["role"] != e.role || c["sid"] != nil {
		t.Errorf("got claims %v, want the role and no session", c)
	}
	if n := e.count(`select count(*) from auth.session`); n != 0 {
		t.Errorf("a password check opened %d sessions", n)
	}
	var apiErr *identity.Error
	for range 2 {
		_, err := e.core.IdentifyPassword(ctx, testUser, "wrong", "192.0.2.1")
		if !errors.As(err, &apiErr) || apiErr.Kind != identity.Unauthorized || apiErr.Message != "Invalid user or password" {
			t.Fatalf("wrong password: got %v", err)
		}
	}
	// The same buckets as /rpc/login: two failures here throttle the HTTP login.
	wantThrottled(t, loginFrom(e, "192.0.2.9", testUser, testPassword))
	if _, err := e.core.IdentifyPassword(ctx, testUser, testPassword, "192.0.2.1"); !errors.As(err, &apiErr) || apiErr.Kind != identity.Throttled {
		t.Errorf("throttled: got %v, want Throttled (429)", err)
	}
}

func TestIdentifyToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	access := accessValue(t, e.login())
	id, err := e.core.IdentifyToken(context.Background(), access)
	if err != nil || id.User != testUser || id.Role != e.role || id.Token != access {
		t.Fatalf("got %+v, %v", id, err)
	}
	var apiErr *identity.Error
	if _, err := e.core.IdentifyToken(context.Background(), access+"x"); !errors.As(err, &apiErr) || apiErr.Kind != identity.InvalidToken {
		t.Errorf("tampered token: got %v, want InvalidToken (401)", err)
	}
}

// TestIdentifyTokenExpiresInTheCache: a token the verified-token cache
// holds stops identifying anyone at the moment a full verification would
// refuse it (exp plus the 30 s leeway), not a moment later. Timed by a
// synctest bubble's clock, which the server and its issuer read.
func TestIdentifyTokenExpiresInTheCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAccessTTL(time.Minute))
	synctest.Test(t, func(t *testing.T) {
		raw, exp, err := e.tokens.Issue(testUser, e.role, "")
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // verified, then from the cache
			if id, err := e.core.IdentifyToken(context.Background(), raw); err != nil || !id.Expires.Equal(exp) {
				t.Fatalf("got %+v, %v; want the identity until %s", id, err, exp)
			}
		}
		time.Sleep(time.Until(exp.Add(token.Leeway)) - time.Nanosecond)
		if _, err := e.core.IdentifyToken(context.Background(), raw); err != nil {
			t.Errorf("within the leeway: %v", err)
		}
		time.Sleep(time.Nanosecond)
		var apiErr *identity.Error
		if _, err := e.core.IdentifyToken(context.Background(), raw); !errors.As(err, &apiErr) || apiErr.Kind != identity.InvalidToken {
			t.Errorf("at exp + leeway: got %v, want InvalidToken (401)", err)
		}
	})
}
