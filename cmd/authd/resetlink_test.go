package main

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"authd/store/storetest"
	"authd/token"
)

// TestUserResetLink: the link names the base, holds a token whose hash
// (only) is stored, and a second link kills the first; an unknown user
// is an error.
func TestUserResetLink(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(dbURL)
	mustRun(t, env, "alices-password\n", "user", "add", "alice", "--role", role)

	tokenOf := func(link string) string {
		t.Helper()
		link = strings.TrimSpace(link)
		if !strings.HasPrefix(link, "https://app.example/reset?token=") {
			t.Fatalf("link %q, want https://app.example/reset?token=...", link)
		}
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("token")
	}
	first := tokenOf(mustRun(t, env, "", "user", "reset-link", "alice", "--base", "https://app.example/").stdout)
	env["AUTHD_JWT_ISS"] = "https://app.example"
	second := tokenOf(mustRun(t, env, "", "user", "reset-link", "alice").stdout)

	conn := connect(t, dbURL)
	live := func(tok string) bool {
		var n int
		if err := conn.QueryRow(context.Background(), `select count(*) from auth.password_reset
			 where token_hash = $1 and username = 'alice' and used_at is null and expires_at > now()`, token.HashRefresh(tok)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if live(first) || !live(second) {
		t.Errorf("first link live %v, second %v; want only the second", live(first), live(second))
	}
	if r := runCLI(t, env, "", "user", "reset-link", "nobody"); r.err == nil || !strings.Contains(r.err.Error(), "does not exist") {
		t.Errorf("unknown user: %v, want does not exist", r.err)
	}
}
