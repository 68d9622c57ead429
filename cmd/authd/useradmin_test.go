package main

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"authd/store/storetest"
)

// refreshCookieOf is the refresh_token cookie of r.
func refreshCookieOf(t *testing.T, r response) *http.Cookie {
	t.Helper()
	for _, c := range r.cookies {
		if c.Name == "refresh_token" && c.Path == "/rpc/refresh_token" {
			return c
		}
	}
	t.Fatalf("no refresh_token cookie in %v (status %d, %s)", r.cookies, r.StatusCode, r.body)
	return nil
}

// TestUserCommandsEndSessions is issue 12's finding against a running
// authd: after `authd user passwd alice` (or role, or disable), a refresh
// token issued before no longer refreshes; bob's still does. user sessions
// lists the sessions and why they ended, never a token.
func TestUserCommandsEndSessions(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	other := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	mustRun(t, env, "pw-of-bob-0\n", "user", "add", "bob", "--role", role)
	srv := startServer(t, url, nil)

	login := func(user, pass string) *http.Cookie {
		t.Helper()
		r := srv.post(t, "/rpc/login", `{"user_":"`+user+`","pass":"`+pass+`"}`, nil)
		if r.StatusCode != http.StatusNoContent {
			t.Fatalf("login of %s: got %d %s, want 204", user, r.StatusCode, r.body)
		}
		return refreshCookieOf(t, r)
	}
	refresh := func(c *http.Cookie) response {
		t.Helper()
		return srv.post(t, "/rpc/refresh_token", "", []*http.Cookie{c})
	}
	bob := login("bob", "pw-of-bob-0")

	for _, tt := range []struct {
		name, stdin string
		args        []string
		password    string // alice's password before the command
		stdout      string
		reason      string
	}{
		{"passwd", "new-pw-of-alice\n", []string{"user", "passwd", "alice"}, "pw-of-alice",
			`user "alice": password changed; their sessions are revoked`, "password_change"},
		{"role", "", []string{"user", "role", "alice", other}, "new-pw-of-alice",
			`user "alice": role changed to "` + other + `"; their sessions are revoked`, "role_change"},
		{"disable", "", []string{"user", "disable", "alice"}, "new-pw-of-alice",
			`user "alice" disabled; their sessions are revoked`, "user_disabled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := login("alice", tt.password)
			if r := refresh(before); r.StatusCode != http.StatusNoContent {
				t.Fatalf("refresh before %s: got %d, want 204", tt.name, r.StatusCode)
			} else {
				before = refreshCookieOf(t, r)
			}
			r := mustRun(t, env, tt.stdin, tt.args...)
			if got := strings.TrimSpace(r.stdout); got != tt.stdout {
				t.Errorf("stdout: got %q, want %q", got, tt.stdout)
			}
			if r := refresh(before); r.StatusCode != http.StatusUnauthorized {
				t.Errorf("refresh with a token from before %s: got %d %s, want 401", tt.name, r.StatusCode, r.body)
			}
			if n := count(t, url, `select count(*) from auth.refresh_token where revoked_reason = $1`, tt.reason); n != 1 {
				t.Errorf("tokens revoked for %s: got %d, want 1", tt.reason, n)
			}
		})
	}
	// A disabled alice is refused as a wrong password is.
	wrong := srv.post(t, "/rpc/login", `{"user_":"alice","pass":"not-her-password"}`, nil)
	r := srv.post(t, "/rpc/login", `{"user_":"alice","pass":"new-pw-of-alice"}`, nil)
	if r.StatusCode != http.StatusUnauthorized || string(r.body) != string(wrong.body) {
		t.Errorf("login of disabled alice: got %d %s, want 401 %s", r.StatusCode, r.body, wrong.body)
	}
	if out := mustRun(t, env, "", "user", "list").stdout; !regexp.MustCompile(`(?m)^alice .* \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s*$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^bob .* no\s*$`).MatchString(out) {
		t.Errorf("user list: got %q, want alice disabled (a time) and bob not (no)", out)
	}
	if r := mustRun(t, env, "", "user", "enable", "alice"); strings.TrimSpace(r.stdout) != `user "alice" enabled` {
		t.Errorf("user enable: got %q", r.stdout)
	}
	alice := login("alice", "new-pw-of-alice")

	// Sessions: one line each, oldest first, with why it ended.
	out := mustRun(t, env, "", "user", "sessions", "alice").stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "SESSION") {
		t.Fatalf("user sessions: got %q, want a header and 4 sessions", out)
	}
	for i, want := range []string{"(password_change)", "(role_change)", "(user_disabled)", " no"} {
		if !strings.HasSuffix(strings.TrimSpace(lines[i+1]), want) {
			t.Errorf("session %d: got %q, want it to end with %q", i+1, lines[i+1], want)
		}
	}
	if strings.Contains(out, alice.Value) || strings.Contains(out, bob.Value) {
		t.Errorf("user sessions shows a refresh token: %q", out)
	}

	// logout of one session, then of all; bob is untouched throughout.
	id := strings.Fields(lines[4])[0]
	second := login("alice", "new-pw-of-alice")
	if r := mustRun(t, env, "", "user", "logout", "alice", id); strings.TrimSpace(r.stdout) != `user "alice": 1 session(s) ended` {
		t.Errorf("user logout alice ID: got %q", r.stdout)
	}
	if r := refresh(alice); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("refresh of the session logged out: got %d, want 401", r.StatusCode)
	}
	if r := refresh(second); r.StatusCode != http.StatusNoContent {
		t.Errorf("refresh of the other session: got %d, want 204", r.StatusCode)
	} else {
		second = refreshCookieOf(t, r)
	}
	mustRun(t, env, "", "user", "logout", "alice")
	if r := refresh(second); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("refresh after user logout alice: got %d, want 401", r.StatusCode)
	}
	if n := count(t, url, `select count(*) from auth.refresh_token where revoked_reason = 'admin_logout'`); n != 2 {
		t.Errorf("tokens revoked by user logout: got %d, want 2", n)
	}
	if r := refresh(bob); r.StatusCode != http.StatusNoContent {
		t.Errorf("bob's refresh: got %d, want 204", r.StatusCode)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"user", "role", "nobody", other}, `user "nobody" does not exist`},
		{[]string{"user", "disable", "nobody"}, `user "nobody" does not exist`},
		{[]string{"user", "enable", "nobody"}, `user "nobody" does not exist`},
		{[]string{"user", "sessions", "nobody"}, `user "nobody" does not exist`},
		{[]string{"user", "logout", "nobody"}, `user "nobody" does not exist`},
		{[]string{"user", "logout", "alice", "not-a-uuid"}, `user logout: "not-a-uuid" is not a session id`},
		{[]string{"user", "logout", "bob", id}, `user "bob" has no session ` + id},
		{[]string{"user", "role", "alice", "authd_no_such_role_xyz"}, `user role: role "authd_no_such_role_xyz" does not exist (create it first`},
		{[]string{"user", "role", "alice"}, "user role: want NAME ROLE, got 1 argument(s)"},
	} {
		if r := runCLI(t, env, "", tt.args...); r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
			t.Errorf("authd %s: got %v, want an error containing %q", strings.Join(tt.args, " "), r.err, tt.want)
		}
	}
	if n := count(t, url, `select count(*) from auth.user where username = 'alice' and role = $1`, other); n != 1 {
		t.Errorf("alice's role after refused changes: want %q still", other)
	}
	srv.stop(t)
}

