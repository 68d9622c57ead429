package server

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"authd/identity"
	"authd/store"
)

// The audit events of password reset.
const (
	auditResetRequested = "password_reset_requested"
	auditReset          = "password_reset"
)

// handleRequestPasswordReset is POST /rpc/request_password_reset
// {"user_"}: 204 whether or not the user exists (no enumeration); for one
// who does, a one-time reset token is stored and announced to the app's
// mail worker (identity RequestPasswordReset). Only throttling (429) or
// a failure answer otherwise.
func (s *Server) handleRequestPasswordReset() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		args, err := decodeArgs(r, "auth.request_password_reset", []string{"user_"}, nil)
		if err != nil {
			return err
		}
		issued, err := s.ident.RequestPasswordReset(r.Context(), args["user_"], c.RealIP())
		if err != nil {
			outcome := "failed"
			if ie := (*identity.Error)(nil); errors.As(err, &ie) && ie.Kind == identity.Throttled {
				outcome = "throttled"
			}
			s.audit(c, store.AuditEvent{Event: auditResetRequested, Outcome: outcome})
			return err
		}
		// The name only when it is a user's: an unknown one may be
		// anything typed into the field. Never the token.
		e := store.AuditEvent{Event: auditResetRequested, Outcome: "ok"}
		if issued {
			e.Username = args["user_"]
		}
		s.audit(c, e)
		return c.NoContent(http.StatusNoContent)
	}
}

// handleResetPassword is POST /rpc/reset_password {"token", "new_pass"}:
// spends a reset token, sets the user's password and so ends every
// session of the user. 204; 401 PT401 for a token that is unknown,
// spent, expired or replaced; 400 for a password the policy refuses.
func (s *Server) handleResetPassword() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		args, err := decodeArgs(r, "auth.reset_password", []string{"new_pass", "token"}, nil)
		if err != nil {
			return err
		}
		user, err := s.ident.ResetPassword(r.Context(), args["token"], args["new_pass"])
		if err != nil {
			s.audit(c, store.AuditEvent{Event: auditReset, Outcome: "failed", Username: user})
			return err
		}
		s.audit(c, store.AuditEvent{Event: auditReset, Outcome: "ok", Username: user})
		s.log.InfoContext(r.Context(), "password reset with a reset token; sessions revoked",
			"user", user, "client", c.RealIP(), "user_agent", logUserAgent(r))
		return c.NoContent(http.StatusNoContent)
	}
}
