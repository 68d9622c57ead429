package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"authd/identity/notify"
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

// TestServeResetWebhook: serve with AUTHD_RESET_WEBHOOK_URL posts a
// user's reset link, signed with AUTHD_RESET_WEBHOOK_SECRET_FILE's key,
// off the request path; user reset-link builds its link on
// AUTHD_RESET_LINK_BASE too.
func TestServeResetWebhook(t *testing.T) {
	t.Parallel()
	key, err := notify.ParseWebhookSecret(testWebhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan map[string]any, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("webhook-signature") != notify.Sign(key, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body) {
			t.Errorf("webhook: bad signature")
		}
		var ev struct{ Data map[string]any }
		_ = json.Unmarshal(body, &ev)
		got <- ev.Data
	}))
	defer hook.Close()
	secretFile := filepath.Join(t.TempDir(), "hook-secret")
	if err := os.WriteFile(secretFile, []byte(testWebhookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := storetest.NewURL(t)
	role := storetest.NewRole(t)
	extra := map[string]string{
		"AUTHD_RESET_WEBHOOK_URL":         hook.URL,
		"AUTHD_RESET_WEBHOOK_SECRET_FILE": secretFile,
		"AUTHD_RESET_LINK_BASE":           "https://app.example",
		"AUTHD_JWT_ISS":                   "https://auth.example",
	}
	env := baseEnv(dbURL)
	maps.Copy(env, extra)
	mustRun(t, env, "alices-password\n", "user", "add", "alice", "--role", role)
	if link := mustRun(t, env, "", "user", "reset-link", "alice").stdout; !strings.HasPrefix(link, "https://app.example/reset?token=") {
		t.Errorf("reset-link printed %q, want a link on AUTHD_RESET_LINK_BASE", link)
	}
	srv := startServer(t, dbURL, extra)
	resp, err := http.Post(srv.base+"/rpc/request_password_reset", "application/json", strings.NewReader(`{"user_": "alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("request: %d, want 204", resp.StatusCode)
	}
	select {
	case d := <-got:
		if link, _ := d["link"].(string); d["user"] != "alice" || !strings.HasPrefix(link, "https://app.example/reset?token=") {
			t.Errorf("webhook data %v, want alice's link on https://app.example", d)
		}
	case <-time.After(time.Minute):
		t.Fatal("no webhook within a minute")
	}
}
