package server

import (
	"errors"

	"github.com/labstack/echo/v4"

	"authd/identity"
	"authd/store"
	"authd/token"
)

// maxRefreshLen bounds what is hashed and looked up; authd's tokens are 43
// characters.
const maxRefreshLen = 256

// handleRefresh is POST /rpc/refresh_token: spend the presented refresh
// token (cookie, or {"refresh_token"} for clients without cookies) and
// answer with a new access token and a rotated refresh token.
func (s *Server) handleRefresh() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		args, err := decodeArgs(r, "auth.refresh_token", nil, []string{"refresh_token"})
		if err != nil {
			return err
		}
		presented, err := presentedRefresh(c, args)
		if err != nil {
			return err
		}
		if presented == "" {
			return errInvalidRefresh()
		}
		next, nextHash, err := token.NewRefresh()
		if err != nil {
			return errInternal(err)
		}
		g, err := s.db.Refresh(r.Context(), token.HashRefresh(presented), nextHash, s.cfg.RefreshTTL, s.cfg.ReuseGrace)
		switch {
		case errors.Is(err, store.ErrRefreshReused):
			s.metrics.refreshReuse.Inc()
			// The same answer as any dead token: the client cannot tell
			// whether it or a thief spent the token first.
			s.log.WarnContext(r.Context(), "refresh token reused after rotation; session revoked",
				"user", g.Username, "session", g.SessionID.String(),
				"client", c.RealIP(), "user_agent", logUserAgent(r))
			s.audit(c, store.AuditEvent{Event: auditRefreshReuse, Outcome: "session_revoked", Username: g.Username, SessionID: g.SessionID})
			return errInvalidRefresh()
		case errors.Is(err, store.ErrInvalidRefresh):
			return errInvalidRefresh()
		case identity.RoleRefused(err) != nil:
			return identity.RoleRefused(err)
		case err != nil:
			return errInternal(err)
		}
		return s.respondTokens(c, g, next)
	}
}

// presentedRefresh is the refresh token in the body, else in the cookie;
// "" when there is none, or when what is there cannot be one of authd's
// tokens (too long, a NUL, invalid UTF-8): that is answered as any dead
// token, before anything is hashed or looked up. Two refresh cookies are
// refused (oneCookie).
func presentedRefresh(c echo.Context, args rpcArgs) (string, error) {
	t := args["refresh_token"]
	if t == "" {
		var err error
		if t, err = oneCookie(c.Request(), refreshCookie); err != nil {
			return "", err
		}
	}
	if !identity.WellFormed(t, maxRefreshLen) {
		return "", nil
	}
	return t, nil
}
