package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"authd/identity"
	"authd/server"
	"authd/store"
)

func withAuditBuffer(n int) option {
	return func(c *server.Config, _ *identity.Config, _ *envOpts) { c.AuditBuffer = n }
}

// auditRows flushes the API's audit writer and returns the audit log,
// oldest first, as "event outcome username session client ua details".
func (e *env) auditRows() []store.AuditEvent {
	e.t.Helper()
	e.api.Audit().Flush(context.Background())
	events, err := e.db.AuditLog(context.Background(), store.AuditFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return events
}

func auditLine(ev store.AuditEvent) string {
	sid := "-"
	if ev.SessionID != uuid.Nil {
		sid = "sid"
	}
	return fmt.Sprintf("%s %s user=%q %s client=%s ua=%q %v", ev.Event, ev.Outcome, ev.Username, sid, ev.Client, ev.UserAgent, ev.Details)
}

// TestAuditLog: every login (ok, failed, throttled), replayed refresh
// token and logout is a row of auth.audit_log with its user, session,
// client and user agent; a successful refresh is not; and no column holds
// a password or a token.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(0), withLoginLimits(2, 0))
	from := func(ip, user, pass string) response {
		h := jsonHeader()
		h.Set("X-Forwarded-For", ip)
		h.Set("User-Agent", "audit-test/1.0")
		return e.post("/rpc/login", h, loginBody(user, pass))
	}
	ok := from("203.0.113.9", testUser, testPassword)
	wantStatus(t, ok, http.StatusNoContent)
	sid := verifyJWT(t, accessValue(t, ok))["sid"]
	first := refreshValue(t, ok)
	second := refreshValue(t, e.refreshWith(first))
	wantStatus(t, e.refreshWith(first), http.StatusUnauthorized) // replayed: the session dies

	ok2 := from("203.0.113.9", testUser, testPassword)
	wantStatus(t, ok2, http.StatusNoContent)
	h := jsonHeader()
	h.Set("Authorization", "Bearer "+accessValue(t, ok2))
	h.Set("X-Forwarded-For", "203.0.113.9")
	h.Set("User-Agent", "audit-test/1.0")
	wantStatus(t, e.post("/rpc/logout", h, ""), http.StatusNoContent)

	wantStatus(t, from("203.0.113.10", "my secret password", "x"), http.StatusUnauthorized)
	wantStatus(t, from("203.0.113.10", testUser, "wrong password 1"), http.StatusUnauthorized)
	wantStatus(t, from("203.0.113.10", testUser, "wrong password 2"), http.StatusUnauthorized)
	wantStatus(t, from("203.0.113.10", testUser, "wrong password 3"), http.StatusTooManyRequests)

	rows := e.auditRows()
	var got []string
	for _, r := range rows {
		got = append(got, auditLine(r))
	}
	want := []string{
		`login ok user="alice" sid client=203.0.113.9 ua="audit-test/1.0" map[]`,
		`refresh_reuse session_revoked user="alice" sid client=127.0.0.1 ua="Go-http-client/1.1" map[]`,
		`login ok user="alice" sid client=203.0.113.9 ua="audit-test/1.0" map[]`,
		`logout ok user="alice" sid client=203.0.113.9 ua="audit-test/1.0" map[scope:local]`,
		`login failed user="" - client=203.0.113.10 ua="audit-test/1.0" map[reason:unknown_user]`,
		`login failed user="alice" - client=203.0.113.10 ua="audit-test/1.0" map[reason:wrong_password]`,
		`login failed user="alice" - client=203.0.113.10 ua="audit-test/1.0" map[reason:wrong_password]`,
		`login throttled user="" - client=203.0.113.10 ua="audit-test/1.0" map[]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(rows) == len(want) {
		if rows[0].SessionID.String() != sid || rows[1].SessionID.String() != sid {
			t.Errorf("login and reuse name session %s and %s, want the token's %v", rows[0].SessionID, rows[1].SessionID, sid)
		}
	}

	// Never a secret, in any column.
	var all string
	if err := e.db.Pool().QueryRow(context.Background(),
		`select coalesce(string_agg(a::text, ' '), '') from auth.audit_log a`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{testPassword, "wrong password", "my secret password", first, second, accessValue(t, ok), accessValue(t, ok2)} {
		if strings.Contains(all, secret) {
			t.Errorf("the audit log holds the secret %q: %s", secret, all)
		}
	}
}

// TestAuditBufferFullDrops: when the buffer is full, an event is dropped
// and counted, and the request is answered as ever.
func TestAuditBufferFullDrops(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAuditBuffer(2))
	for i := range 5 {
		wantStatus(t, loginFrom(e, "203.0.113.1", testUser, fmt.Sprint("wrong ", i)), http.StatusUnauthorized)
	}
	if got := e.metric("authd_audit_dropped_total"); got != 3 {
		t.Errorf("got authd_audit_dropped_total %v, want 3", got)
	}
	if got := len(e.auditRows()); got != 2 {
		t.Errorf("got %d audit rows, want the 2 the buffer held", got)
	}
	// Room again once written.
	wantStatus(t, loginFrom(e, "203.0.113.1", testUser, testPassword), http.StatusNoContent)
	if got := len(e.auditRows()); got != 3 {
		t.Errorf("got %d audit rows, want 3", got)
	}
}

// TestAuditRunWritesQueuedOnStop: when its context ends, Run writes what
// is queued before it returns: serve's last events are not lost.
func TestAuditRunWritesQueuedOnStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 3 {
		wantStatus(t, loginFrom(e, "203.0.113.1", testUser, fmt.Sprint("wrong ", i)), http.StatusUnauthorized)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.api.Audit().Run(ctx) // returns at once: its context is done
	events, err := e.db.AuditLog(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Errorf("got %d audit rows after Run stopped, want 3", len(events))
	}
}

// TestAuditSelfService: a password change (refused, then done), a session
// ended by its user and a sign-up are in the audit log, with who and which
// session, and no password.
func TestAuditSelfService(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	access := accessValue(t, e.login())
	sid := verifyJWT(t, access)["sid"]
	const newPassword = "a brand new passphrase"
	wantStatus(t, e.post("/rpc/change_password", selfHeader(access), changeBody("not the password", newPassword)), http.StatusUnauthorized)
	r := e.post("/rpc/change_password", selfHeader(access), changeBody(testPassword, newPassword))
	wantStatus(t, r, http.StatusNoContent)
	third := accessValue(t, e.post("/rpc/login", jsonHeader(), loginBody(testUser, newPassword)))
	wantStatus(t, e.post("/rpc/revoke_session", selfHeader(accessValue(t, r)), `{"session_id":"`+verifyJWT(t, third)["sid"].(string)+`"}`), http.StatusNoContent)

	var got []string
	for _, ev := range e.auditRows() {
		if ev.Event == "login" {
			continue
		}
		got = append(got, ev.Event+" "+ev.Outcome+" "+ev.Username+" "+ev.SessionID.String())
		for _, v := range ev.Details {
			if strings.Contains(v, newPassword) || strings.Contains(v, testPassword) {
				t.Errorf("audit details hold a password: %v", ev.Details)
			}
		}
	}
	want := []string{
		"password_change failed " + testUser + " " + sid.(string),
		"password_change ok " + testUser + " " + sid.(string),
		"session_revoke ok " + testUser + " " + verifyJWT(t, third)["sid"].(string),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
