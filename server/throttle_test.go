package server_test

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

func loginFrom(e *env, ip, user, pass string) response {
	e.t.Helper()
	h := jsonHeader()
	h.Set("X-Forwarded-For", ip)
	return e.post("/rpc/login", h, loginBody(user, pass))
}

func wantThrottled(t *testing.T, r response) {
	t.Helper()
	wantStatus(t, r, http.StatusTooManyRequests)
	wantBody(t, r, `{"code":"PT429","details":null,"hint":null,"message":"Too many failed logins; try again later"}`)
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 60 {
		t.Errorf("got Retry-After %q, want 1 to 60 seconds", r.header.Get("Retry-After"))
	}
	if len(r.cookies) != 0 {
		t.Errorf("throttled login set cookies %q", r.setCookies())
	}
}

func TestLoginThrottledPerUsername(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLoginLimits(3, 0))
	e.addUser("other-user", "other-password", e.role)
	// Successes cost nothing.
	for range 5 {
		wantStatus(t, loginFrom(e, "203.0.113.1", testUser, testPassword), http.StatusNoContent)
	}
	// Three failures from three addresses: the username is what counts.
	for i, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		r := loginFrom(e, ip, testUser, "guess-"+strconv.Itoa(i))
		wantStatus(t, r, http.StatusUnauthorized)
	}
	wantThrottled(t, loginFrom(e, "203.0.113.4", testUser, "guess-4"))
	// Even the right password waits: the attacker cannot learn it now.
	wantThrottled(t, loginFrom(e, "203.0.113.1", testUser, testPassword))
	// Another account is not affected.
	wantStatus(t, loginFrom(e, "203.0.113.1", "other-user", "other-password"), http.StatusNoContent)
}

func TestLoginThrottledPerAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLoginLimits(0, 4))
	for i := range 4 {
		wantStatus(t, loginFrom(e, "198.51.100.7", "user-"+strconv.Itoa(i), "x"), http.StatusUnauthorized)
	}
	wantThrottled(t, loginFrom(e, "198.51.100.7", "user-9", "x"))
	wantThrottled(t, loginFrom(e, "198.51.100.7", testUser, testPassword))
	// Another client, and the same user from it, are fine.
	wantStatus(t, loginFrom(e, "198.51.100.8", testUser, testPassword), http.StatusNoContent)
}

// TestLoginThrottleHoldsUnderConcurrency: a burst of guesses sent at once
// gets exactly the limit's worth of password checks; the rest are 429
// before any bcrypt work, and the right password then waits too.
func TestLoginThrottleHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	// A bcrypt queue with room for the whole burst: each login keeps its
	// place at the gate from the door, while its throttle is checked, so
	// with less room the excess would be shed at the door (503) before
	// the throttle is asked. Here the throttle alone decides.
	e := newEnv(t, withLoginLimits(10, 0), withLoginQueue(1, 64))
	const burst = 40
	statuses := make(chan int, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() { statuses <- loginFrom(e, "203.0.113.9", testUser, "guess-"+strconv.Itoa(i)).status })
	}
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	if got[http.StatusUnauthorized] != 10 || got[http.StatusTooManyRequests] != burst-10 {
		t.Errorf("answers to %d concurrent guesses: %v, want 10 × 401 and %d × 429", burst, got, burst-10)
	}
	wantThrottled(t, loginFrom(e, "203.0.113.9", testUser, testPassword))
}

// TestLoginThrottleIsSharedByInstances: failures counted by one authd
// instance count on another, so N instances do not give N times the limit.
func TestLoginThrottleIsSharedByInstances(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLoginLimits(4, 0))
	other, _, _, _, _ := e.newServer(withLoginLimits(4, 0))
	for i := range 4 {
		base := e.srv.URL
		if i%2 == 1 {
			base = other.URL
		}
		h := jsonHeader()
		wantStatus(t, do(t, http.DefaultClient, http.MethodPost, base+"/rpc/login", h, loginBody(testUser, "guess")), http.StatusUnauthorized)
	}
	for _, base := range []string{e.srv.URL, other.URL} {
		wantThrottled(t, do(t, http.DefaultClient, http.MethodPost, base+"/rpc/login", jsonHeader(), loginBody(testUser, "guess")))
	}
}

// TestLoginLockoutIsFairAndDrains: a guesser who used up a username's
// failures from its own addresses is refused even with the right
// password, while the owner, from an address that has not failed, still
// logs in; fresh addresses may guess only up to twice the limit; and the
// lockout drains one attempt per window/limit.
func TestLoginLockoutIsFairAndDrains(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withLoginLimits(3, 100), withClock(clk))
	for i := range 3 {
		wantStatus(t, loginFrom(e, "198.51.100.66", testUser, "guess-"+strconv.Itoa(i)), http.StatusUnauthorized)
	}
	wantThrottled(t, loginFrom(e, "198.51.100.66", testUser, testPassword))
	wantStatus(t, loginFrom(e, "192.0.2.10", testUser, testPassword), http.StatusNoContent)

	// Guesses from fresh addresses: three more, then the username is shut
	// for everyone.
	for i := range 3 {
		wantStatus(t, loginFrom(e, "198.51.100."+strconv.Itoa(100+i), testUser, "guess"), http.StatusUnauthorized)
	}
	wantThrottled(t, loginFrom(e, "198.51.100.200", testUser, "guess"))
	wantThrottled(t, loginFrom(e, "192.0.2.11", testUser, testPassword))

	// 3 a minute drain one every 20 s.
	clk.advance(20 * time.Second)
	wantStatus(t, loginFrom(e, "192.0.2.12", testUser, testPassword), http.StatusNoContent)
}
