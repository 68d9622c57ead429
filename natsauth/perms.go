package natsauth

import (
	"context"
	"time"

	"authd/identity"
	"authd/store"
)

// maxRoles bounds the permissions cache; past it, an arbitrary role makes
// room. Roles come from tokens authd signed, so this is a guard, not a
// limit anyone meets.
const maxRoles = 10000

// permCache keeps each role's NATS permissions, so that a burst of
// connects — a deploy reconnecting every client — costs one query per
// role, not one per connection, and a token client costs no database work
// at all. A grant or revoke drops the role at once on every callout that
// listens for changes (ForgetRole, from the auth.nats_* triggers' NOTIFY);
// ttl (1 s by default) bounds how long a missed notification can leave
// old permissions in use. Connections already open keep the permissions
// they were given until they reconnect (at the latest when their user JWT
// expires).
type permCache struct {
	ttl   time.Duration
	now   func() time.Time
	roles *identity.Cache[string, store.NATSPermissions]
}

func newPermCache(ttl time.Duration, now func() time.Time) permCache {
	return permCache{ttl: ttl, now: now, roles: identity.NewCache[string, store.NATSPermissions](maxRoles, now)}
}

// get returns role's permissions, loading them when none are cached or the
// cached ones are older than ttl. A failed load is not cached.
func (c permCache) get(ctx context.Context, role string, load func(context.Context, string) (store.NATSPermissions, error)) (store.NATSPermissions, error) {
	return c.roles.Load(ctx, role, func(ctx context.Context) (store.NATSPermissions, time.Time, error) {
		loadedAt := c.now()
		p, err := load(ctx, role)
		return p, loadedAt.Add(c.ttl), err
	})
}

// ForgetRole drops role's cached permissions, so the next connection with
// that role reads them again: for a change notification.
func (s *Service) ForgetRole(role string) { s.perms.roles.Delete(role) }

// ForgetAll drops every role's cached permissions, for when change
// notifications may have been missed.
func (s *Service) ForgetAll() { s.perms.roles.Clear() }
