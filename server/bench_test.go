package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkRefresh rotates one session's refresh token through the
// handler, without a network hop: authd's own CPU per refresh (the rest
// of each iteration is the database round trip). Profile it with
//
//	go test -run '^$' -bench Refresh -cpuprofile cpu.out ./server
func BenchmarkRefresh(b *testing.B) {
	e := newEnv(b)
	tok := refreshValue(b, e.login())
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/rpc/refresh_token", strings.NewReader(""))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cookie", "refresh_token="+tok)
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("refresh: got %d (%s)", rec.Code, rec.Body)
		}
		tok = refreshValue(b, response{header: rec.Result().Header, cookies: rec.Result().Cookies()})
	}
}

// BenchmarkLogin logs one user in through the handler (bcrypt at cost
// 4, the tests' cost): authd's CPU and database round trips per login,
// with the audit writer running as serve runs it, so that its batches
// compete with the logins for the pool.
func BenchmarkLogin(b *testing.B) {
	e := newEnv(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.api.Audit().Run(ctx)
	body := loginBody(testUser, testPassword)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/rpc/login", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("login: got %d (%s)", rec.Code, rec.Body)
		}
	}
}

// BenchmarkVerify is GET /auth/verify with one Bearer token, as a gateway
// presents a user's token on every request: the verified-token cache's
// path.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b)
	access := accessValue(b, e.login())
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/auth/verify", nil)
		req.Header.Set("Authorization", "Bearer "+access)
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("verify: got %d (%s)", rec.Code, rec.Body)
		}
	}
}
