package main

import (
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// TestServeAsAppRole is issue 12's least-privilege finding against a
// running authd: `authd serve` logged in as a role whose only privileges
// are its membership of authd_app (migration 00008) starts, logs in,
// refreshes, logs out, verifies an API key, purges, and hears change
// notifications, all without a warning. The migrations ran as the owner.
func TestServeAsAppRole(t *testing.T) {
	t.Parallel()
	owner := storetest.NewURL(t)
	db := storetest.Open(t, owner)
	storetest.AddUser(t, db, "alice", "pw-of-alice")
	// A dead session (its only token expired) for the purge job.
	dead := storetest.StartSession(t, db, "alice", "old-token")
	storetest.Exec(t, owner, `update auth.refresh_token set expires_at = now() - interval '1 minute' where session_id = $1`, dead.SessionID)

	app := storetest.NewAppURL(t, owner)
	// An operator may run the admin commands with authd's own URL too.
	plain, id := keyFrom(t, mustRun(t, baseEnv(app), "", "apikey", "create", "--plan", newPlan(t, owner, storetest.NewRole(t), 600, "")))

	// A cached key is only re-read on a notification (or after an hour).
	srv := startServer(t, app, map[string]string{"AUTHD_CACHE_RECHECK": "1h"})
	waitListening(t, srv.base)

	var user string
	queryRow(t, owner, `select usename from pg_stat_activity where application_name = $1 and datname = current_database()`,
		[]any{store.ListenerName}, &user)
	u, err := neturl.Parse(app)
	if err != nil {
		t.Fatal(err)
	}
	if want := u.User.Username(); user != want {
		t.Fatalf("serve's listening connection is logged in as %q, want %q", user, want)
	}

	if r := srv.post(t, "/rpc/login", `{"user_":"alice","pass":"wrong"}`, nil); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with a wrong password: got %d %s, want 401", r.StatusCode, r.body)
	}
	r := srv.post(t, "/rpc/login", `{"user_":"alice","pass":"pw-of-alice"}`, nil)
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("login: got %d %s, want 204", r.StatusCode, r.body)
	}
	r = srv.post(t, "/rpc/refresh_token", "", []*http.Cookie{refreshCookieOf(t, r)})
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("refresh: got %d %s, want 204", r.StatusCode, r.body)
	}
	refreshed := refreshCookieOf(t, r)
	if r := srv.post(t, "/rpc/logout", "", r.cookies); r.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: got %d %s, want 204", r.StatusCode, r.body)
	}
	if r := srv.post(t, "/rpc/refresh_token", "", []*http.Cookie{refreshed}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("refresh after logout: got %d %s, want 401", r.StatusCode, r.body)
	}

	if got := verifyKey(t, srv.base, plain); got != http.StatusOK {
		t.Fatalf("/auth/verify with the API key: got %d, want 200", got)
	}

	// Bounds on a hang, not timings: each happens at once on a quiet
	// machine (the first purge runs at start).
	deadline := time.Now().Add(time.Minute)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within a minute\n%s", what, srv.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	metrics := func() string {
		resp, err := http.Get(srv.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor("the dead session purged", func() bool {
		return count(t, owner, `select count(*) from auth.session where id = $1`, dead.SessionID) == 0
	})
	waitFor("authd_change_listener_up 1", func() bool { return strings.Contains(metrics(), "\nauthd_change_listener_up 1\n") })

	// Disabled by the owner: only the notification can reach the cache.
	storetest.Exec(t, owner, `update auth.api_key set enabled = false where id = $1`, id)
	waitFor("the disabled key refused", func() bool { return verifyKey(t, srv.base, plain) != http.StatusOK })

	// The audit writer, as the app role: the failed and the good login,
	// the logout.
	waitFor("the audit log written", func() bool {
		return count(t, owner, `select count(*) from auth.audit_log where event in ('login', 'logout')`) == 3
	})

	logs := srv.stop(t)
	for _, l := range jsonLines(t, logs) {
		if l["level"] == "WARN" || l["level"] == "ERROR" {
			t.Errorf("log line %v: want no warning or error as the app role", l)
		}
	}
}
