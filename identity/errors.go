package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"authd/store"
)

// Kind is what sort of refusal or failure an Error is. Each door maps a
// kind to its protocol in one place (the HTTP door to a status, the NATS
// door to a refusal); the core never speaks a protocol.
type Kind int

const (
	// Unauthorized: the user name or password is wrong (or the user does
	// not exist: the client cannot tell).
	Unauthorized Kind = iota + 1
	// InvalidToken: a presented bearer credential (an access token or an
	// API key) does not pass.
	InvalidToken
	// Forbidden: the credential is good, but its role is gone or too
	// privileged for a token, or the key is over its plan's rate.
	Forbidden
	// Throttled: too many failed logins for this user or client.
	Throttled
	// Busy: load shed on purpose (the bcrypt queue is full), not a failure.
	Busy
	// Unavailable: the database is down or timed out, or the request ran
	// out of time; the client may retry.
	Unavailable
	// Canceled: the client went away before the answer.
	Canceled
	// Internal: a failure on authd's side; Cause says which.
	Internal
	// BadInput: a value the client chose breaks a rule (a user name, a
	// new password the policy refuses); Message says which.
	BadInput
	// Conflict: what the client asked to create exists (a sign-up's user
	// name is taken).
	Conflict
)

// Error is a refusal or failure of the identity rules, worded as PostgREST
// words it (Code, Message, Details, Hint), so that clients written against
// SuperStack see the same answer whichever door they came through.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Details *string
	Hint    *string
	// RetryAfter is how many whole seconds (at least 1) the client should
	// wait before trying again; 0 when that is not said.
	RetryAfter int
	// Cause is the failure behind an Unavailable or Internal error, for
	// the log; never shown to a client.
	Cause error
	// Reason is why a login was refused (ReasonUnknownUser, ...), for the
	// log only: the client is told "Invalid user or password" whatever it
	// is. "" for other errors.
	Reason string
}

// The reasons of a refused login (Error.Reason).
const (
	ReasonUnknownUser   = "unknown_user"
	ReasonWrongPassword = "wrong_password"
	ReasonDisabled      = "disabled"
)

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

func ptr(s string) *string { return &s }

// loginRefused is the one answer to a wrong user name or password, or a
// disabled user; reason is for the log.
// LoginRefusedChanged is a login whose password check passed but whose
// user changed (password, role, disabled) before its session opened
// (store.ErrUserChanged): refused like a wrong password.
func LoginRefusedChanged() *Error { return loginRefused("user_changed") }

func loginRefused(reason string) *Error {
	return &Error{Kind: Unauthorized, Code: "PT401", Message: "Invalid user or password", Reason: reason}
}

// RoleMissing is the refusal of a user whose database role was dropped:
// for a login, and for a refresh (which finds it in SQL).
func RoleMissing(role string) *Error {
	return &Error{
		Kind: Forbidden, Code: "PT403",
		Message: fmt.Sprintf("role %q does not exist", role),
		Hint:    ptr("The user's database role was dropped; an administrator must recreate it or change the user's role."),
	}
}

// RolePrivileged is the refusal of a user or key whose role no token may
// carry (reason, such as "it is a superuser", is auth.role_refusal's): the
// role was given before the database refused such roles, or the role was
// made a superuser, granted a predefined role... after the fact.
func RolePrivileged(role, reason string) *Error {
	return &Error{
		Kind: Forbidden, Code: "PT403",
		Message: fmt.Sprintf("role %q may not be the role of a token: %s", role, reason),
		Hint: ptr("An administrator must give the user a NOLOGIN role without SUPERUSER, BYPASSRLS, CREATEROLE, " +
			"CREATEDB or REPLICATION, not a predefined pg_* role nor a member of one of those."),
	}
}

// RoleRefused is the refusal for a store error that says a role may not
// be in a token (*store.RoleMissingError, *store.RolePrivilegedError), or
// nil for any other error.
func RoleRefused(err error) *Error {
	var (
		missing    *store.RoleMissingError
		privileged *store.RolePrivilegedError
	)
	switch {
	case errors.As(err, &missing):
		return RoleMissing(missing.Role)
	case errors.As(err, &privileged):
		return RolePrivileged(privileged.Role, privileged.Reason)
	}
	return nil
}