// TestUserPrivilegedRoleRefused: no user gets a role that would hand its
// power to whoever holds the user's tokens, by any door; the CLI says why
// and never advises granting the role to the authenticator.
func TestUserPrivilegedRoleRefused(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	loginRole := storetest.NewRole(t)
	storetest.Exec(t, storetest.AdminURL(), "alter role "+pgx.Identifier{loginRole}.Sanitize()+" login")
	member := storetest.NewRole(t)
	storetest.Exec(t, storetest.AdminURL(), "grant pg_read_server_files to "+pgx.Identifier{member}.Sanitize())
	authenticator := storetest.NewRole(t) // NOLOGIN, so only its name gives it away
	env := baseEnv(url)
	env["AUTHD_AUTHENTICATOR_ROLE"] = authenticator
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)

	for _, tt := range []struct {
		role, want string
	}{
		{"postgres", `role "postgres" may not be the role of a token: it is a superuser`},
		{"pg_read_server_files", `role "pg_read_server_files" may not be the role of a token: it is a predefined role`},
		{"pg_write_all_data", "it is a predefined role"},
		{loginRole, `role "` + loginRole + `" may not be the role of a token: it can log in (LOGIN)`},
		{member, `it is a member of "pg_read_server_files", which is a predefined role`},
		{authenticator, `role "` + authenticator + `" is AUTHD_AUTHENTICATOR_ROLE`},
	} {
		for _, args := range [][]string{
			{"user", "add", "bob", "--role", tt.role},
			{"user", "role", "alice", tt.role},
		} {
			r := runCLI(t, env, "pw-of-bob-0\n", args...)
			if r.err == nil || !strings.Contains(r.err.Error(), tt.want) || strings.Contains(r.err.Error(), "\n") {
				t.Errorf("authd %s: got %v, want one line containing %q", strings.Join(args, " "), r.err, tt.want)
			}
			if strings.Contains(r.stderr, "grant") || strings.Contains(r.stdout, "grant") {
				t.Errorf("authd %s advises a grant: stdout %q, stderr %q", strings.Join(args, " "), r.stdout, r.stderr)
			}
		}
	}
	if n := count(t, url, `select count(*) from auth.user`); n != 1 {
		t.Errorf("users after refused adds: got %d, want 1", n)
	}
	if n := count(t, url, `select count(*) from auth.user where username = 'alice' and role = $1`, role); n != 1 {
		t.Errorf("alice's role changed by a refused user role")
	}
}

