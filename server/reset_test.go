package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/identity"
	"authd/server"
	"authd/store"
)

func withResetsPerIP(n int) option {
	return func(_ *server.Config, ic *identity.Config, _ *envOpts) { ic.ResetsPerIP = n }
}

// resetListener LISTENs on the reset channel as an app's mail worker would.
func resetListener(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), "listen "+store.ResetChannel); err != nil {
		t.Fatal(err)
	}
	return conn
}

type resetNotice struct {
	User      string    `json:"user"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func nextNotice(t *testing.T, conn *pgx.Conn) resetNotice {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out resetNotice
	if err := json.Unmarshal([]byte(n.Payload), &out); err != nil {
		t.Fatalf("payload %q: %v", n.Payload, err)
	}
	return out
}

func (e *env) requestReset(user string) response {
	e.t.Helper()
	return e.post("/rpc/request_password_reset", jsonHeader(), `{"user_": "`+user+`"}`)
}

func (e *env) resetPassword(tok, pass string) response {
	e.t.Helper()
	return e.post("/rpc/reset_password", jsonHeader(), `{"token": "`+tok+`", "new_pass": "`+pass+`"}`)
}

const resetPass = "a brand new passphrase"

// TestPasswordReset: a request answers 204 for a user and for nobody;
// the worker hears of the user's token only, which sets the password
// once, ending every session; then the token is spent (401).
func TestPasswordReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old := refreshValue(t, e.login())
	l := resetListener(t, e.url)

	if r := e.requestReset("nobody-here"); r.status != http.StatusNoContent || r.body != "" {
		t.Fatalf("unknown user: %d %s, want 204", r.status, r.body)
	}
	if r := e.requestReset(testUser); r.status != http.StatusNoContent {
		t.Fatalf("user: %d %s, want 204", r.status, r.body)
	}
	// Notifications arrive in commit order: the first is the user's.
	n := nextNotice(t, l)
	if n.User != testUser || n.Token == "" || time.Until(n.ExpiresAt) < 20*time.Minute || time.Until(n.ExpiresAt) > 31*time.Minute {
		t.Fatalf("notification %+v, want %s's token for 30 minutes", n, testUser)
	}
	if got := e.count(`select count(*) from auth.password_reset where token_hash = sha256(convert_to($1, 'UTF8'))`, n.Token); got != 1 {
		t.Fatalf("%d rows hold the token's hash, want 1", got)
	}
	if got := e.count(`select count(*) from auth.password_reset where token_hash = convert_to($1, 'UTF8')`, n.Token); got != 0 {
		t.Fatal("the plain token is stored")
	}

	if r := e.resetPassword(n.Token, resetPass); r.status != http.StatusNoContent {
		t.Fatalf("reset: %d %s, want 204", r.status, r.body)
	}
	if r := e.refreshWith(old); r.status != http.StatusUnauthorized {
		t.Fatalf("refresh of a session from before the reset: %d %s, want 401", r.status, r.body)
	}
	if r := e.post("/rpc/login", jsonHeader(), loginBody(testUser, resetPass)); r.status != http.StatusNoContent {
		t.Fatalf("login with the new password: %d %s", r.status, r.body)
	}
	r := e.resetPassword(n.Token, "yet another passphrase")
	wantReset401(t, r)

	e.api.Audit().Flush(context.Background())
	if got := e.count(`select count(*) from auth.audit_log where event = 'password_reset_requested' and outcome = 'ok'`); got != 2 {
		t.Errorf("%d password_reset_requested events, want 2", got)
	}
	if got := e.count(`select count(*) from auth.audit_log where event = 'password_reset_requested' and username = $1`, testUser); got != 1 {
		t.Errorf("%d password_reset_requested events name %s, want 1", got, testUser)
	}
	if got := e.count(`select count(*) from auth.audit_log where event = 'password_reset' and outcome = 'ok' and username = $1`, testUser); got != 1 {
		t.Errorf("%d password_reset ok events, want 1", got)
	}
	if got := e.count(`select count(*) from auth.audit_log where details::text like '%' || $1 || '%'`, n.Token); got != 0 {
		t.Error("the token is in the audit log")
	}
}

func wantReset401(t *testing.T, r response) {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("%d %q: %v", r.status, r.body, err)
	}
	if r.status != http.StatusUnauthorized || body["code"] != "PT401" || body["message"] != "Invalid or expired reset token" {
		t.Fatalf("got %d %s, want 401 PT401 Invalid or expired reset token", r.status, r.body)
	}
}

// TestPasswordResetTokenDies: an expired token and one replaced by a
// newer request are refused, and the password stays.
func TestPasswordResetTokenDies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := resetListener(t, e.url)
	e.requestReset(testUser)
	first := nextNotice(t, l)
	e.requestReset(testUser)
	second := nextNotice(t, l)
	wantReset401(t, e.resetPassword(first.Token, resetPass))

	e.exec(`update auth.password_reset set expires_at = now() - interval '1 second'`)
	wantReset401(t, e.resetPassword(second.Token, resetPass))
	wantReset401(t, e.resetPassword("not-a-token", resetPass))
	e.login() // the old password still works
}

// TestPasswordResetThrottled: past AUTHD_RESET_PER_IP requests from one
// client, 429; another client is not affected.
func TestPasswordResetThrottled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withResetsPerIP(2))
	from := func(ip string) response {
		h := jsonHeader()
		h.Set("X-Forwarded-For", ip)
		return e.post("/rpc/request_password_reset", h, `{"user_": "nobody-here"}`)
	}
	for range 2 {
		if r := from("203.0.113.7"); r.status != http.StatusNoContent {
			t.Fatalf("%d %s, want 204", r.status, r.body)
		}
	}
	if r := from("203.0.113.7"); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("third: %d %s, want 429 with Retry-After", r.status, r.body)
	}
	if r := from("203.0.113.8"); r.status != http.StatusNoContent {
		t.Fatalf("other client: %d %s, want 204", r.status, r.body)
	}
	e.api.Audit().Flush(context.Background())
	if got := e.count(`select count(*) from auth.audit_log where event = 'password_reset_requested' and outcome = 'throttled'`); got != 1 {
		t.Errorf("%d throttled password_reset_requested events, want 1", got)
	}
}

// TestPasswordResetPolicy: a password the policy refuses is 400 and does
// not spend the token.
func TestPasswordResetPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := resetListener(t, e.url)
	e.requestReset(testUser)
	n := nextNotice(t, l)
	if r := e.resetPassword(n.Token, "short"); r.status != http.StatusBadRequest {
		t.Fatalf("short password: %d %s, want 400", r.status, r.body)
	}
	if r := e.resetPassword(n.Token, resetPass); r.status != http.StatusNoContent {
		t.Fatalf("then: %d %s, want 204", r.status, r.body)
	}
}
