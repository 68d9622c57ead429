package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"authd/store"
	"authd/store/storetest"
)

// TestUserStaleHashesAndExpirePassword: an operator lists the users whose
// hash is not at AUTHD_BCRYPT_COST and expires those passwords; an expired
// account keeps its row, loses its sessions, and logs in again only with
// the password user passwd gives it.
func TestUserStaleHashesAndExpirePassword(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	env["AUTHD_BCRYPT_COST"] = "5"
	db := storetest.Open(t, url)
	ctx := context.Background()
	add := func(name, password string, cost int) {
		t.Helper()
		h, err := store.HashPassword(password, cost)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.AddUser(ctx, name, h, role); err != nil {
			t.Fatal(err)
		}
	}
	add("alice", "pw-of-alice", 4) // cheaper, as SuperStack's cost 6 below authd's 10
	add("bob", "pw-of-bob-0", 5)
	add("erin", "pw-of-erin", 6) // dearer: AUTHD_BCRYPT_COST was lowered
	if err := db.AddUser(ctx, "dave", "$2a$03$"+strings.Repeat(".", 53), role); err != nil {
		t.Fatal(err) // of bcrypt's form, but of a cost bcrypt refuses
	}

	stale := mustRun(t, env, "", "user", "list", "--stale-hashes").stdout
	for _, want := range []string{`(?m)^USERNAME .*HASH COST\s*$`, `(?m)^alice .* no\s+4\s*$`, `(?m)^dave .* unusable\s*$`, `(?m)^erin .* 6\s*$`} {
		if !regexp.MustCompile(want).MatchString(stale) {
			t.Errorf("user list --stale-hashes: got %q, want a line matching %s", stale, want)
		}
	}
	if strings.Contains(stale, "bob") {
		t.Errorf("user list --stale-hashes lists bob, whose hash is at cost 5: %q", stale)
	}
	if all := mustRun(t, env, "", "user", "list").stdout; strings.Contains(all, "HASH COST") || !strings.Contains(all, "bob") {
		t.Errorf("user list without --stale-hashes: got %q, want every user and no cost column", all)
	}

	srv := startServer(t, url, map[string]string{"AUTHD_BCRYPT_COST": "5"})
	login := func(user, pass string) response {
		t.Helper()
		return srv.post(t, "/rpc/login", `{"user_":"`+user+`","pass":"`+pass+`"}`, nil)
	}
	// erin's session: a cost-6 hash is not re-hashed by a login.
	r := login("erin", "pw-of-erin")
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("login of erin: got %d %s", r.StatusCode, r.body)
	}
	session := refreshCookieOf(t, r)

	out := mustRun(t, env, "", "user", "expire-password", "erin").stdout
	if want := `user "erin": password expired, no password works until 'authd user passwd'; their sessions are revoked`; strings.TrimSpace(out) != want {
		t.Errorf("user expire-password: got %q, want %q", out, want)
	}
	if r := srv.post(t, "/rpc/refresh_token", "", []*http.Cookie{session}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("refresh after expire-password: got %d, want 401", r.StatusCode)
	}
	if r := login("erin", "pw-of-erin"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with the old password after expire-password: got %d, want 401", r.StatusCode)
	}
	h := passwordHash(t, url, "erin")
	if _, staleHash := hashCostOf(h, 5); staleHash {
		t.Errorf("expired hash %q is not at AUTHD_BCRYPT_COST 5", h)
	}
	if n := count(t, url, `select count(*) from auth.user where username = 'erin'`); n != 1 {
		t.Errorf("erin's row: got %d, want 1 (expiring keeps the account)", n)
	}
	if strings.Contains(mustRun(t, env, "", "user", "list", "--stale-hashes").stdout, "erin") {
		t.Error("erin is still listed by --stale-hashes after expire-password")
	}
	mustRun(t, env, "new-pw-of-erin\n", "user", "passwd", "erin")
	if r := login("erin", "new-pw-of-erin"); r.StatusCode != http.StatusNoContent {
		t.Errorf("login with the password user passwd gave: got %d %s", r.StatusCode, r.body)
	}

	if r := runCLI(t, env, "", "user", "expire-password", "nobody"); r.err == nil || r.err.Error() != `user "nobody" does not exist` {
		t.Errorf("expire-password of an unknown user: got %v", r.err)
	}
}
