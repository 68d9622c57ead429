package identity

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// TestClientLimiter: n failures per client per window, all at once at
// most; a client that used them waits for the bucket to refill, others do
// not wait; a reservation cancelled (the login succeeded) gives its
// failure back. Timed by a synctest bubble's clock.
func TestClientLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newClientLimiter(3, time.Minute, nil) // refills one per 20 s
		if !l.clean("alice", time.Now()) {
			t.Error("a client never seen is not clean")
		}
		r, _ := l.reserve("alice", time.Now())
		r.CancelAt(time.Now()) // a success
		if !l.clean("alice", time.Now()) {
			t.Error("a client whose only attempt succeeded is not clean")
		}
		for i := range 3 {
			if _, d := l.reserve("alice", time.Now()); d != 0 {
				t.Errorf("failure %d: wait %s, want none", i+1, d)
			}
		}
		if l.clean("alice", time.Now()) {
			t.Error("a client that failed is clean")
		}
		_, d := l.reserve("alice", time.Now())
		if d <= 0 || retryAfter(d) != 20 {
			t.Errorf("after 3 failures: wait %s (Retry-After %d), want 20 s", d, retryAfter(d))
		}
		if _, d := l.reserve("alice", time.Now()); retryAfter(d) != 20 {
			t.Errorf("a refused attempt was counted: wait %s, want 20 s", d)
		}
		if _, d := l.reserve("bob", time.Now()); d != 0 {
			t.Errorf("another client: wait %s, want none", d)
		}
		time.Sleep(20 * time.Second)
		if _, d := l.reserve("alice", time.Now()); d != 0 {
			t.Errorf("one refilled: wait %s, want none", d)
		}
		if _, d := l.reserve("alice", time.Now()); d <= 0 {
			t.Errorf("the refilled one used: wait %s, want some", d)
		}
		time.Sleep(time.Minute)
		if !l.clean("alice", time.Now()) {
			t.Error("a minute after its last failure, the client is not clean")
		}
	})
}

// TestClientLimiterMemoryIsBounded: a flood from more addresses than the
// limiter keeps holds maxClients buckets, not one per address.
func TestClientLimiterMemoryIsBounded(t *testing.T) {
	l := newClientLimiter(3, time.Minute, nil)
	now := time.Now()
	for i := range maxClients + 5000 {
		l.reserve(strconv.Itoa(i), now)
	}
	if n := l.buckets.Len(); n != maxClients {
		t.Errorf("%d buckets, want %d", n, maxClients)
	}
}

func TestClientLimiterOff(t *testing.T) {
	l := newClientLimiter(0, time.Minute, nil)
	for range 100 {
		if _, d := l.reserve("k", time.Now()); d != 0 {
			t.Fatalf("no limit: wait %s", d)
		}
	}
	if l.clean("k", time.Now()) {
		t.Error("no limit, so nothing known of the client: clean")
	}
}

// TestBurstLimiter: 60 a minute with 10 at once: the eleventh waits a
// second, as wait says without counting one; the bucket is kept until it
// has refilled (10 s), no longer.
func TestBurstLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newBurstLimiter(60, time.Minute, 10, nil)
		if l.refill != 10*time.Second {
			t.Errorf("kept %s after an event, want the 10 s a full bucket takes to refill", l.refill)
		}
		if d := l.wait("a", time.Now()); d != 0 {
			t.Errorf("a client never seen: wait %s, want none", d)
		}
		for i := range 10 {
			if _, d := l.reserve("a", time.Now()); d != 0 {
				t.Fatalf("event %d of a burst of 10: wait %s, want none", i+1, d)
			}
		}
		for range 3 { // looking counts nothing
			if d := l.wait("a", time.Now()); d != time.Second {
				t.Errorf("after 10 at once: wait says %s, want 1s", d)
			}
		}
		if _, d := l.reserve("a", time.Now()); d != time.Second {
			t.Errorf("the eleventh: wait %s, want 1s", d)
		}
		if d := l.wait("b", time.Now()); d != 0 {
			t.Errorf("another client: wait %s, want none", d)
		}
		time.Sleep(time.Second)
		if d := l.wait("a", time.Now()); d != 0 {
			t.Errorf("a second later: wait %s, want none", d)
		}
		if _, d := l.reserve("a", time.Now()); d != 0 {
			t.Errorf("a second later: reserve waits %s, want none", d)
		}
		if d := l.wait("a", time.Now()); d != time.Second {
			t.Errorf("the refilled one used: wait %s, want 1s", d)
		}
		if newBurstLimiter(0, time.Minute, 10, nil).wait("a", time.Now()) != 0 {
			t.Error("no limit: a wait")
		}
	})
}
