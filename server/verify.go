package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"

	"authd/token"
)

// maxTokenLen bounds the JWT authd will look at. Its own are under 1 KiB;
// PostgREST users' tokens with many claims stay far below this.
const maxTokenLen = 8 << 10

// handleVerify is the gateway's question "may this request pass, and as
// whom?" (Caddy forward_auth, nginx auth_request, Traefik ForwardAuth).
// Any method is accepted: gateways send GET, or the original method.
//
// 200 answers carry the token to forward in Authorization, plus
// X-Auth-User and X-Auth-Role. Refusals are 401 (or 403 for a key over its
// rate): nginx's auth_request turns any other status into a 500. The token
// path does no database work.
func (s *Server) handleVerify() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		var (
			id  Identity
			err error
		)
		if key := r.Header.Get("X-API-Key"); key != "" {
			id, err = s.IdentifyAPIKey(r.Context(), key)
		} else {
			var raw string
			if raw, err = presentedAccess(r); err == nil {
				id, err = s.IdentifyToken(raw)
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
// cookie the browser happens to hold), else the access cookie.
func presentedAccess(r *http.Request) (string, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		raw := bearerToken(r.Header)
		if raw == "" {
			if scheme, _, _ := strings.Cut(auth, " "); strings.EqualFold(scheme, "bearer") {
				return "", invalidToken("PGRST301", "Empty JWT is sent in Authorization header", nil)
			}
			return "", invalidToken("PGRST301", "Authorization header is not a Bearer token", nil)
		}
		return checkTokenSize(raw)
	}
	if ck, err := r.Cookie(accessCookie); err == nil && ck.Value != "" {
		return checkTokenSize(ck.Value)
	}
	return "", &Error{
		Status: http.StatusUnauthorized, Code: "PGRST302", Message: "Anonymous access is disabled",
		Header: http.Header{"WWW-Authenticate": {"Bearer"}},
	}
}

func checkTokenSize(raw string) (string, error) {
	if len(raw) > maxTokenLen {
		return "", invalidToken("PGRST301", fmt.Sprintf("JWT is larger than %d bytes", maxTokenLen), nil)
	}
	return raw, nil
}

// errInvalidToken words a verification failure as PostgREST does, so that
// clients see the same message whether the gateway or PostgREST refused.
func errInvalidToken(raw string, err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		if n := strings.Count(raw, ".") + 1; n != 3 {
			return invalidToken("PGRST301", fmt.Sprintf("Expected 3 parts in JWT; got %d", n), nil)
		}
		return invalidToken("PGRST301", "JWT cryptographic operation failed", nil)
	case errors.Is(err, token.ErrAlgorithm):
		return invalidToken("PGRST301", "Wrong or unsupported encoding algorithm", nil)
	case errors.Is(err, token.ErrKeyID), errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalidToken("PGRST301", "No suitable key or wrong key type", ptr("None of the keys was able to decode the JWT"))
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalidToken("PGRST303", "JWT expired", nil)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalidToken("PGRST303", "JWT not yet valid", nil)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalidToken("PGRST303", "JWT issued at future", nil)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalidToken("PGRST303", "JWT not in audience", nil)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalidToken("PGRST303", "JWT has no 'exp' claim", nil)
	}
	return invalidToken("PGRST303", "Parsing claims failed", nil)
}

func invalidToken(code, message string, details *string) *Error {
	return &Error{
		Status: http.StatusUnauthorized, Code: code, Message: message, Details: details,
		Header: http.Header{"WWW-Authenticate": {fmt.Sprintf(`Bearer error="invalid_token", error_description=%q`, message)}},
	}
}
