package server_test

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withGrace(0), withLoginLimits(1, 0), withLoginQueue(3, 0))
	first := refreshValue(t, e.login())
	e.refreshWith(first)
	e.refreshWith(first) // reuse: detected, session revoked
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody(testUser, "wrong")), http.StatusUnauthorized)
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody(testUser, "wrong")), http.StatusTooManyRequests)
	do(t, nil, http.MethodGet, e.srv.URL+"/no/such/path", nil, "")

	r := do(t, nil, http.MethodGet, e.srv.URL+"/metrics", nil, "")
	wantStatus(t, r, http.StatusOK)
	for _, want := range []string{
		`authd_logins_total{result="succeeded"} 1`,
		`authd_logins_total{result="failed"} 1`,
		`authd_logins_total{result="throttled"} 1`,
		`authd_logins_total{result="shed"} 0`,
		`authd_refresh_reuse_detected_total 1`,
		`authd_http_requests_total{method="POST",route="/rpc/login",status="204"} 1`,
		`authd_http_requests_total{method="POST",route="/rpc/login",status="401"} 1`,
		`authd_http_requests_total{method="POST",route="/rpc/login",status="429"} 1`,
		`authd_http_requests_total{method="POST",route="/rpc/refresh_token",status="204"} 1`,
		`authd_http_requests_total{method="POST",route="/rpc/refresh_token",status="401"} 1`,
		`authd_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`authd_http_request_duration_seconds_bucket{route="/rpc/login",le=`,
		`authd_bcrypt_queue_depth 0`,
		`authd_bcrypt_slots 3`,
		`authd_bcrypt_wait_seconds_count 2`,
		`authd_db_pool_connections{state="idle"}`,
		`authd_db_pool_max_connections`,
		`go_goroutines`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Every series of authd's own is in docs/operating.md's table, where
	// an operator looks up what a name on a dashboard means.
	doc, err := os.ReadFile("../docs/operating.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (authd_\w+) `).FindAllStringSubmatch(r.body, -1) {
		if !strings.Contains(string(doc), "`"+m[1]) {
			t.Errorf("%s is served on /metrics but docs/operating.md does not describe it", m[1])
		}
	}
	// Labels never carry who or what.
	for _, secret := range []string{testUser, first, e.role} {
		if strings.Contains(r.body, secret) {
			t.Errorf("metrics contain %q", secret)
		}
	}
}

// TestScrapeKeepsSlotsWide: a scrape of /metrics on the API listener is
// not latency-sensitive: it does not narrow the bcrypt slots that logins
// alone may widen to. Were it, the scrape's own request, in flight while
// the gauge is read, would read them narrow (identity's tests check the
// gauge narrows for a latency-sensitive request).
func TestScrapeKeepsSlotsWide(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withBcryptCPUs(3))
	for range 3 {
		r := do(t, nil, http.MethodGet, e.srv.URL+"/metrics", nil, "")
		wantStatus(t, r, http.StatusOK)
		for _, want := range []string{"authd_bcrypt_slots 2\n", "authd_bcrypt_slots_max 3\n", "authd_bcrypt_slots_now 3\n"} {
			if !strings.Contains(r.body, want) {
				t.Fatalf("a scrape read %q: want %q (a scrape alone must not narrow the slots)", metricLine(r.body, "authd_bcrypt_slots_now"), want)
			}
		}
	}
}

// metricLine is the line of body that starts with name and a space.
func metricLine(body, name string) string {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}