// PasswordRefused is the refusal of a new password by the password
// policy (CheckNewPassword) or by bcrypt's length limit; err says which.
func PasswordRefused(err error) *Error {
	return &Error{
		Kind: BadInput, Code: "22023", Message: err.Error(),
		Hint: ptr("Choose a longer password that is not one of the most common ones nor the username."),
	}
}

// SessionEnded refuses a request whose access token's session is revoked
// or has ended, as /auth/verify does.
func SessionEnded() *Error { return errSessionEnded() }

func errTooManyLogins(wait time.Duration) *Error {
	return &Error{
		Kind: Throttled, Code: "PT429", Message: "Too many failed logins; try again later",
		RetryAfter: retryAfter(wait),
	}
}

// errTooManyLoginsFrom refuses a login from an address past its share
// (Config.LoginsPerIP), whatever its password.
func errTooManyLoginsFrom(wait time.Duration) *Error {
	return &Error{
		Kind: Throttled, Code: "PT429", Message: "Too many logins from this address; try again later",
		RetryAfter: retryAfter(wait),
	}
}

// ErrTooManyLoginsFrom is the answer ThrottleLogin gives, with a
// Retry-After of 1 s: what a door renders ahead of time.
func ErrTooManyLoginsFrom() *Error { return errTooManyLoginsFrom(time.Second) }

func errTooManySignups(wait time.Duration) *Error {
	return &Error{
		Kind: Throttled, Code: "PT429", Message: "Too many sign-ups from this address; try again later",
		RetryAfter: retryAfter(wait),
	}
}

// badInput is a refusal of a value the client chose: an invalid
// parameter value (22023), as PostgreSQL names it.
func badInput(message, hint string) *Error {
	e := &Error{Kind: BadInput, Code: "22023", Message: message}
	if hint != "" {
		e.Hint = ptr(hint)
	}
	return e
}

// errUserTaken is a sign-up for a name that is taken, as PostgREST answers
// a unique violation (23505). It says no more than that the name is taken:
// not whether the user is disabled, nor their role.
func errUserTaken() *Error {
	return &Error{
		Kind: Conflict, Code: "23505", Message: "User name is taken",
		Hint: ptr("Choose another user name, or log in if it is yours."),
	}
}

func errBusy() *Error {
	return &Error{Kind: Busy, Code: "PT503", Message: "Too many logins at once; try again shortly", RetryAfter: 1}
}

// Timeout is the answer to a request that ran out of time (its deadline,
// or the database's statement timeout); cause may be nil.
func Timeout(cause error) *Error {
	return &Error{Kind: Unavailable, Code: "PT503", Message: "Request timed out", RetryAfter: 1, Cause: cause}
}

// Failure classifies a failure on authd's side. One that is only the
// request's deadline or the statement timeout passing (a slow, locked or
// saturated database), or the database being down, is Unavailable: the
// client may retry. A client that hung up is Canceled.
func Failure(cause error) *Error {
	switch {
	// The client hung up (Go cancels a request's context when its
	// connection closes): nobody reads the answer, and authd did nothing
	// wrong.
	case errors.Is(cause, context.Canceled):
		return &Error{Kind: Canceled, Code: "PT499", Message: "Client closed the request"}
	case errors.Is(cause, context.DeadlineExceeded), errors.Is(cause, store.ErrTimeout):
		return Timeout(cause)
	// The database is down, restarting or unreachable: tell the client to
	// come back (503, as PostgREST does), not that authd is broken.
	case errors.Is(cause, store.ErrUnavailable):
		return &Error{Kind: Unavailable, Code: "PT503", Message: "Database unavailable", RetryAfter: 1, Cause: cause}
	}
	return &Error{Kind: Internal, Code: "PT500", Message: "Internal server error", Cause: cause}
}

func invalidToken(code, message string, details *string) *Error {
	return &Error{Kind: InvalidToken, Code: code, Message: message, Details: details}
}
