package main

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// TestSessionCommands: session list shows a user's sessions with the
// login's client address and User-Agent (quoted: the client's text), and
// session revoke ends one by its id or all of a user's with --user; the
// ended ones' refresh tokens stop working, another user's go on. user
// sessions and user logout keep working as before.
func TestSessionCommands(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	mustRun(t, env, "pw-of-bob-0\n", "user", "add", "bob", "--role", role)
	db := storetest.Open(t, url)
	ctx := context.Background()
	start := func(user, tok string, from store.LoginClient) store.Grant {
		t.Helper()
		u, err := db.User(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		g, err := db.StartSessionFrom(ctx, u, from, storetest.TokenHash(tok), time.Hour, 24*time.Hour, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	// refreshes reports whether refresh token tok still earns tokens.
	refreshes := func(tok string) bool {
		t.Helper()
		_, err := db.Refresh(ctx, storetest.TokenHash(tok), storetest.TokenHash(tok+"-next"), time.Hour, 0)
		if err != nil && !errors.Is(err, store.ErrInvalidRefresh) {
			t.Fatal(err)
		}
		return err == nil
	}
	phone := start("alice", "phone", store.LoginClient{Addr: "203.0.113.7", UserAgent: "Phone/1.0 (evil\nline)"})
	start("alice", "desk", store.LoginClient{})
	start("bob", "bob", store.LoginClient{Addr: "198.51.100.1"})

	out := mustRun(t, env, "", "session", "list", "alice").stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SESSION") || !regexp.MustCompile(`REVOKED +CLIENT +USER AGENT$`).MatchString(lines[0]) {
		t.Fatalf("session list: got %q, want a header ending CLIENT, USER AGENT and 2 sessions", out)
	}
	if want := regexp.MustCompile(` no +203\.0\.113\.7 +"Phone/1\.0 \(evil\\nline\)"$`); !strings.HasPrefix(lines[1], phone.SessionID.String()) || !want.MatchString(lines[1]) {
		t.Errorf("phone's line %q: want its id first and %s", lines[1], want)
	}
	if want := regexp.MustCompile(` no +- +""$`); !want.MatchString(lines[2]) {
		t.Errorf("desk's line %q: want %s (nothing known)", lines[2], want)
	}
	if old := mustRun(t, env, "", "user", "sessions", "alice").stdout; strings.Contains(old, "CLIENT") || len(strings.Split(strings.TrimSpace(old), "\n")) != 3 {
		t.Errorf("user sessions changed: %q", old)
	}

	id := phone.SessionID.String()
	if r := mustRun(t, env, "", "session", "revoke", id); strings.TrimSpace(r.stdout) != `session `+id+` of user "alice" ended` {
		t.Errorf("session revoke ID: got %q", r.stdout)
	}
	if refreshes("phone") || !refreshes("desk") {
		t.Errorf("after session revoke ID: phone's refresh must fail, desk's work")
	}
	if r := mustRun(t, env, "", "session", "revoke", "--user", "alice"); strings.TrimSpace(r.stdout) != `user "alice": 1 session(s) ended` {
		t.Errorf("session revoke --user: got %q", r.stdout)
	}
	if refreshes("desk-next") || !refreshes("bob") {
		t.Errorf("after session revoke --user alice: alice's refresh must fail, bob's work")
	}
	if n := count(t, url, `select count(*) from auth.refresh_token where revoked_reason = 'admin_logout'`); n != 2 {
		t.Errorf("tokens revoked by session revoke: got %d, want 2", n)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"session", "list", "nobody"}, `user "nobody" does not exist`},
		{[]string{"session", "revoke"}, "session revoke: want a session ID or --user USER"},
		{[]string{"session", "revoke", "not-a-uuid"}, `session revoke: "not-a-uuid" is not a session id`},
		{[]string{"session", "revoke", "9b2f6c1e-8d7a-4f4e-9a51-1c0f3b2d4e5f"}, "no session 9b2f6c1e-8d7a-4f4e-9a51-1c0f3b2d4e5f"},
		{[]string{"session", "revoke", "--user", "nobody"}, `user "nobody" does not exist`},
		{[]string{"session", "revoke", "--user", "bob", id}, `user "bob" has no session ` + id},
	} {
		if r := runCLI(t, env, "", tt.args...); r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
			t.Errorf("authd %s: got %v, want an error containing %q", strings.Join(tt.args, " "), r.err, tt.want)
		}
	}
}
