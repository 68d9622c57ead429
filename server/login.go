package server

import (
	"github.com/labstack/echo/v4"

	"authd/token"
)

// handleLogin is POST /rpc/login {"user_", "pass"}: SuperStack's
// auth.login, answered from Go.
func (s *Server) handleLogin() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		// An HTML form post is a CORS "simple request": any site could log
		// a visitor into an account of the attacker's choosing. Browsers
		// say where the request comes from; believe them.
		if kind, _ := bodyKind(r.Header.Get("Content-Type")); kind == kindForm &&
			r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			return errCrossSite()
		}
		args, err := decodeArgs(r, "auth.login", []string{"pass", "user_"}, nil)
		if err != nil {
			return err
		}
		ctx := r.Context()
		u, err := s.ident.CheckPassword(ctx, args["user_"], args["pass"], c.RealIP())
		if err != nil {
			return err
		}
		refresh, refreshHash, err := token.NewRefresh()
		if err != nil {
			return errInternal(err)
		}
		g, err := s.db.StartSession(ctx, u.Username, refreshHash, s.cfg.RefreshTTL, s.cfg.SessionLifetime)
		if err != nil {
			return errInternal(err)
		}
		g.Role = u.Role
		return s.respondTokens(c, g, refresh)
	}
}
