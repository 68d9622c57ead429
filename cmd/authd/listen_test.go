package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"authd/store"
	"authd/store/storetest"
)

// serveProcess runs the authd binary bin as `authd serve` in a process of
// its own, on a free port, and returns its base URL.
func serveProcess(t *testing.T, bin string, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve")
	cmd.Env = environ(env)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cancel(); <-exited })
	deadline := time.After(time.Minute)
	for {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			return "http://" + m[1]
		}
		select {
		case err := <-exited:
			t.Fatalf("authd serve exited before it was ready: %v\n%s", err, stderr)
		case <-deadline:
			t.Fatalf("authd serve not ready within a minute:\n%s", stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitListening waits until the authd at base hears change notifications
// (authd_change_listener_up 1 in its /metrics): a change committed before
// that would be missed, and only a re-read would see it.
func waitListening(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(base + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "\nauthd_change_listener_up 1\n") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not listening for changes within a minute (%v)", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verifyKey is the status /auth/verify at base answers for an API key.
func verifyKey(t *testing.T, base, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/auth/verify", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestChangesReachEveryInstance: two `authd serve` processes cache an API
// key's row with AUTHD_CACHE_RECHECK=1h, so only a change notification can
// make them read it again; `authd apikey disable`, run by a third process,
// is refused by both at once (within the minute allowed for a busy
// machine, against the hour the cache would otherwise keep the key).
func TestChangesReachEveryInstance(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	plain, id := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", newPlan(t, url, storetest.NewRole(t), 600, "")))

	bin := goBuild(t, "authd", ".")
	env["AUTHD_ADDR"] = "127.0.0.1:0"
	env["JWT_SECRET"] = "a-test-secret-that-is-long-enough-0123456789"
	env["AUTHD_CACHE_RECHECK"] = "1h"
	bases := []string{serveProcess(t, bin, env), serveProcess(t, bin, env)}
	for _, base := range bases {
		waitListening(t, base)
	}
	for _, base := range bases {
		if got := verifyKey(t, base, plain); got != http.StatusOK {
			t.Fatalf("%s: key before disable: %d, want 200", base, got)
		}
	}

	mustRun(t, baseEnv(url), "", "apikey", "disable", id)
	for _, base := range bases {
		deadline := time.Now().Add(time.Minute)
		for verifyKey(t, base, plain) != http.StatusUnauthorized {
			if time.Now().After(deadline) {
				t.Fatalf("%s still accepts the key a minute after it was disabled", base)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestNATSGrantsReachTheCallout: nats-callout caches a role's permissions
// with AUTHD_CACHE_RECHECK=1h; a revoke committed by another process
// applies to the next connection once its notification arrives.
func TestNATSGrantsReachTheCallout(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "hunter22\n", "user", "add", "nina", "--role", role)
	mustRun(t, env, "", "nats", "grant", role, "--pub", "a.>", "--sub", "a.>")

	cenv := baseEnv(url)
	ns := nkeyCalloutNATS(t, cenv)
	cenv["AUTHD_CACHE_RECHECK"] = "1h"
	cenv["AUTHD_NATS_HEALTH_ADDR"] = "127.0.0.1:0"
	callout := startCallout(t, cenv)
	waitListening(t, "http://"+callout.health)

	nc, _, err := calloutClient(t, ns, nats.UserInfo("nina", "hunter22"))
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, callout.stderr)
	}
	calloutEcho(t, nc, "a.one")
	nc.Close()

	mustRun(t, env, "", "nats", "revoke", role, "--pub", "a.>", "--sub", "a.>")
	mustRun(t, env, "", "nats", "grant", role, "--pub", "b.>", "--sub", "b.>")
	deadline := time.Now().Add(time.Minute)
	for {
		nc, errs, err := calloutClient(t, ns, nats.UserInfo("nina", "hunter22"))
		if err != nil {
			t.Fatalf("connect after the change: %v\n%s", err, callout.stderr)
		}
		sub, err := nc.SubscribeSync("b.one")
		if err != nil {
			t.Fatal(err)
		}
		nc.Publish("b.one", nil)
		_, err = sub.NextMsg(2 * time.Second)
		nc.Close()
		if err == nil {
			break // the new grants
		}
		select {
		case e := <-errs:
			if !errors.Is(e, nats.ErrPermissionViolation) {
				t.Fatalf("connection with the old grants: %v", e)
			}
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the revoke, connections still get the old grants\n%s", callout.stderr)
		}
	}
}

// TestListenerSurvivesALostConnection: when the listening connection is
// killed, serve listens again on a new one, and changes made after that
// still reach it at once.
func TestListenerSurvivesALostConnection(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	plain, id := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", newPlan(t, url, storetest.NewRole(t), 600, "")))
	s := startServer(t, url, map[string]string{"AUTHD_CACHE_RECHECK": "1h"})
	waitListening(t, s.base)
	if got := verifyKey(t, s.base, plain); got != http.StatusOK {
		t.Fatalf("key: %d, want 200", got)
	}

	var dbName string
	queryRow(t, url, `select current_database()`, nil, &dbName)
	listener := func() int {
		var pid int
		queryRow(t, storetest.AdminURL(), `
			select coalesce(max(pid), 0) from pg_stat_activity
			 where datname = $1 and application_name = $2`, []any{dbName, store.ListenerName}, &pid)
		return pid
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within a minute\n%s", what, s.stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var old int
	waitFor("serve listens", func() bool { old = listener(); return old != 0 })
	storetest.Exec(t, storetest.AdminURL(), `select pg_terminate_backend($1)`, old)
	waitFor("serve listens again", func() bool { pid := listener(); return pid != 0 && pid != old })

	mustRun(t, env, "", "apikey", "disable", id)
	waitFor("the key is refused", func() bool { return verifyKey(t, s.base, plain) == http.StatusUnauthorized })
	if logs := s.stderr.String(); !strings.Contains(logs, "not hearing change notifications") {
		t.Errorf("no warning about the lost connection in the log:\n%s", logs)
	}
}

// TestLogoutReachesEveryInstance: an access token from one instance passes
// /auth/verify on another until its session is logged out, and then at
// once (AUTHD_CACHE_RECHECK=1h: only the authd_session notification can
// tell the other instance).
func TestLogoutReachesEveryInstance(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	mustRun(t, env, "pw-of-lena-0\n", "user", "add", "lena", "--role", storetest.NewRole(t))
	bin := goBuild(t, "authd", ".")
	env["AUTHD_ADDR"] = "127.0.0.1:0"
	env["JWT_SECRET"] = "a-test-secret-that-is-long-enough-0123456789"
	env["AUTHD_CACHE_RECHECK"] = "1h"
	a, b := serveProcess(t, bin, env), serveProcess(t, bin, env)
	waitListening(t, a)
	waitListening(t, b)

	login := instancePost(t, a+"/rpc/login", `{"user_":"lena","pass":"pw-of-lena-0"}`, nil)
	var access string
	for _, c := range login.Cookies() {
		if c.Name == "access_token" {
			access = c.Value
		}
	}
	if access == "" {
		t.Fatalf("login: %d, no access_token cookie", login.StatusCode)
	}
	if got := verifyBearer(t, b, access); got != http.StatusOK {
		t.Fatalf("the other instance: %d, want 200", got)
	}
	if got := instancePost(t, a+"/rpc/logout", "", http.Header{"Authorization": {"Bearer " + access}}).StatusCode; got != http.StatusNoContent {
		t.Fatalf("logout: %d", got)
	}
	deadline := time.Now().Add(time.Minute)
	for verifyBearer(t, b, access) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("a minute after logout, the other instance still accepts the token")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
