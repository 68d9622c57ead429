package server_test

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"authd/identity"
)

// TestMetricsLabelsBounded: any client can send any method and path (a
// gateway passes them on), so a flood of made-up ones must add no series
// and hold no memory — every label comes from a fixed set. Before, the
// method was a label verbatim: this flood kept >10 MB and thousands of
// series for good.
func TestMetricsLabelsBounded(t *testing.T) {
	// Not parallel: the heap is measured, so no other test may run.
	e := newEnv(t)
	// A server of its own, logging nowhere: the request log (a line per
	// request, method included) would otherwise grow the heap measured.
	cfg := e.cfg
	cfg.Metrics = prometheus.NewRegistry()
	api, _ := mustNewAPI(t, cfg, identity.Config{BcryptCost: testCost}, e.db, e.tokens, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	client := srv.Client()

	rng := rand.New(rand.NewPCG(12, 13))
	// Methods and paths are random slices of random characters: drawing
	// every byte anew costs more than the requests under -race.
	methods := randomToken(rng, 64<<10, tokenChars)
	pathChars := randomToken(rng, 64<<10, "abcdefghijklmnopqrstuvwxyz0123456789-._~/")
	slice := func(s string, n int) string {
		i := rng.IntN(len(s) - n)
		return s[i : i+n]
	}
	// Routes, under every method but their own, and paths that are none.
	paths := []string{"/rpc/login", "/rpc/logout", "/auth/verify", "/healthz", "/readyz", "/.well-known/jwks.json", "/metrics", ""}
	send := func(path string, methodLen int) {
		t.Helper()
		if path == "" {
			path = "/x" + slice(pathChars, rng.IntN(1000))
		}
		req, err := http.NewRequest(slice(methods, methodLen), srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%.20s… %.40s: %v", req.Method, path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	series := func() (n, size int) {
		t.Helper()
		r := do(t, client, http.MethodGet, srv.URL+"/metrics", nil, "")
		wantStatus(t, r, http.StatusOK)
		for line := range strings.SplitSeq(r.body, "\n") {
			if strings.HasPrefix(line, "authd_http_requests_total{") || strings.HasPrefix(line, "authd_http_request_duration_seconds_count{") {
				n++
			}
		}
		return n, len(r.body)
	}
	heap := func() uint64 {
		// Twice: the first GC moves sync.Pool caches to their victim
		// cache, the second frees them.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}

	// A handful: each path once, under one odd method.
	for _, p := range paths {
		send(p, 16)
	}
	series() // so that the scrape is counted before, as it is after
	before, sizeBefore := series()
	heapBefore := heap()

	const flood = 2000
	for range flood {
		send(paths[rng.IntN(len(paths))], 4<<10+rng.IntN(8<<10)) // 4 to 12 kB
	}
	after, sizeAfter := series()
	heapAfter := heap()
	t.Logf("after %d odd requests: %d series (%d before), /metrics %d bytes (%d before), heap %+d bytes",
		flood, after, before, sizeAfter, sizeBefore, int64(heapAfter)-int64(heapBefore))
	if after != before {
		t.Errorf("HTTP series: %d after the flood, want %d as before it", after, before)
	}
	// The flood sent ~16 MB of methods; a label kept is kept for good.
	if grew := int64(heapAfter) - int64(heapBefore); grew > 2<<20 {
		t.Errorf("heap in use grew by %d bytes over the flood, want under 2 MB", grew)
	}
}

// tokenChars are the characters of an HTTP token (RFC 9110), which a
// method is.
const tokenChars = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomToken(rng *rand.Rand, n int, chars string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[rng.IntN(len(chars))]
	}
	return string(b)
}
