package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/store/storetest"
)

// TestUserChangesEndSessions: a refresh token issued before the user's
// password or role changed, or before they were disabled, no longer
// refreshes, whoever made the change (authd's store or plain SQL); the
// rows say why. Other users' sessions are untouched.
func TestUserChangesEndSessions(t *testing.T) {
	t.Parallel()
	newHash, err := store.HashPassword("a-new-password", testCost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(e *env)
		reason string
	}{
		{"password by the store", func(e *env) {
			if err := e.db.SetPassword(context.Background(), testUser, newHash); err != nil {
				t.Fatal(err)
			}
		}, "password_change"},
		{"password by SQL", func(e *env) {
			e.exec(`update auth.user set password_hash = $1 where username = $2`, newHash, testUser)
		}, "password_change"},
		{"role by the store", func(e *env) {
			if err := e.db.SetRole(context.Background(), testUser, storetest.NewRole(t)); err != nil {
				t.Fatal(err)
			}
		}, "role_change"},
		{"role by SQL", func(e *env) {
			e.exec(`update auth.user set role = $1 where username = $2`, storetest.NewRole(t), testUser)
		}, "role_change"},
		{"disabled by the store", func(e *env) {
			if err := e.db.SetDisabled(context.Background(), testUser, true); err != nil {
				t.Fatal(err)
			}
		}, "user_disabled"},
		{"disabled by SQL", func(e *env) {
			e.exec(`update auth.user set disabled_at = now() where username = $1`, testUser)
		}, "user_disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.addUser("bob", testPassword, e.role)
			bob := refreshValue(t, e.post("/rpc/login", jsonHeader(), loginBody("bob", testPassword)))
			stale := refreshValue(t, e.login())
			// A spent token of the session too: its reason stays 'rotated'.
			live := refreshValue(t, e.refreshWith(stale))

			listener := listen(t, e.url, "authd_session")
			tt.change(e)

			r := e.refreshWith(live)
			wantStatus(t, r, http.StatusUnauthorized)
			wantBody(t, r, `{"code":"PT401","details":null,"hint":null,"message":"Invalid or expired refresh token"}`)
			if n := e.count(`select count(*) from auth.refresh_token where revoked_reason = $1`, tt.reason); n != 1 {
				t.Errorf("tokens revoked for %s: got %d, want 1 (the live one)", tt.reason, n)
			}
			if n := e.count(`select count(*) from auth.session where username = $1 and revoked_at is null`, testUser); n != 0 {
				t.Errorf("live sessions of %s after the change: got %d, want 0", testUser, n)
			}
			if got := listener.next(t); got != testUser {
				t.Errorf("authd_session payload: got %q, want %q", got, testUser)
			}
			wantStatus(t, e.refreshWith(bob), http.StatusNoContent)
		})
	}
}

// TestDisabledUser: a disabled user's login is refused exactly as a wrong
// password is; enabled again, they log in, but their old sessions stay
// ended.
func TestDisabledUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old := refreshValue(t, e.login())
	wrong := e.post("/rpc/login", jsonHeader(), loginBody(testUser, "not-the-password"))
	wantStatus(t, wrong, http.StatusUnauthorized)

	if err := e.db.SetDisabled(context.Background(), testUser, true); err != nil {
		t.Fatal(err)
	}
	r := e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, wrong.body)
	if len(r.cookies) != 0 {
		t.Errorf("got cookies %q for a disabled user", r.setCookies())
	}
	wantStatus(t, e.refreshWith(old), http.StatusUnauthorized)

	if err := e.db.SetDisabled(context.Background(), testUser, false); err != nil {
		t.Fatal(err)
	}
	e.login()
	wantStatus(t, e.refreshWith(old), http.StatusUnauthorized)
}

