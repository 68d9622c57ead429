package identity

import (
	"context"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// clientLimiter is a token bucket of events (failed logins, sign-ups) per
// client address, in this process (golang.org/x/time/rate): n per window,
// all at once at most. A bucket lapses once it has had time to refill, so forgetting it
// changes no answer; the buckets are held in a bounded Cache, so a flood
// of addresses costs at most maxClients buckets, and nothing scans them.
type clientLimiter struct {
	limit   rate.Limit
	burst   int
	refill  time.Duration
	buckets *Cache[string, *rate.Limiter]
}

// maxClients bounds the client buckets: about 200 bytes each.
const maxClients = 100_000

// newClientLimiter allows n events per client per window, all at once at
// most; n <= 0 means no limit (nil limiter).
func newClientLimiter(n int, window time.Duration, now func() time.Time) *clientLimiter {
	return newBurstLimiter(n, window, n, now)
}

// newBurstLimiter allows n events per client per window, burst of them at
// once at most; n <= 0 means no limit (nil limiter).
func newBurstLimiter(n int, window time.Duration, burst int, now func() time.Time) *clientLimiter {
	if n <= 0 {
		return nil
	}
	burst = max(1, burst)
	return &clientLimiter{
		limit:   rate.Limit(float64(n) / window.Seconds()),
		burst:   burst,
		refill:  time.Duration(float64(window) * float64(burst) / float64(n)),
		buckets: NewCache[string, *rate.Limiter](maxClients, now),
	}
}

// clean reports whether client has no failure left to drain: it has not
// failed within the last window, as far as this process knows. Without a
// per-client limit nothing is known, and no client is clean.
func (l *clientLimiter) clean(client string, now time.Time) bool {
	if l == nil {
		return false
	}
	b, ok := l.buckets.Get(client)
	return !ok || b.TokensAt(now) >= float64(l.burst)
}

// reserve counts one failure for client in advance, before the password
// compare, so that a concurrent burst cannot pass a check made before any
// of its failures counted. It returns the reservation to cancel if the
// login succeeds, or how long to wait when client has none left.
func (l *clientLimiter) reserve(client string, now time.Time) (*rate.Reservation, time.Duration) {
	if l == nil {
		return nil, 0
	}
	b, _ := l.buckets.Load(context.Background(), client, func(context.Context) (*rate.Limiter, time.Time, error) {
		return rate.NewLimiter(l.limit, l.burst), now.Add(l.refill), nil
	})
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return nil, d
	}
	// Kept until it has had time to refill from this failure on.
	l.buckets.Put(client, b, now.Add(l.refill))
	return r, 0
}

// wait is how long client must wait before it has an event left, without
// counting one: 0 if it has one now.
func (l *clientLimiter) wait(client string, now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	b, ok := l.buckets.Get(client)
	if !ok {
		return 0
	}
	tokens := b.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
}

// retryAfter is a Retry-After value: whole seconds, at least 1.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
