package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// auditJSON is `authd audit --json ARGS...`, decoded.
func auditJSON(t *testing.T, env map[string]string, args ...string) []store.AuditEvent {
	t.Helper()
	r := mustRun(t, env, "", append([]string{"audit", "--json"}, args...)...)
	var events []store.AuditEvent
	for line := range strings.SplitSeq(strings.TrimSpace(r.stdout), "\n") {
		if line == "" {
			continue
		}
		var e store.AuditEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit --json: line %q: %v", line, err)
		}
		events = append(events, e)
	}
	return events
}

func eventNames(events []store.AuditEvent) string {
	var names []string
	for _, e := range events {
		names = append(names, e.Event+":"+e.Outcome+":"+e.Username)
	}
	return strings.Join(names, " ")
}

// TestAuditCLI: the admin commands record what they did in the audit log,
// serve records logins, and `authd audit` shows them, filtered by user,
// event and age, as a table or JSON lines; never a password or a key.
func TestAuditCLI(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	other := storetest.NewRole(t)
	env := baseEnv(url)
	plan := newPlan(t, url, role, 60, "")

	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	mustRun(t, env, "pw-of-alice-2\n", "user", "passwd", "alice")
	mustRun(t, env, "", "user", "role", "alice", other)
	mustRun(t, env, "", "user", "disable", "alice")
	mustRun(t, env, "", "user", "enable", "alice")
	mustRun(t, env, "", "user", "logout", "alice")
	mustRun(t, env, "", "user", "expire-password", "alice")
	mustRun(t, env, "pw-of-bob-0\n", "user", "add", "bob", "--role", role)
	created := mustRun(t, env, "", "apikey", "create", "--plan", plan)
	id := idLineRe.FindStringSubmatch(created.stdout)[1]
	rotated := mustRun(t, env, "", "apikey", "rotate", id)
	mustRun(t, env, "", "apikey", "disable", id)
	mustRun(t, env, "", "user", "del", "bob")

	want := "user_add:ok:alice user_passwd:ok:alice user_role:ok:alice user_disable:ok:alice user_enable:ok:alice " +
		"user_logout:ok:alice user_expire_password:ok:alice user_add:ok:bob " +
		"apikey_create:ok: apikey_rotate:ok: apikey_disable:ok: user_del:ok:bob"
	all := auditJSON(t, env)
	if got := eventNames(all); got != want {
		t.Errorf("audit --json:\ngot  %s\nwant %s", got, want)
	}
	for _, e := range all {
		if e.Details["via"] != "cli" {
			t.Errorf("%s: details %v, want via=cli", e.Event, e.Details)
		}
	}
	if got := auditJSON(t, env, "--event", "user_role"); len(got) != 1 || got[0].Details["role"] != other {
		t.Errorf("audit --event user_role: got %+v, want one event with role %s", got, other)
	}
	if got := auditJSON(t, env, "--event", "apikey_rotate"); len(got) != 1 || got[0].Details["key_id"] != id {
		t.Errorf("audit --event apikey_rotate: got %+v, want one event with key_id %s", got, id)
	}
	if got := eventNames(auditJSON(t, env, "--user", "bob")); got != "user_add:ok:bob user_del:ok:bob" {
		t.Errorf("audit --user bob: got %s", got)
	}

	// --since: 24h by default; days are accepted.
	db := storetest.Open(t, url)
	old := store.AuditEvent{At: time.Now().Add(-48 * time.Hour), Event: "login", Outcome: "ok", Username: "carol"}
	if err := db.WriteAudit(context.Background(), []store.AuditEvent{old}); err != nil {
		t.Fatal(err)
	}
	// A row written by hand, with details that are not all strings.
	storetest.Exec(t, url, `insert into auth.audit_log (event, outcome, username, details) values ('note', 'ok', 'dave', '{"n": 2, "tags": ["a"], "by": "ops"}')`)
	if got := auditJSON(t, env, "--user", "dave"); len(got) != 1 || got[0].Details["n"] != "2" || got[0].Details["tags"] != `["a"]` || got[0].Details["by"] != "ops" {
		t.Errorf("audit --user dave: got %+v, want details n=2 tags=[\"a\"] by=ops", got)
	}
	if got := auditJSON(t, env, "--user", "carol"); len(got) != 0 {
		t.Errorf("audit --user carol: got %+v, want nothing within 24h", got)
	}
	if got := auditJSON(t, env, "--user", "carol", "--since", "3d"); len(got) != 1 {
		t.Errorf("audit --user carol --since 3d: got %+v, want the event of 2 days ago", got)
	}
	if r := runCLI(t, env, "", "audit", "--since", "yesterday"); r.err == nil || !strings.Contains(r.err.Error(), `bad --since "yesterday"`) {
		t.Errorf("audit --since yesterday: got %v, want a usage error", r.err)
	}

	// serve records logins, written by its batcher within moments.
	mustRun(t, env, "pw-of-alice-3\n", "user", "passwd", "alice")
	srv := startServer(t, url, nil)
	if r := srv.post(t, "/rpc/login", `{"user_":"alice","pass":"pw-of-alice-3"}`, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("login: got %d %s", r.StatusCode, r.body)
	}
	waitFor(t, func() bool { return len(auditJSON(t, env, "--event", "login", "--user", "alice")) == 1 })

	table := mustRun(t, env, "", "audit").stdout
	for _, w := range []string{"AT  ", "EVENT", "user_role", "role=" + other + " via=cli", "login", "key_id=" + id} {
		if !strings.Contains(table, w) {
			t.Errorf("audit: the table lacks %q:\n%s", w, table)
		}
	}
	out := table + mustRun(t, env, "", "audit", "--json").stdout
	secrets := []string{"pw-of-alice", "pw-of-bob-0", keyLineRe.FindStringSubmatch(created.stdout)[1], keyLineRe.FindStringSubmatch(rotated.stdout)[1]}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("authd audit shows the secret %q", s)
		}
	}
}

// TestServeFlushesAuditOnStop: the audit events of the last requests are
// written before serve returns (end to end; that Run writes what is
// queued when stopped is TestAuditRunWritesQueuedOnStop in server).
func TestServeFlushesAuditOnStop(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", storetest.NewRole(t))
	srv := startServer(t, url, nil)
	for range 3 {
		if r := srv.post(t, "/rpc/login", `{"user_":"alice","pass":"pw-of-alice"}`, nil); r.StatusCode != http.StatusNoContent {
			t.Fatalf("login: got %d %s", r.StatusCode, r.body)
		}
	}
	srv.stop(t)
	if got := len(auditJSON(t, env, "--event", "login")); got != 3 {
		t.Errorf("after stop: %d logins in the audit log, want 3", got)
	}
}
