package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"authd/store"
)

// An access token is signed for its whole life, but what it stands for can
// end before it expires: a logout, a password or role change, a disabled
// or deleted user, a revoked session, a disabled or rotated API key. So
// /auth/verify and the NATS callout check, for every token, that what it
// stands for is still live — without a database round trip per request:
// each user's state is cached (userStates) for Config.CacheRecheck, and
// dropped at once when the database says it changed (ForgetUser, for the
// authd_session notifications). A verifier that only checks the signature
// (PostgREST itself) still accepts such a token until it expires.

// maxUsers bounds the user-state cache.
const maxUsers = 100_000

type userEntry struct {
	state    store.UserState
	found    bool
	loadedAt time.Time
}

// newcomerWindow is how long after a token's iat a cached state may not
// know the token's session (or user) yet: iat is in whole seconds, and
// the instance that issued it may run a second ahead. Login and sign-up
// commit the session before the token is issued, so a state read more
// than this after iat that lacks the session saw it revoked.
const newcomerWindow = 2 * time.Second

// ForgetUser drops what is cached about user name, so that their next
// token is judged on a fresh read: for a change notification.
func (c *Core) ForgetUser(name string) { c.users.Delete(name) }

// userState is name's state, cached.
func (c *Core) userState(ctx context.Context, name string) (userEntry, error) {
	now := c.cfg.Now()
	return c.users.Load(ctx, name, func(ctx context.Context) (userEntry, time.Time, error) {
		s, err := c.db.UserState(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return userEntry{loadedAt: now}, now.Add(c.cfg.CacheRecheck), nil
		}
		return userEntry{state: s, found: err == nil, loadedAt: now}, now.Add(c.cfg.CacheRecheck), err
	})
}

// apiKeyRow is key id's row, cached (keyCache.rows).
func (c *Core) apiKeyRow(ctx context.Context, id string) (keyRow, error) {
	now := c.cfg.Now()
	return c.keys.rows.Load(ctx, id, func(ctx context.Context) (keyRow, time.Time, error) {
		k, err := c.db.APIKey(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return keyRow{}, now.Add(c.cfg.CacheRecheck), nil
		}
		return keyRow{key: k, found: true}, now.Add(c.cfg.CacheRecheck), err
	})
}

// keyTokenSession is the sid of the JWTs minted for API key k: it names
// the key's current secret (a digest of its hash, which reveals nothing of
// the secret), so that rotating the key ends its minted tokens.
func keyTokenSession(k store.APIKey) string {
	d := sha256.Sum256(k.SecretHash)
	return "apikey-" + hex.EncodeToString(d[:8])
}

// errSessionEnded refuses a token whose session, user or key has ended.
// One message for every cause: the holder of a stolen token learns nothing
// from it about the account.
func errSessionEnded() *Error {
	return invalidToken("PGRST303", "JWT session has ended", nil)
}

// checkLive refuses a verified token that no longer stands for anything
// live. Tokens for no user (a role alone) have nothing to check.
func (c *Core) checkLive(ctx context.Context, v verified) error {
	if id, ok := strings.CutPrefix(v.user, "apikey:"); ok {
		return c.checkKeyLive(ctx, id, v)
	}
	if v.user == "" {
		return nil
	}
	e, err := c.userState(ctx, v.user)
	if err == nil && e.knowsNot(v) && e.loadedAt.Before(time.Unix(v.issued, 0).Add(newcomerWindow)) {
		// Read before the token's session (or user) may have existed:
		// a login since, not a revocation. Read again.
		c.users.Delete(v.user)
		e, err = c.userState(ctx, v.user)
	}
	if dbDown(err) {
		// While the database is down nothing can be revoked, so the last
		// state known (or, with none, the signature alone) stands: a
		// gateway keeps admitting valid tokens through an outage, as it
		// did before liveness was checked.
		stale, ok := c.users.Stale(v.user)
		if !ok {
			return nil
		}
		e, err = stale, nil
	}
	if err != nil {
		return Failure(err)
	}
	s := e.state
	switch {
	case e.knowsNot(v), s.DisabledAt != nil, s.Role != v.role:
		return errSessionEnded()
	case !s.RoleExists:
		return RoleMissing(s.Role)
	case s.RoleRefusal != "":
		return RolePrivileged(s.Role, s.RoleRefusal)
	}
	return nil
}

// knowsNot reports whether e lacks the user or the session v names.
func (e userEntry) knowsNot(v verified) bool {
	return !e.found || v.sid != "" && !slices.Contains(e.state.LiveSessions, v.sid)
}

// checkKeyLive refuses a JWT minted for API key id once the key is
// deleted, disabled, expired, rotated or re-roled.
func (c *Core) checkKeyLive(ctx context.Context, id string, v verified) error {
	row, err := c.apiKeyRow(ctx, id)
	if dbDown(err) { // as for a user's token, above
		stale, ok := c.keys.rows.Stale(id)
		if !ok {
			return nil
		}
		row, err = stale, nil
	}
	if err != nil {
		return Failure(err)
	}
	k := row.key
	switch {
	case !row.found, !k.Enabled, k.Role != v.role,
		k.ExpiresAt != nil && !c.cfg.Now().Before(*k.ExpiresAt),
		subtle.ConstantTimeCompare([]byte(keyTokenSession(k)), []byte(v.sid)) != 1:
		return errSessionEnded()
	case !k.RoleExists:
		return RoleMissing(k.Role)
	case k.RoleRefusal != "":
		return RolePrivileged(k.Role, k.RoleRefusal)
	}
	return nil
}

// dbDown reports whether err says the database cannot answer now.
func dbDown(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrTimeout)
}