// TestHashUpgradeKeepsSessions: the re-hash of a weak hash at login is not
// a password change: the user's other sessions go on.
func TestHashUpgradeKeepsSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)                              // the user's hash is at cost 4
	first := refreshValue(t, e.login())         // no upgrade: the server's cost is 4
	srv, _, _, _, _ := e.newServer(withCost(6)) // this one upgrades
	r := do(t, nil, http.MethodPost, srv.URL+"/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
	wantStatus(t, r, http.StatusNoContent)
	u, err := e.db.User(context.Background(), testUser)
	if err != nil || u.PasswordHash[:7] != "$2a$06$" {
		t.Fatalf("hash after login on the cost-6 server: %q, %v; want cost 6", u.PasswordHash, err)
	}
	wantStatus(t, e.refreshWith(first), http.StatusNoContent)
}

// TestPrivilegedRoleRefusedAtIssue: a user whose role became too powerful
// for a token after it was given (the database refuses giving it) gets no
// token from login or refresh, in PostgREST's shape; nothing is spent, so
// with the role fixed the same refresh token works.
func TestPrivilegedRoleRefusedAtIssue(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, grant, undo, reason string
	}{
		{"createdb", `alter role %s createdb`, `alter role %s nocreatedb`, "it has CREATEDB"},
		{"login", `alter role %s login`, `alter role %s nologin`, "it can log in (LOGIN)"},
		{"member of a predefined role", `grant pg_read_server_files to %s`, `revoke pg_read_server_files from %s`,
			`it is a member of "pg_read_server_files", which is a predefined role`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			refresh := refreshValue(t, e.login())
			storetest.Exec(t, storetest.AdminURL(), sprintfIdent(tt.grant, e.role))

			want := `{"code":"PT403","details":null,` +
				`"hint":"An administrator must give the user a NOLOGIN role without SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION, not a predefined pg_* role nor a member of one of those.",` +
				`"message":"role \"` + e.role + `\" may not be the role of a token: ` + strings.ReplaceAll(tt.reason, `"`, `\"`) + `"}`
			r := e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
			wantStatus(t, r, http.StatusForbidden)
			wantBody(t, r, want)
			r = e.refreshWith(refresh)
			wantStatus(t, r, http.StatusForbidden)
			wantBody(t, r, want)
			if len(r.cookies) != 0 {
				t.Errorf("refresh gave cookies %q for a privileged role", r.setCookies())
			}

			storetest.Exec(t, storetest.AdminURL(), sprintfIdent(tt.undo, e.role))
			wantStatus(t, e.refreshWith(refresh), http.StatusNoContent)
		})
	}
}

func sprintfIdent(format, role string) string {
	return fmt.Sprintf(format, pgx.Identifier{role}.Sanitize())
}

// notifications is a connection listening on a channel.
type notifications struct{ conn *pgx.Conn }

func listen(t *testing.T, url, channel string) notifications {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "listen "+channel); err != nil {
		t.Fatal(err)
	}
	return notifications{conn}
}

// next waits for the next notification (a minute at most: a bound on a
// hang, not a timing assertion) and returns its payload.
func (n notifications) next(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msg, err := n.conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("wait for a notification: %v", err)
	}
	return msg.Payload
}

// TestPrivilegedRoleRefusedForAPIKey: a key whose role became too powerful
// after the key was made gets 403 at /auth/verify, not a token for it.
func TestPrivilegedRoleRefusedForAPIKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, plain := e.newKey(600, nil)
	wantStatus(t, e.verify(http.MethodGet, apiKeyHeader(plain)), http.StatusOK)
	storetest.Exec(t, storetest.AdminURL(), sprintfIdent(`alter role %s createdb`, e.role))
	// The key's row is re-read within a second (its role's attributes
	// change no row, so no notification says so).
	deadline := time.Now().Add(time.Minute)
	for {
		r := e.verify(http.MethodGet, apiKeyHeader(plain))
		if r.status == http.StatusForbidden {
			wantBody(t, r, `{"code":"PT403","details":null,`+
				`"hint":"An administrator must give the user a NOLOGIN role without SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION, not a predefined pg_* role nor a member of one of those.",`+
				`"message":"role \"`+e.role+`\" may not be the role of a token: it has CREATEDB"}`)
			if r.header.Get("Authorization") != "" {
				t.Error("a token was handed on for a privileged role")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the role got CREATEDB, verify answers %d", r.status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
