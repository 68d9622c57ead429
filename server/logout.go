package server

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"authd/token"
)

// handleLogout is POST /rpc/logout: revoke the session server-side and
// delete both cookies. The session is found from the refresh token (cookie
// or body) and from the access token (header or cookie, expired or not);
// either is enough, and neither is required: logging out twice, or with
// nothing, is still 204.
func (s *Server) handleLogout() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		args, err := decodeArgs(r, "auth.logout", nil, []string{"refresh_token"})
		if err != nil {
			return err
		}
		var refreshHash []byte
		if rt := presentedRefresh(c, args); rt != "" {
			refreshHash = token.HashRefresh(rt)
		}
		sid := s.accessSession(c)
		if refreshHash != nil || sid != uuid.Nil {
			if err := s.db.RevokeSessions(r.Context(), sid, refreshHash); err != nil {
				return errInternal(err)
			}
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		for _, ck := range s.cfg.Cookie.cleared() {
			http.SetCookie(c.Response(), ck)
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// accessSession returns the session named by a validly signed access
// token, or uuid.Nil. Expiry is ignored on purpose: revoking is harmless, and an
// expired token still proves which session it came from.
func (s *Server) accessSession(c echo.Context) uuid.UUID {
	raw := bearerToken(c.Request().Header)
	if raw == "" {
		if ck, err := c.Cookie(accessCookie); err == nil {
			raw = ck.Value
		}
	}
	if raw == "" {
		return uuid.Nil
	}
	claims, err := s.tokens.VerifySignature(raw)
	if err != nil {
		return uuid.Nil
	}
	sid, err := uuid.Parse(claims.SessionID)
	if err != nil {
		return uuid.Nil
	}
	return sid
}
