package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"authd/store"
)

// DefaultSignupsPerIP is how many sign-ups one client address may make
// per SignupWindow unless configured (AUTHD_SIGNUP_PER_IP).
const DefaultSignupsPerIP = 10

// DefaultSignupWindow is the period the sign-ups of one client are
// counted over.
const DefaultSignupWindow = time.Hour

// MinUsernameLen is the shortest user name, in characters: the auth.user
// check constraint's.
const MinUsernameLen = 3

// CheckUsername applies the rules every new user name must pass, from
// `authd user add` or a sign-up: at least MinUsernameLen characters (as
// the database counts them), and a name a login can look up (WellFormed).
func CheckUsername(name string) error {
	if !WellFormed(name, MaxUsernameLen) {
		return fmt.Errorf("the username must be UTF-8 of at most %d bytes, without NUL", MaxUsernameLen)
	}
	if utf8.RuneCountInString(name) < MinUsernameLen {
		return store.ErrUsernameTooShort
	}
	return nil
}

// checkSignupUsername adds to CheckUsername what a name chosen by anyone
// on the web must not have: control characters (invisible in a list of
// users, and able to forge log lines in a terminal) and white space at
// either end (two users who look alike).
func checkSignupUsername(name string) error {
	if err := CheckUsername(name); err != nil {
		return err
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return errors.New("the username may not contain control characters")
	}
	if strings.TrimSpace(name) != name {
		return errors.New("the username may not begin or end with white space")
	}
	return nil
}

// SignupEnabled reports whether sign-up is on (Config.SignupRole is set).
func (c *Core) SignupEnabled() bool { return c.cfg.SignupRole != "" }

// SignUp creates user username with password and the role of
// Config.SignupRole, and opens their first session, with refresh token
// tokenHash (valid for ttl, the session for lifetime), remembering from
// (the client address and User-Agent, for /rpc/sessions), in one statement:
// no user is left behind without the session, nor a session without
// the user.
//
// The rules, in order, so that what costs nothing is refused first:
//   - the user name's rules (checkSignupUsername) and the password policy
//     (CheckNewPassword, Config.PasswordMinLength): BadInput, not counted;
//   - SignupsPerIP per SignupWindow from one client: Throttled. Every
//     attempt that reaches the database counts, a taken name included,
//     since that answer is the one thing sign-up tells about other users;
//   - the hash is made in the bcrypt gate, so that a flood of sign-ups is
//     shed (Busy) like one of logins;
//   - the database refuses a taken name (Conflict), and a role dropped or
//     made privileged since start-up (Forbidden, as for a login).
//
// Its errors are *Error.
func (c *Core) SignUp(ctx context.Context, username, password string, from store.LoginClient, tokenHash []byte, ttl, lifetime time.Duration) (store.Grant, error) {
	role := c.cfg.SignupRole
	if role == "" {
		return store.Grant{}, Failure(errors.New("sign-up is off"))
	}
	if err := checkSignupUsername(username); err != nil {
		return store.Grant{}, badInput("Invalid username: "+err.Error(), "")
	}
	if len(password) > store.MaxPasswordBytes {
		return store.Grant{}, PasswordRefused(fmt.Errorf("password is longer than bcrypt's %d-byte limit", store.MaxPasswordBytes))
	}
	if err := CheckNewPassword(password, username, c.cfg.PasswordMinLength); err != nil {
		return store.Grant{}, PasswordRefused(err)
	}
	now := c.cfg.Now()
	res, d := c.signupsByClient.reserve(from.Addr, now)
	if d > 0 {
		return store.Grant{}, errTooManySignups(d)
	}
	giveBack := func() {
		if res != nil {
			res.CancelAt(now)
		}
	}
	hash, err := c.hashPassword(ctx, password)
	if err != nil {
		giveBack() // shed, or the client left: nothing was tried
		return store.Grant{}, err
	}
	g, err := c.db.AddUserWithSession(ctx, username, hash, role, from, tokenHash, ttl, lifetime)
	switch {
	case errors.Is(err, store.ErrUserExists):
		return store.Grant{}, errUserTaken()
	case err != nil:
		giveBack()
		if refused := RoleRefused(err); refused != nil {
			return store.Grant{}, refused
		}
		return store.Grant{}, Failure(err)
	}
	c.log.InfoContext(ctx, "user signed up", "user", username, "role", role, "client", from.Addr)
	return g, nil
}
