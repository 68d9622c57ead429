package identity

import (
	"context"
	"errors"
	"time"

	"authd/identity/notify"
	"authd/store"
	"authd/token"
)

// DefaultResetsPerIP is how many password reset requests one client
// address may make per ResetWindow unless configured (AUTHD_RESET_PER_IP).
const DefaultResetsPerIP = 5

// DefaultResetsPerUser is how many password reset requests may name one
// user per ResetWindow, over every instance, unless configured
// (AUTHD_RESET_PER_USER).
const DefaultResetsPerUser = 3

// DefaultResetWindow is the period those requests are counted over.
const DefaultResetWindow = time.Hour

// DefaultResetTTL is how long a reset token lives unless configured
// (AUTHD_RESET_TTL).
const DefaultResetTTL = 30 * time.Minute

// ResetDeliverer hands reset links to the delivery hooks besides
// pg_notify (notify.Dispatcher: webhook, SMTP). Deliver must return at
// once: the request's answer may not wait for a delivery, or its time
// would tell that the user exists.
type ResetDeliverer interface {
	Deliver(notify.Reset)
}

// RequestPasswordReset issues a reset token for username, announces it on
// store.ResetChannel for the app's mail worker and queues it for
// ResetDelivery. The answer is the same whether or not the user exists,
// and so is the work (the same statements run): only Throttled, after
// ResetsPerIP requests per ResetWindow from client, or a failure. Past
// ResetsPerUser requests naming username per ResetWindow (shared by every
// instance, and counted for unknown names alike) no token is issued, with
// the same answer. issued says whether a token was made, for the audit
// log only.
func (c *Core) RequestPasswordReset(ctx context.Context, username, client string) (issued bool, err error) {
	now := c.cfg.Now()
	if _, d := c.resetsByClient.reserve(client, now); d > 0 {
		return false, errTooManyResets(d)
	}
	// A name no login could look up is no user's: nothing to store.
	if !WellFormed(username, MaxUsernameLen) {
		return false, nil
	}
	if n := c.cfg.ResetsPerUser; n > 0 {
		t := store.LoginThrottle{Limit: float64(n), PerSecond: float64(n) / c.cfg.ResetWindow.Seconds()}
		d, err := c.db.ReserveResetRequest(ctx, username, t, now)
		if err != nil {
			return false, Failure(err)
		}
		if d > 0 {
			// Enough mail for this name: the links already sent stand.
			return false, nil
		}
	}
	plain, hash, err := token.NewRefresh()
	if err != nil {
		return false, Failure(err)
	}
	issued, expires, err := c.db.IssueResetToken(ctx, username, plain, hash, c.cfg.ResetTTL, true)
	if err != nil {
		return false, Failure(err)
	}
	if issued && c.cfg.ResetDelivery != nil {
		r := notify.Reset{User: username, Token: plain, ExpiresAt: expires}
		if c.cfg.ResetLinkBase != "" {
			r.Link = notify.Link(c.cfg.ResetLinkBase, plain)
		}
		c.cfg.ResetDelivery.Deliver(r)
	}
	return issued, nil
}

// ResetPassword sets the password of the user whose live reset token is
// plain to next, spending the token, and so revokes every session of the
// user (store.ResetPassword). The token is checked first, then the
// password policy, then the hash is made in the bcrypt gate. Errors are
// *Error: InvalidToken for a bad token, BadInput for a refused password.
func (c *Core) ResetPassword(ctx context.Context, plain, next string) (username string, err error) {
	if !WellFormed(plain, MaxTokenLen) {
		return "", errResetToken()
	}
	hash := token.HashRefresh(plain)
	user, err := c.db.ResetTokenUser(ctx, hash)
	switch {
	case errors.Is(err, store.ErrResetTokenInvalid):
		return "", errResetToken()
	case err != nil:
		return "", Failure(err)
	}
	if len(next) > store.MaxPasswordBytes {
		return user, PasswordRefused(store.ErrPasswordTooLong)
	}
	if err := CheckNewPassword(next, user, c.cfg.PasswordMinLength); err != nil {
		return user, PasswordRefused(err)
	}
	pwHash, err := c.hashPassword(ctx, next)
	if err != nil {
		return user, err
	}
	err = c.db.ResetPassword(ctx, user, hash, pwHash)
	switch {
	case errors.Is(err, store.ErrResetTokenInvalid):
		return user, errResetToken()
	case err != nil:
		return user, Failure(err)
	}
	c.ForgetUser(user) // this instance need not wait for the notification
	return user, nil
}

func errTooManyResets(wait time.Duration) *Error {
	return &Error{
		Kind: Throttled, Code: "PT429", Message: "Too many password reset requests from this address; try again later",
		RetryAfter: retryAfter(wait),
	}
}

// errResetToken refuses a reset token that is unknown, spent, expired or
// replaced by a newer one, without saying which.
func errResetToken() *Error {
	return &Error{Kind: InvalidToken, Code: "PT401", Message: "Invalid or expired reset token"}
}
