package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLoginsPerAddress: a client address that has used its share of
// logins (AUTHD_LOGINS_PER_IP) is answered 429 at the door, right
// password or not, in PostgREST's shape with the wait in Retry-After,
// counted as throttled and left out of the audit log (a flood would fill
// it); another address, named by a trusted gateway, still logs in.
func TestLoginsPerAddress(t *testing.T) {
	t.Parallel()
	// One every 10 s, one at once; the clock stands still, so the wait
	// is exactly 10 s however slow the machine.
	clock := newClock()
	e := newEnv(t, withLoginsPerIP(6), withClock(clock))
	from := func(ip string) http.Header {
		h := jsonHeader()
		h.Set("X-Forwarded-For", ip)
		return h
	}
	wantStatus(t, e.post("/rpc/login", from("203.0.113.5"), loginBody(testUser, testPassword)), http.StatusNoContent)
	for _, pass := range []string{testPassword, "wrong"} {
		r := e.post("/rpc/login", from("203.0.113.5"), loginBody(testUser, pass))
		wantStatus(t, r, http.StatusTooManyRequests)
		const body = `{"code":"PT429","details":null,"hint":null,"message":"Too many logins from this address; try again later"}`
		if r.body != body {
			t.Errorf("body %s, want %s", r.body, body)
		}
		if got := r.header.Get("Retry-After"); got != "10" {
			t.Errorf("Retry-After %q, want 10", got)
		}
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", got)
		}
	}
	wantStatus(t, e.post("/rpc/login", from("203.0.113.6"), loginBody(testUser, testPassword)), http.StatusNoContent)
	clock.advance(10 * time.Second) // the address's next login
	wantStatus(t, e.post("/rpc/login", from("203.0.113.5"), loginBody(testUser, testPassword)), http.StatusNoContent)

	m := do(t, nil, http.MethodGet, e.srv.URL+"/metrics", nil, "").body
	for _, want := range []string{
		`authd_logins_total{result="throttled"} 2`,
		`authd_logins_total{result="succeeded"} 3`,
		`authd_http_requests_total{method="POST",route="/rpc/login",status="429"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, ev := range e.auditRows() {
		if ev.Outcome != "ok" {
			t.Errorf("audit event %+v: the door's refusals are not audited", ev)
		}
	}
}
