package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"authd/store"
	"authd/store/storetest"
)

// TestLogoutReason: a logout marks the live tokens of the sessions it ends
// with revoked_reason 'logout', leaves spent ('rotated') and expired ones
// as they were, and the marked tokens are refused as invalid, not as a
// replay.
func TestLogoutReason(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	tok := storetest.TokenHash
	start := func(h string) store.Grant { return storetest.StartSession(t, db, "alice", h) }
	// reason is the revoked_reason of the token with hash h, "" for none.
	reason := func(h string) string {
		t.Helper()
		var r *string
		if err := db.Pool().QueryRow(ctx, `select revoked_reason from auth.refresh_token where token_hash = $1`, tok(h)).Scan(&r); err != nil {
			t.Fatalf("revoked_reason of %s: %v", h, err)
		}
		if r == nil {
			return ""
		}
		return *r
	}

	start("a1")
	if _, err := db.Refresh(ctx, tok("a1"), tok("a2"), time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	b := start("b1")
	start("c1") // another session, not logged out
	if _, err := db.Pool().Exec(ctx, `update auth.refresh_token set expires_at = now() - interval '1 second' where token_hash = $1`, tok("c1")); err != nil {
		t.Fatal(err)
	}
	d := start("d1")
	if _, err := db.Refresh(ctx, tok("d1"), tok("d2"), time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `update auth.refresh_token set expires_at = now() - interval '1 second' where token_hash = $1`, tok("d2")); err != nil {
		t.Fatal(err)
	}

	// Session a by its refresh token, b by its id, d (expired) by both.
	for _, c := range []struct {
		sid  uuid.UUID
		hash []byte
	}{{uuid.Nil, tok("a2")}, {b.SessionID, nil}, {d.SessionID, tok("d2")}} {
		if _, err := db.RevokeSessions(ctx, c.sid, c.hash); err != nil {
			t.Fatal(err)
		}
	}
	for h, want := range map[string]string{
		"a1": "rotated", "a2": "logout",
		"b1": "logout",
		"c1": "",                  // expired, its session not logged out
		"d1": "rotated", "d2": "", // expired before the logout
	} {
		if got := reason(h); got != want {
			t.Errorf("revoked_reason of %s: got %q, want %q", h, got, want)
		}
	}

	// Logging out again changes nothing, not even the time.
	var before, after time.Time
	q := `select revoked_at from auth.refresh_token where token_hash = $1`
	if err := db.Pool().QueryRow(ctx, q, tok("a2")).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeSessions(ctx, uuid.Nil, tok("a2")); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool().QueryRow(ctx, q, tok("a2")).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if !after.Equal(before) {
		t.Errorf("revoked_at after a second logout: got %v, want %v", after, before)
	}

	// A logged-out token is invalid, never a replay, inside the grace
	// window or after it.
	for _, grace := range []time.Duration{time.Hour, 0} {
		for _, h := range []string{"a2", "b1", "a1"} {
			if _, err := db.Refresh(ctx, tok(h), tok(h+"-next"), time.Hour, grace); !errors.Is(err, store.ErrInvalidRefresh) {
				t.Errorf("refresh of %s after logout (grace %s): got %v, want ErrInvalidRefresh", h, grace, err)
			}
		}
	}
}

// TestSessionLifetime: StartSession caps the first refresh token at the
// session's end, Refresh caps every successor there, and refuses once the
// session has ended, spending nothing.
func TestSessionLifetime(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	tok := storetest.TokenHash

	alice, err := db.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	g, err := db.StartSession(ctx, alice, tok("a1"), time.Hour, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if g.RefreshTTL != 30*time.Minute {
		t.Errorf("first token: got TTL %s, want 30m (the session's lifetime)", g.RefreshTTL)
	}
	var end time.Time
	if err := db.Pool().QueryRow(ctx, `select expires_at from auth.session where id = $1`, g.SessionID).Scan(&end); err != nil {
		t.Fatal(err)
	}
	if !g.RefreshExpiresAt.Equal(end) {
		t.Errorf("first token expires %v, want the session's end %v", g.RefreshExpiresAt, end)
	}
	g2, err := db.Refresh(ctx, tok("a1"), tok("a2"), time.Hour, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !g2.RefreshExpiresAt.Equal(end) || g2.RefreshTTL > 30*time.Minute || g2.RefreshTTL <= 0 {
		t.Errorf("refreshed token expires %v (TTL %s), want the session's end %v", g2.RefreshExpiresAt, g2.RefreshTTL, end)
	}

	if _, err := db.Pool().Exec(ctx, `update auth.session set expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Refresh(ctx, tok("a2"), tok("a3"), time.Hour, time.Minute); !errors.Is(err, store.ErrInvalidRefresh) {
		t.Errorf("refresh after the session's end: got %v, want ErrInvalidRefresh", err)
	}
	var spent bool
	if err := db.Pool().QueryRow(ctx, `select revoked_at is not null from auth.refresh_token where token_hash = $1`, tok("a2")).Scan(&spent); err != nil {
		t.Fatal(err)
	}
	if spent {
		t.Errorf("a refused refresh spent the token")
	}
}

// TestStartSessionAfterAChange: a login whose password check read the user
// before a password change, role change or disable committed opens no
// session (the change revoked the user's sessions, and must not miss this
// one); an unchanged user's does.
func TestStartSessionAfterAChange(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	other := storetest.NewRole(t)
	for _, change := range []string{"password", "role", "disable"} {
		name := "user-" + change
		storetest.AddUser(t, db, name, "pw-of-"+name)
		checked, err := db.User(ctx, name) // what the password check saw
		if err != nil {
			t.Fatal(err)
		}
		switch change {
		case "password":
			h, _ := store.HashPassword("another-password", 4)
			_, err = db.Pool().Exec(ctx, `update auth.user set password_hash = $1 where username = $2`, h, name)
		case "role":
			_, err = db.Pool().Exec(ctx, `update auth.user set role = $1 where username = $2`, other, name)
		case "disable":
			err = db.SetDisabled(ctx, name, true)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.StartSession(ctx, checked, storetest.TokenHash(name), time.Hour, time.Hour); !errors.Is(err, store.ErrUserChanged) {
			t.Errorf("%s changed during the check: StartSession = %v, want ErrUserChanged", change, err)
		}
		var n int
		if err := db.Pool().QueryRow(ctx, `select count(*) from auth.session where username = $1`, name).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d sessions (%v), want none", change, n, err)
		}
	}
	storetest.AddUser(t, db, "steady", "pw-of-steady")
	u, err := db.User(ctx, "steady")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartSession(ctx, u, storetest.TokenHash("steady"), time.Hour, time.Hour); err != nil {
		t.Errorf("unchanged user: %v", err)
	}
}
