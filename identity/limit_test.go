package identity

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestKeyedLimiter: n events per key per window, all at once at most; a
// key that used them waits for the bucket to refill, others do not wait;
// buckets idle for a whole window are forgotten. Timed by a synctest
// bubble's clock.
func TestKeyedLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newKeyedLimiter(3, time.Minute) // refills one per 20 s
		for i := range 3 {
			if d := l.wait("alice", time.Now()); d != 0 {
				t.Errorf("before failure %d: wait %s, want none", i+1, d)
			}
			if d := l.take("alice", time.Now()); d != 0 {
				t.Errorf("failure %d: wait %s, want none", i+1, d)
			}
		}
		d := l.wait("alice", time.Now())
		if d <= 0 || retryAfter(d) != 20 {
			t.Errorf("after 3 failures: wait %s (Retry-After %d), want 20 s", d, retryAfter(d))
		}
		if d := l.take("alice", time.Now()); retryAfter(d) != 20 {
			t.Errorf("a 4th failure: wait %s, want 20 s (it is not counted)", d)
		}
		if d := l.wait("bob", time.Now()); d != 0 {
			t.Errorf("another key: wait %s, want none", d)
		}
		time.Sleep(20*time.Second - time.Millisecond)
		if d := l.wait("alice", time.Now()); d <= 0 || d > time.Millisecond+time.Microsecond {
			t.Errorf("1 ms before the refill: wait %s, want 1 ms", d)
		}
		time.Sleep(time.Millisecond)
		if d := l.wait("alice", time.Now()); d != 0 {
			t.Errorf("one refilled: wait %s, want none", d)
		}
		if d := l.take("alice", time.Now()); d != 0 {
			t.Errorf("the refilled one: wait %s, want none", d)
		}
		if d := l.wait("alice", time.Now()); d <= 0 {
			t.Errorf("the refilled one used: wait %s, want some", d)
		}

		// A full window of idleness refills every bucket: forgotten.
		time.Sleep(time.Minute + time.Second)
		l.wait("carol", time.Now())
		l.mu.Lock()
		n := len(l.buckets)
		l.mu.Unlock()
		if n != 1 {
			t.Errorf("%d buckets after a minute of idleness, want carol's alone", n)
		}
		if d := l.wait("alice", time.Now()); d != 0 {
			t.Errorf("after a minute of idleness: wait %s, want none", d)
		}
	})
}

func TestKeyedLimiterWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newKeyedLimiter(2, 10*time.Second) // one per 5 s
		l.take("k", time.Now())
		l.take("k", time.Now())
		if d := l.wait("k", time.Now()); retryAfter(d) != 5 {
			t.Errorf("2 per 10 s used: wait %s, want 5 s", d)
		}
		time.Sleep(5 * time.Second)
		if d := l.wait("k", time.Now()); d != 0 {
			t.Errorf("after 5 s: wait %s, want none", d)
		}
	})
}

func TestKeyedLimiterOff(t *testing.T) {
	var l *keyedLimiter = newKeyedLimiter(0, time.Minute)
	for range 100 {
		if d := l.take("k", time.Now()); d != 0 {
			t.Fatalf("no limit: wait %s", d)
		}
	}
	if d := l.wait("k", time.Now()); d != 0 {
		t.Errorf("no limit: wait %s", d)
	}
}
