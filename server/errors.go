package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"authd/identity"
)

// Error is an error a client sees, in PostgREST's shape. Cause, when set,
// is logged for 5xx answers and never sent.
type Error struct {
	Status  int
	Code    string
	Message string
	Details *string
	Hint    *string
	// Header is added to the response (WWW-Authenticate, Allow, Retry-After).
	Header http.Header
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

func ptr(s string) *string { return &s }

// body is the PostgREST error body; the field order is PostgREST's, which
// sorts its keys, and nulls are explicit.
type body struct {
	Code    string  `json:"code"`
	Details *string `json:"details"`
	Hint    *string `json:"hint"`
	Message string  `json:"message"`
}

// The errors below are the ones a client can provoke. Their codes and
// messages are PostgREST's where PostgREST has one, so clients written
// against SuperStack keep working.

func errInvalidRefresh() *Error {
	return &Error{
		Status: http.StatusUnauthorized, Code: "PT401", Message: "Invalid or expired refresh token",
		Header: http.Header{"WWW-Authenticate": {"Bearer"}},
	}
}

func errSchema(schema string) *Error {
	return &Error{
		Status: http.StatusNotAcceptable, Code: "PGRST106",
		Message: "Invalid schema: " + schema,
		Hint:    ptr("Only the following schemas are exposed: " + schemaName),
	}
}

func errMethod(method, path string) *Error {
	where := "RPC"
	if !strings.HasPrefix(path, "/rpc/") {
		where = path
	}
	return &Error{
		Status: http.StatusMethodNotAllowed, Code: "PGRST101",
		Message: "Cannot use the " + method + " method on " + where,
	}
}

func errNotFound() *Error {
	return &Error{Status: http.StatusNotFound, Code: "PGRST125", Message: "Invalid path specified in request URL"}
}

func errMediaType(mediaType string) *Error {
	return &Error{Status: http.StatusUnsupportedMediaType, Code: "PGRST102", Message: "Content-Type not acceptable: " + mediaType}
}

func errInvalidBody() *Error {
	return &Error{Status: http.StatusBadRequest, Code: "PGRST102", Message: "Empty or invalid json"}
}

// errRepeatedArg refuses a body that gives an argument twice; name is
// already safe to show (argName).
func errRepeatedArg(what, name string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "PGRST102", Message: what + " " + name}
}

func errTooLarge(limit int64) *Error {
	return &Error{
		Status: http.StatusRequestEntityTooLarge, Code: "PT413",
		Message: fmt.Sprintf("Request body is larger than %d bytes", limit),
	}
}

// errCrossSite refuses a request to a cookie endpoint from another site
// (origin.go).
func errCrossSite() *Error {
	return &Error{
		Status: http.StatusForbidden, Code: "PT403",
		Message: "Cross-site request refused",
		Hint:    ptr("Log in, refresh and log out from the application's own origin, or add that origin to AUTHD_ALLOWED_ORIGINS."),
	}
}

// errDuplicateCookie refuses a request with two cookies of one name: one
// may have been planted by a sibling subdomain (cookie tossing).
func errDuplicateCookie(name string) *Error {
	return &Error{
		Status: http.StatusUnauthorized, Code: "PT401",
		Message: "Cookie " + name + " sent more than once",
		Hint:    ptr("Another site under the same domain may have set it: clear this site's cookies, then log in again."),
		Header:  http.Header{"WWW-Authenticate": {"Bearer"}},
	}
}

// errUnknownArgs mirrors PostgREST's PGRST202 for a function called with
// arguments it does not take (or without ones it needs).
func errUnknownArgs(fn string, got, want []string) *Error {
	return &Error{
		Status: http.StatusNotFound, Code: "PGRST202",
		Message: fmt.Sprintf("Could not find the function %s(%s) in the schema cache", fn, strings.Join(got, ", ")),
		Details: ptr(fmt.Sprintf("Searched for the function %s with parameters %s or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
			fn, strings.Join(got, ", "))),
		Hint: ptr(fmt.Sprintf("Perhaps you meant to call the function %s(%s)", fn, strings.Join(want, ", "))),
	}
}

