package identity

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyedLimiter is a token bucket per key (a username, an IP, an API key),
// from golang.org/x/time/rate. Buckets idle for longer than it takes them to
// refill are forgotten, so memory stays bounded by the keys active in the
// last few minutes.
type keyedLimiter struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// newKeyedLimiter allows n events per key per window, all of them at once
// at most. n <= 0 means no limit (nil limiter).
func newKeyedLimiter(n int, window time.Duration) *keyedLimiter {
	if n <= 0 {
		return nil
	}
	return &keyedLimiter{
		limit:   rate.Limit(float64(n) / window.Seconds()),
		burst:   n,
		buckets: map[string]*bucket{},
	}
}

// wait returns how long key must wait before its next event is allowed;
// 0 means now. It does not use the event up (see take).
func (k *keyedLimiter) wait(key string, now time.Time) time.Duration {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.untilNextLocked(k.bucketLocked(key, now), now)
}

// take uses one event of key's allowance and reports how long to wait if
// there was none left.
func (k *keyedLimiter) take(key string, now time.Time) time.Duration {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.bucketLocked(key, now)
	if b.lim.AllowN(now, 1) {
		return 0
	}
	return k.untilNextLocked(b, now)
}

// untilNextLocked is how long until b holds a whole event again; 0 if it
// does now.
func (k *keyedLimiter) untilNextLocked(b *bucket, now time.Time) time.Duration {
	tokens := b.lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(k.limit) * float64(time.Second))
}

func (k *keyedLimiter) bucketLocked(key string, now time.Time) *bucket {
	k.sweepLocked(now)
	b, ok := k.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(k.limit, k.burst)}
		k.buckets[key] = b
	}
	b.seen = now
	return b
}

// sweepLocked drops buckets that have been idle long enough to be full
// again: forgetting them changes nothing.
func (k *keyedLimiter) sweepLocked(now time.Time) {
	refill := time.Duration(float64(k.burst) / float64(k.limit) * float64(time.Second))
	if now.Sub(k.lastSweep) < refill {
		return
	}
	k.lastSweep = now
	for key, b := range k.buckets {
		if now.Sub(b.seen) > refill {
			delete(k.buckets, key)
		}
	}
}

// retryAfter is a Retry-After value: whole seconds, at least 1.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
