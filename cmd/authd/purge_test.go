package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"authd/store"
	"authd/store/storetest"
)

// TestPurge: the purge job deletes revoked and expired sessions, the
// expired tokens of live ones and spent or expired reset tokens, keeps
// what is live, counts what it deleted
// in authd_purged_total{kind}, and stops when its context ends.
func TestPurge(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	tok := storetest.TokenHash
	start := func(h string) store.Grant { return storetest.StartSession(t, db, "alice", h) }
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool().Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func(table string) int {
		t.Helper()
		var n int
		if err := db.Pool().QueryRow(ctx, "select count(*) from "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	revoked := start("revoked")
	if _, err := db.RevokeSessions(ctx, revoked.SessionID, tok("revoked")); err != nil {
		t.Fatal(err)
	}
	exec(`update auth.session set revoked_at = now() - interval '2 hours' where revoked_at is not null`)
	expired := start("expired")
	exec(`update auth.refresh_token set expires_at = now() - interval '1 minute' where session_id = $1`, expired.SessionID)
	// The live session: a spent parent that has expired, and a live child.
	start("live")
	if _, err := db.Refresh(ctx, tok("live"), tok("live-next"), time.Hour, time.Minute); err != nil {
		t.Fatal(err)
	}
	exec(`update auth.refresh_token set expires_at = now() - interval '1 minute' where token_hash = $1`, tok("live"))
	// Reset tokens: one spent, one expired, one live.
	exec(`insert into auth.password_reset (token_hash, username, expires_at, used_at) values
	      (sha256('spent'), 'alice', now() + interval '1 hour', now()),
	      (sha256('expired'), 'alice', now() - interval '1 second', null),
	      (sha256('live'), 'alice', now() + interval '1 hour', null)`)

	reg := prometheus.NewRegistry()
	job := newPurgeJob(db, 0, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { job.run(jctx, time.Hour); close(done) }()
	metrics := func() string {
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Body.String()
	}
	wantMetrics := []string{`authd_purged_total{kind="session"} 2`, `authd_purged_total{kind="refresh_token"} 1`, `authd_purged_total{kind="password_reset"} 2`}
	counted := func() bool {
		m := metrics()
		for _, want := range wantMetrics {
			if !strings.Contains(m, want) {
				return false
			}
		}
		return true
	}
	// Wait for the first purge to be done and counted: the rows go before
	// the counter moves, so watching the tables alone and then cancelling
	// could stop the job between the two (as CI once saw).
	deadline := time.Now().Add(time.Minute) // a bound on a hang: the first purge runs at once
	for count("auth.session") != 1 || count("auth.refresh_token") != 1 || count("auth.password_reset") != 1 || !counted() {
		if time.Now().After(deadline) {
			t.Fatalf("purge left %d sessions, %d tokens, %d reset tokens (want 1, 1 and 1); metrics want %q, got:\n%s",
				count("auth.session"), count("auth.refresh_token"), count("auth.password_reset"), wantMetrics, metrics())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	// The live child survives its purged parent and still refreshes.
	if _, err := db.Refresh(ctx, tok("live-next"), tok("live-last"), time.Hour, time.Minute); err != nil {
		t.Errorf("refresh with the live child after the purge: %v", err)
	}
	var live int
	if err := db.Pool().QueryRow(ctx, `select count(*) from auth.password_reset where token_hash = sha256('live')`).Scan(&live); err != nil || live != 1 {
		t.Errorf("the live reset token: %d rows (%v), want 1", live, err)
	}
	// Nothing is counted twice, and the job stopped with its context.
	if !counted() {
		t.Errorf("after the job stopped, metrics want %q, got:\n%s", wantMetrics, metrics())
	}
}

// TestServeExportsPurged: serve's /metrics has authd_purged_total{kind}
// (nats-callout's, which does not purge, has not: TestNATSCallout).
func TestServeExportsPurged(t *testing.T) {
	t.Parallel()
	srv := startServer(t, storetest.NewURL(t), nil) // returns once serve is ready
	resp, err := http.Get(srv.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: got %d %s, want 200", resp.StatusCode, body)
	}
	for _, want := range []string{`authd_purged_total{kind="session"} `, `authd_purged_total{kind="refresh_token"} `} {
		if !strings.Contains(string(body), want) {
			t.Errorf("serve's /metrics lacks %s", want)
		}
	}
}

// TestPurgeAuditRetention: the purge job deletes audit log rows older
// than AUTHD_AUDIT_RETENTION and keeps the younger; with 0 it keeps all.
func TestPurgeAuditRetention(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	now := time.Now()
	var events []store.AuditEvent
	for _, age := range []time.Duration{100 * 24 * time.Hour, 91 * 24 * time.Hour, 89 * 24 * time.Hour, time.Hour} {
		events = append(events, store.AuditEvent{At: now.Add(-age), Event: "login", Outcome: "ok", Username: "alice"})
	}
	if err := db.WriteAudit(ctx, events); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		var n int
		if err := db.Pool().QueryRow(ctx, "select count(*) from auth.audit_log").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	newPurgeJob(db, 0, prometheus.NewRegistry(), discard).once(ctx)
	if got := count(); got != 4 {
		t.Errorf("retention 0: %d rows left, want all 4", got)
	}
	reg := prometheus.NewRegistry()
	newPurgeJob(db, 90*24*time.Hour, reg, discard).once(ctx)
	if got := count(); got != 2 {
		t.Errorf("retention 90d: %d rows left, want the 2 younger", got)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `authd_purged_total{kind="audit_log"} 2`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %s; got:\n%s", want, rec.Body.String())
	}
}

// TestPurgeCountsBeforeFailure: PurgeBatch's statements commit one by one,
// so when a later one fails the rows the earlier ones deleted are still
// counted in authd_purged_total, and the failure is logged once.
func TestPurgeCountsBeforeFailure(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	g := storetest.StartSession(t, db, "alice", "dead")
	if _, err := db.Pool().Exec(ctx, `update auth.refresh_token set expires_at = now() - interval '1 minute' where session_id = $1`, g.SessionID); err != nil {
		t.Fatal(err)
	}
	// The throttle purge, the last statement, now fails.
	if _, err := db.Pool().Exec(ctx, `drop table auth.login_throttle`); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var logs strings.Builder
	job := newPurgeJob(db, 0, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	job.once(ctx)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `authd_purged_total{kind="session"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %s; got:\n%s", want, rec.Body.String())
	}
	if n := strings.Count(logs.String(), "purge failed"); n != 1 {
		t.Errorf("logged %d purge failures, want 1:\n%s", n, logs.String())
	}
}
