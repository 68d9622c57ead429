package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"authd/identity"
)

// handleVerify is the gateway's question "may this request pass, and as
// whom?" (Caddy forward_auth, nginx auth_request, Traefik ForwardAuth).
// Any method is accepted: gateways send GET, or the original method.
//
// 200 answers carry the token to forward in Authorization, plus
// X-Auth-User and X-Auth-Role. Refusals are 401 (or 403 for a key over its
// rate): nginx's auth_request turns any other status into a 500. The token
// path reads the database only to refresh a user's cached state (liveness,
// identity.IdentifyToken), at most once a second per user.
func (s *Server) handleVerify() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		var (
			id  identity.Identity
			err error
		)
		if key := r.Header.Get("X-API-Key"); key != "" {
			id, err = s.ident.IdentifyAPIKey(r.Context(), key)
		} else {
			var raw string
			if raw, err = presentedAccess(r, s.cfg.Cookie.accessName()); err == nil {
				id, err = s.ident.IdentifyToken(r.Context(), raw)
			}
		}
		if err != nil {
			return err
		}
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Authorization", "Bearer "+id.Token)
		h.Set("X-Auth-User", id.User)
		h.Set("X-Auth-Role", id.Role)
		return c.NoContent(http.StatusOK)
	}
}

// presentedAccess returns the access token of a request: the Authorization
// header if there is one (an API client's explicit choice wins over a
// cookie the browser happens to hold), else the access cookie, named
// cookieName; two of those are refused, not chosen between.
func presentedAccess(r *http.Request, cookieName string) (string, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		raw := bearerToken(r.Header)
		if raw == "" {
			if scheme, _, _ := strings.Cut(auth, " "); strings.EqualFold(scheme, "bearer") {
				return "", invalidToken("PGRST301", "Empty JWT is sent in Authorization header")
			}
			return "", invalidToken("PGRST301", "Authorization header is not a Bearer token")
		}
		return checkTokenSize(raw)
	}
	raw, err := oneCookie(r, cookieName)
	if err != nil {
		return "", err
	}
	if raw != "" {
		return checkTokenSize(raw)
	}
	return "", &Error{
		Status: http.StatusUnauthorized, Code: "PGRST302", Message: "Anonymous access is disabled",
		Header: http.Header{"WWW-Authenticate": {"Bearer"}},
	}
}

func checkTokenSize(raw string) (string, error) {
	var e *identity.Error
	if errors.As(identity.CheckTokenSize(raw), &e) {
		return "", fromIdentity(e)
	}
	return raw, nil
}

func invalidToken(code, message string) *Error {
	return &Error{
		Status: http.StatusUnauthorized, Code: code, Message: message,
		Header: http.Header{"WWW-Authenticate": {bearerError(message)}},
	}
}
