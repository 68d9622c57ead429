package server_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"authd/server"
)

// TestHead: probes, load balancers and caches ask the health and discovery
// endpoints with HEAD, and get GET's status and headers without the body.
func TestHead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withIssuer("https://auth.example.com"))
	starting := httptest.NewServer(server.Starting(slog.New(slog.DiscardHandler)))
	t.Cleanup(starting.Close)
	for _, tc := range []struct {
		base, path string
		status     int
	}{
		// The API.
		{e.srv.URL, "/healthz", http.StatusOK},
		{e.srv.URL, "/auth/health", http.StatusOK},
		{e.srv.URL, "/readyz", http.StatusOK},
		{e.srv.URL, "/.well-known/jwks.json", http.StatusOK},
		{e.srv.URL, "/.well-known/openid-configuration", http.StatusOK},
		{e.srv.URL, "/metrics", http.StatusOK},
		// While authd waits for its database.
		{starting.URL, "/healthz", http.StatusOK},
		{starting.URL, "/auth/health", http.StatusOK},
		{starting.URL, "/readyz", http.StatusServiceUnavailable},
	} {
		name := "api" + tc.path
		if tc.base == starting.URL {
			name = "starting" + name
		}
		t.Run(name, func(t *testing.T) {
			get := do(t, nil, http.MethodGet, tc.base+tc.path, nil, "")
			head := do(t, nil, http.MethodHead, tc.base+tc.path, nil, "")
			wantStatus(t, get, tc.status)
			wantStatus(t, head, tc.status)
			if head.body != "" {
				t.Errorf("HEAD: got body %q, want none", head.body)
			}
			for _, h := range []string{"Content-Type", "Cache-Control", "Retry-After", "Content-Length"} {
				if h == "Content-Length" && tc.path == "/metrics" {
					continue // the scrape itself changes the next one
				}
				if got, want := head.header.Get(h), get.header.Get(h); got != want {
					t.Errorf("HEAD: got %s %q, want GET's %q", h, got, want)
				}
			}
		})
	}
}