func errTimeout() *Error { return fromIdentity(identity.Timeout(nil)) }

// statusClientClosed is nginx's status for a request whose client went
// away before the answer; it appears in logs and metrics only.
const statusClientClosed = 499

// errInternal is a failure on authd's side, classified by the identity
// rules (a timeout or a database that is down is a 503 the client may
// retry, a client that hung up a 499, anything else a 500).
func errInternal(cause error) *Error { return fromIdentity(identity.Failure(cause)) }

// fromIdentity is the HTTP answer to a refusal or failure of the identity
// rules: the one place a kind becomes a status and headers.
func fromIdentity(e *identity.Error) *Error {
	out := &Error{Code: e.Code, Message: e.Message, Details: e.Details, Hint: e.Hint, Header: http.Header{}, Cause: e.Cause}
	switch e.Kind {
	case identity.Unauthorized:
		out.Status = http.StatusUnauthorized
		out.Header["WWW-Authenticate"] = []string{"Bearer"}
	case identity.InvalidToken:
		out.Status = http.StatusUnauthorized
		out.Header["WWW-Authenticate"] = []string{bearerError(e.Message)}
	case identity.Forbidden:
		out.Status = http.StatusForbidden
	case identity.Throttled:
		out.Status = http.StatusTooManyRequests
	case identity.BadInput:
		out.Status = http.StatusBadRequest
	case identity.Conflict:
		out.Status = http.StatusConflict
	case identity.Busy, identity.Unavailable:
		out.Status = http.StatusServiceUnavailable
	case identity.Canceled:
		out.Status = statusClientClosed
	default:
		out.Status = http.StatusInternalServerError
	}
	if e.RetryAfter > 0 {
		out.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	return out
}

// bearerError is the WWW-Authenticate challenge for a bearer credential
// that was presented and refused (RFC 6750).
func bearerError(message string) string {
	return fmt.Sprintf(`Bearer error="invalid_token", error_description=%q`, message)
}

// errorHandler renders every error in PostgREST's shape. It is the one
// place errors are logged: 5xx with their cause, 4xx not at all (they are
// the client's business and would let a client flood the log).
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := toError(err, c.Request())
		// A failure is logged once, here; a 5xx without a cause is load
		// being shed on purpose (a full login queue), counted in the
		// metrics and logged as a request, not an error per request.
		if e.Status >= 500 && e.Cause != nil {
			log.ErrorContext(c.Request().Context(), "request failed",
				"method", c.Request().Method, "path", c.Request().URL.Path, "status", e.Status, "err", e.Cause)
		}
		if back, ok := c.Get(formBackKey).(formBack); ok {
			renderFormError(c, e, back) // a browser's form (form.go)
			return
		}
		h := c.Response().Header()
		for k, vs := range e.Header {
			h[k] = vs
		}
		h.Set("Cache-Control", "no-store")
		b, _ := json.Marshal(body{Code: e.Code, Details: e.Details, Hint: e.Hint, Message: e.Message})
		_ = c.Blob(e.Status, jsonType, b)
	}
}

func toError(err error, r *http.Request) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ie *identity.Error
	if errors.As(err, &ie) {
		return fromIdentity(ie)
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return errNotFound()
		case http.StatusMethodNotAllowed:
			return errMethod(r.Method, r.URL.Path)
		case http.StatusRequestEntityTooLarge:
			return errTooLarge(bodyLimit)
		case http.StatusServiceUnavailable:
			return errTimeout()
		}
		if he.Code < 500 {
			return &Error{Status: he.Code, Code: fmt.Sprintf("PT%d", he.Code), Message: http.StatusText(he.Code)}
		}
	}
	return errInternal(err)
}
