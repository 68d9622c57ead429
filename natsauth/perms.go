package natsauth

import (
	"context"
	"sync"
	"time"

	"authd/store"
)

// permCache keeps each role's NATS permissions for ttl (1 s by default),
// so a burst of connects — a deploy reconnecting every client — costs one
// query per role per second instead of one per connection, and a token
// client costs no database work at all within that second. The price: a
// grant or revoke applies to connections made up to ttl after it commits.
// Connections already open keep the permissions they were given until
// they reconnect (at the latest when their user JWT expires).
type permCache struct {
	ttl     time.Duration
	now     func() time.Time
	mu      sync.Mutex
	entries map[string]*permEntry
}

// maxRoles bounds the cache; past it, it starts over. Roles come from
// tokens authd signed, so this is a guard, not a limit anyone meets.
const maxRoles = 10000

type permEntry struct {
	// mu is held while loading, so that a burst for one role waits for
	// one query rather than each running its own.
	mu       sync.Mutex
	perms    store.NATSPermissions
	loadedAt time.Time
}

func (c *permCache) entry(role string) *permEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxRoles {
		c.entries = map[string]*permEntry{}
	}
	e, ok := c.entries[role]
	if !ok {
		e = &permEntry{}
		c.entries[role] = e
	}
	return e
}

// get returns role's permissions, loading them when the cached ones are
// older than ttl. A failed load is not cached.
func (c *permCache) get(ctx context.Context, role string, load func(context.Context, string) (store.NATSPermissions, error)) (store.NATSPermissions, error) {
	e := c.entry(role)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loadedAt.IsZero() && c.now().Sub(e.loadedAt) < c.ttl {
		return e.perms, nil
	}
	p, err := load(ctx, role)
	if err != nil {
		return store.NATSPermissions{}, err
	}
	e.perms, e.loadedAt = p, c.now()
	return p, nil
}