// TestPasswordPolicy: user add and user passwd refuse short and common
// passwords before connecting to the database, and never echo them.
func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	unreachable := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/postgres"}
	min12 := map[string]string{"DATABASE_URL": unreachable["DATABASE_URL"], "AUTHD_PASSWORD_MIN_LENGTH": "12"}
	for _, tt := range []struct {
		name     string
		env      map[string]string
		password string
		want     string
	}{
		{"one character", unreachable, "x", "password is too short: at least 8 characters (AUTHD_PASSWORD_MIN_LENGTH)"},
		{"seven characters", unreachable, "abcdefg", "at least 8 characters"},
		{"seven characters, more bytes", unreachable, "ééééééé", "at least 8 characters"},
		{"common", unreachable, "password123", "one of the most common passwords"},
		{"common, other case", unreachable, "PassWord123", "one of the most common passwords"},
		{"the username", unreachable, "alice-the-user", "or the username"},
		{"eleven under a minimum of 12", min12, "elevenchars", "at least 12 characters"},
		{"bad minimum", map[string]string{"DATABASE_URL": unreachable["DATABASE_URL"], "AUTHD_PASSWORD_MIN_LENGTH": "0"}, "long-enough-pw", "AUTHD_PASSWORD_MIN_LENGTH: want a whole number from 1 to 64"},
		{"minimum over 64", map[string]string{"DATABASE_URL": unreachable["DATABASE_URL"], "AUTHD_PASSWORD_MIN_LENGTH": "65"}, "long-enough-pw", "AUTHD_PASSWORD_MIN_LENGTH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, args := range [][]string{
				{"user", "add", "alice-the-user", "--role", "r"},
				{"user", "passwd", "alice-the-user"},
			} {
				r := runCLI(t, tt.env, tt.password+"\n", args...)
				if r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
					t.Errorf("authd %s: got %v, want an error containing %q", strings.Join(args, " "), r.err, tt.want)
					continue
				}
				if strings.Contains(r.err.Error(), "127.0.0.1:1") {
					t.Errorf("authd %s connected before checking the password: %v", strings.Join(args, " "), r.err)
				}
				if strings.Contains(r.err.Error()+r.stdout+r.stderr, tt.password) {
					t.Errorf("authd %s echoed the password: %v", strings.Join(args, " "), r.err)
				}
			}
		})
	}

	// Eight characters pass; so do 12 under a minimum of 12.
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "abcdefgh\n", "user", "add", "alice", "--role", role)
	env["AUTHD_PASSWORD_MIN_LENGTH"] = "12"
	mustRun(t, env, "twelve-chars\n", "user", "passwd", "alice")
	checkHash(t, passwordHash(t, url, "alice"), "twelve-chars", 4)
}

// TestAPIKeyPrivilegedRoleRefused: plans and keys naming a privileged role
// are refused by the database, whoever writes them, and by apikey create,
// which then advises no grant.
func TestAPIKeyPrivilegedRoleRefused(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	plan := newPlan(t, url, role, 60, "")
	for _, sql := range []string{
		`insert into auth.plan (name, role, requests_per_minute) values ('root', 'postgres', 60)`,
		`update auth.plan set role = 'pg_write_server_files' where name = '` + plan + `'`,
		`insert into auth.api_key (id, secret_hash, role, plan) values ('abc', sha256('x'), 'postgres', '` + plan + `')`,
		`insert into auth.nats_permission (role, kind, subject) values ('postgres', 'pub_allow', '>')`,
	} {
		_, err := connect(t, url).Exec(context.Background(), sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != "role_not_privileged" {
			t.Errorf("%s: got %v, want SQLSTATE 23514 (role_not_privileged)", sql, err)
		}
	}
	r := runCLI(t, env, "", "apikey", "create", "--plan", plan, "--role", "postgres")
	if r.err == nil || !strings.Contains(r.err.Error(), `role "postgres" may not be the role of a token: it is a superuser`) {
		t.Errorf("apikey create --role postgres: got %v, want a refusal saying it is a superuser", r.err)
	}
	if strings.Contains(r.stdout+r.stderr, "grant") || strings.Contains(r.stdout, "key:") {
		t.Errorf("apikey create --role postgres: stdout %q, stderr %q; want no key and no grant advice", r.stdout, r.stderr)
	}
	if n := count(t, url, `select count(*) from auth.api_key`); n != 0 {
		t.Errorf("api keys after refusals: got %d, want 0", n)
	}
}
