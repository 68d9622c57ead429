package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// liveSessions counts the live sessions of user.
func liveSessions(t *testing.T, db *store.DB, user string) int {
	t.Helper()
	var n int
	if err := db.Pool().QueryRow(context.Background(),
		`select count(*) from auth.session where username = $1 and revoked_at is null`, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestChangePasswordGuards: a change whose checked hash is no longer the
// user's (changed meanwhile) is ErrUserChanged, and one from a session
// revoked meanwhile ErrSessionEnded; neither changes the password nor
// ends a session.
func TestChangePasswordGuards(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	u, err := db.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	newHash, err := store.HashPassword("a new password", 4)
	if err != nil {
		t.Fatal(err)
	}
	mine := storetest.StartSession(t, db, "alice", "mine")
	storetest.StartSession(t, db, "alice", "other")

	stale := u
	stale.PasswordHash = "$2a$04$not-the-hash-that-is-stored"
	if _, err := db.ChangePassword(ctx, stale, newHash, mine.SessionID, storetest.TokenHash("n1"), time.Hour); !errors.Is(err, store.ErrUserChanged) {
		t.Errorf("stale hash: got %v, want ErrUserChanged", err)
	}
	ended := storetest.StartSession(t, db, "alice", "ended")
	if _, err := db.RevokeSessions(ctx, ended.SessionID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ChangePassword(ctx, u, newHash, ended.SessionID, storetest.TokenHash("n2"), time.Hour); !errors.Is(err, store.ErrSessionEnded) {
		t.Errorf("ended session: got %v, want ErrSessionEnded", err)
	}
	if got, _ := db.User(ctx, "alice"); got.PasswordHash != u.PasswordHash {
		t.Errorf("password hash changed to %q by a refused change", got.PasswordHash)
	}
	if n := liveSessions(t, db, "alice"); n != 2 {
		t.Errorf("%d live sessions after refused changes, want 2", n)
	}

	g, err := db.ChangePassword(ctx, u, newHash, mine.SessionID, storetest.TokenHash("n3"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if g.SessionID != mine.SessionID || g.Role != u.Role || g.RefreshTTL <= 0 {
		t.Errorf("grant %+v: want the kept session, the user's role and a refresh TTL", g)
	}
	if n := liveSessions(t, db, "alice"); n != 1 {
		t.Errorf("%d live sessions after the change, want 1 (the kept one)", n)
	}
}

// TestKeepSessionOnlyForPasswordChange: authd.keep_session spares a
// session from a password change only; a role change or a disable in
// the same transaction still ends every session.
func TestKeepSessionOnlyForPasswordChange(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	db := storetest.Open(t, url)
	storetest.AddUser(t, db, "alice", "pw")
	g := storetest.StartSession(t, db, "alice", "a")
	storetest.Exec(t, url, `
		do $$ begin
		    perform set_config('authd.keep_session', '`+g.SessionID.String()+`', true);
		    update auth.user set disabled_at = now() where username = 'alice';
		end $$`)
	if n := liveSessions(t, db, "alice"); n != 0 {
		t.Errorf("%d live sessions after a disable with authd.keep_session set, want 0", n)
	}
}
