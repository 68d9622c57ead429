package identity

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"authd/store"
	"authd/token"
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
// meanwhile), InvalidToken for a session ended meanwhile, Forbidden for a
// user with a second factor whose session (aal, its access token's) has
// not presented it.
func (c *Core) ChangePassword(ctx context.Context, username string, sessionID uuid.UUID, aal, current, next, client string,
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
	// The password alone must not replace itself for a user who has a
	// second factor: whoever stole it would lock the owner out.
	if u.MFA && aal != token.AAL2 {
		return store.Grant{}, errAAL2Required()
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

// errAAL2Required refuses an account change to a session that has not
// presented the user's second factor.
func errAAL2Required() *Error {
	return &Error{Kind: Forbidden, Code: "PT403",
		Message: "This needs a session that presented the second factor",
		Hint:    ptr("Verify a code with /rpc/mfa_verify first")}
}
