package server_test

import (
	"net/http"
	"testing"
	"time"
)

// TestLoginShedAtTheDoor: once the bcrypt slot is taken and the queue is
// full, a login is answered 503 at the door, before its body is read: the
// same PostgREST answer and Retry-After as any shed login, no cookie,
// counted in authd_logins_total{result="shed"}; a burst of them logs one
// sampled line (the server's clock stands still here), no request line
// and no audit event each.
func TestLoginShedAtTheDoor(t *testing.T) {
	t.Parallel()
	// One slot and one place in the queue, compares at cost 11 (150 ms,
	// over a second in a race build) against a millisecond for a probe.
	e := newEnv(t, withCost(11), withLoginQueue(1, 1), withLoginQueueWait(time.Minute),
		withRequestTimeout(2*time.Minute), withClock(newClock()))
	results := make(chan response, 64)
	send := func() {
		go func() { results <- e.post("/rpc/login", jsonHeader(), loginBody("nobody-here", "wrong password")) }()
	}
	var answers []response
	sent := 0
	waitFor(t, "a login waiting for the slot", func() bool {
		for len(results) > 0 {
			answers = append(answers, <-results)
		}
		for ; sent-len(answers) < 2; sent++ {
			send()
		}
		return e.metric("authd_bcrypt_queue_depth") >= 1
	})
	// Sent one at a time: the slot and the queue stay full throughout,
	// unless a compare ends meanwhile.
	const probes = 20
	for range probes {
		answers = append(answers, e.post("/rpc/login", jsonHeader(), loginBody("nobody-here", "wrong password")))
	}
	for len(answers) < sent+probes {
		answers = append(answers, <-results)
	}
	shed := 0
	for _, r := range answers {
		if r.status != http.StatusServiceUnavailable {
			continue
		}
		shed++
		wantBody(t, r, `{"code":"PT503","details":null,"hint":null,"message":"Too many logins at once; try again shortly"}`)
		if r.header.Get("Retry-After") != "1" || r.header.Get("Cache-Control") != "no-store" || len(r.cookies) != 0 {
			t.Errorf("shed answer headers %v, want Retry-After: 1, Cache-Control: no-store, no cookie", r.header)
		}
	}
	if got := e.metric(`authd_logins_total{result="shed"}`); got != float64(shed) {
		t.Errorf(`authd_logins_total{result="shed"} = %v, want the %d answered 503`, got, shed)
	}
	// Sheds that reached echo (a compare ended as they arrived) have their
	// request line and audit event; the rest were answered at the door.
	atGate := 0
	for _, l := range logEntries(t, e.logs, "request") {
		if l["path"] == "/rpc/login" && l["status"] == float64(http.StatusServiceUnavailable) {
			atGate++
		}
	}
	if shed-atGate < 1 {
		t.Fatalf("%d shed, all after routing: none at the door", shed)
	}
	lines := logEntries(t, e.logs, "logins shed: the bcrypt queue is full")
	if len(lines) != 1 || lines[0]["shed"] != 1.0 {
		t.Errorf("%d logins shed at the door logged %v, want one line for the first", shed-atGate, lines)
	}
	audited := 0
	for _, ev := range e.auditRows() {
		if ev.Event == "login" && ev.Outcome == "shed" {
			audited++
		}
	}
	if audited != atGate {
		t.Errorf("%d shed logins audited, want the %d shed after routing", audited, atGate)
	}
}

// TestBcryptSlotsExported: the slots while latency-sensitive requests are
// about, and while logins are alone, are in /metrics: by default one CPU
// fewer than the CPUs, and all of them.
func TestBcryptSlotsExported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	narrow, wide := e.metric("authd_bcrypt_slots"), e.metric("authd_bcrypt_slots_max")
	if narrow < 1 || wide < narrow || wide-narrow > 1 {
		t.Errorf("authd_bcrypt_slots %v, authd_bcrypt_slots_max %v: want CPUs-1 (at least 1) and CPUs", narrow, wide)
	}
}
