package identity

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"authd/store"
)

// ChangePassword is a user's own password change, from their session
// sessionID: the new password must pass the password policy (checked
// first, so a refused choice costs no bcrypt work and no throttle), and
// the current one every rule of a login (CheckPassword: throttling, the
// bcrypt gate, timing, a disabled user refused). Then the new hash is
// stored, every other session of the user revoked, and the session's
// refresh tokens replaced by the one with hash refreshHash, valid for ttl
// (store.ChangePassword). Errors are *Error: Invalid for a refused new
// password, Unauthorized for a wrong current one (or a user changed
// meanwhile), InvalidToken for a session ended meanwhile.
func (c *Core) ChangePassword(ctx context.Context, username string, sessionID uuid.UUID, current, next, client string,
	refreshHash []byte, ttl time.Duration) (store.Grant, error) {
	if len(next) > store.MaxPasswordBytes {
		return store.Grant{}, PasswordRefused(store.ErrPasswordTooLong)
	}
	if err := CheckNewPassword(next, username, c.cfg.PasswordMinLength); err != nil {
		return store.Grant{}, PasswordRefused(err)
	}
	u, err := c.CheckPassword(ctx, username, current, client)
	if err != nil {
		return store.Grant{}, err
	}
	hash, err := c.hashPassword(ctx, next)
	if err != nil {
		return store.Grant{}, err
	}
	g, err := c.db.ChangePassword(ctx, u, hash, sessionID, refreshHash, ttl)
	switch {
	case errors.Is(err, store.ErrUserChanged):
		return store.Grant{}, LoginRefusedChanged()
	case errors.Is(err, store.ErrSessionEnded):
		return store.Grant{}, errSessionEnded()
	case err != nil:
		return store.Grant{}, Failure(err)
	}
	c.ForgetUser(username) // this instance need not wait for the notification
	return g, nil
}
