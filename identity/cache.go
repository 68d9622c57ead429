package identity

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Cache is the one cache type of authd's identity rules (verified tokens,
// API key rows and state, NATS permissions): a map bounded to max entries
// whose entries expire at a time given per entry, with single-flight
// loading, so a burst for one missing key waits for one load instead of
// each running its own.
//
// It is written here rather than taken from a library because the rules
// need two things the well-kept ones lack: an injected clock (the caches
// are tested in synctest bubbles and with a clock a test moves), and
// invalidation that also discards a load already in flight — a row read
// just before a change commits must not be stored after the change's
// NOTIFY dropped it. hashicorp/golang-lru's expirable LRU reads time.Now
// and runs a goroutine per cache that never stops.
//
// When full, an arbitrary entry makes room: every entry is cheap to load
// again, so recency bookkeeping would cost more on each hit than it saves.
type Cache[K comparable, V any] struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[K]cacheEntry[V]
	loads   map[K]*cacheLoad[V]
	// epoch counts invalidations (Delete, Clear); a load that started in
	// an earlier epoch returns its value but does not store it.
	epoch uint64
}

type cacheEntry[V any] struct {
	v       V
	expires time.Time
}

type cacheLoad[V any] struct {
	done chan struct{}
	v    V
	err  error
}

// NewCache returns an empty cache of at most max entries on the clock now
// (time.Now when nil).
func NewCache[K comparable, V any](max int, now func() time.Time) *Cache[K, V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[K, V]{max: max, now: now, entries: map[K]cacheEntry[V]{}, loads: map[K]*cacheLoad[V]{}}
}

// Get returns k's value if it is cached and has not expired.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.getLocked(k)
	if !ok {
		delete(c.entries, k) // expired: not worth its room
	}
	return v, ok
}

// getLocked returns k's value if it has not expired. An expired entry is
// left in place for Stale until a load replaces it.
func (c *Cache[K, V]) getLocked(k K) (V, bool) {
	e, ok := c.entries[k]
	if !ok || !c.now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Stale returns k's value even if it has expired, as long as the cache
// still holds it (a load that failed leaves it; Delete and Clear do not):
// for serving the last known value while its source is unreachable.
func (c *Cache[K, V]) Stale(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	return e.v, ok
}

// Put caches v for k until expires.
func (c *Cache[K, V]) Put(k K, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, v, expires)
}

func (c *Cache[K, V]) putLocked(k K, v V, expires time.Time) {
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = cacheEntry[V]{v: v, expires: expires}
}

// Load returns k's cached value, or loads it with load — once for all the
// callers that miss k at the same time — and caches what load returns
// until the time it returns. A failed load is not cached. A caller whose
// ctx ends stops waiting; a load whose own caller went away is retried by
// the next caller still waiting rather than failing it.
func (c *Cache[K, V]) Load(ctx context.Context, k K, load func(context.Context) (V, time.Time, error)) (V, error) {
	for {
		c.mu.Lock()
		if v, ok := c.getLocked(k); ok {
			c.mu.Unlock()
			return v, nil
		}
		if l, ok := c.loads[k]; ok {
			c.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				var zero V
				return zero, ctx.Err()
			}
			if l.err != nil && isCanceled(l.err) && ctx.Err() == nil {
				continue // the loader's caller left; load for ourselves
			}
			return l.v, l.err
		}
		l := &cacheLoad[V]{done: make(chan struct{})}
		c.loads[k] = l
		epoch := c.epoch
		c.mu.Unlock()

		v, expires, err := load(ctx)

		c.mu.Lock()
		delete(c.loads, k)
		if err == nil && epoch == c.epoch {
			c.putLocked(k, v, expires)
		}
		c.mu.Unlock()
		l.v, l.err = v, err
		close(l.done)
		return v, err
	}
}

func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Delete drops k, and keeps any load of it in flight from being stored.
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
	c.epoch++
}

// Clear drops every entry, and keeps any load in flight from being stored.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.epoch++
}

// Len is the number of entries held, expired ones not yet dropped included.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
