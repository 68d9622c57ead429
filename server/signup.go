package server

import (
	"errors"

	"github.com/labstack/echo/v4"

	"authd/store"
	"authd/token"
)

// signupFn is the function POST /rpc/signup stands for, as PostgREST
// would name it.
const signupFn = "auth.signup"

// handleSignup is POST /rpc/signup {"user_", "pass"}: creates a user with
// the role of AUTHD_SIGNUP_ROLE and logs them in, answering as
// /rpc/login does. The rules are the identity core's (SignUp).
func (s *Server) handleSignup() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		args, err := decodeArgs(r, signupFn, []string{"pass", "user_"}, nil)
		if err != nil {
			return err
		}
		refresh, refreshHash, err := token.NewRefresh()
		if err != nil {
			return errInternal(err)
		}
		g, err := s.ident.SignUp(r.Context(), args["user_"], args["pass"], loginClient(c), refreshHash, s.cfg.RefreshTTL, s.cfg.SessionLifetime)
		if err != nil {
			return err
		}
		s.audit(c, store.AuditEvent{Event: auditSignup, Outcome: "ok", Username: g.Username, SessionID: g.SessionID})
		return s.respondTokens(c, g, refresh)
	}
}

// handleNoSignup answers POST /rpc/signup while sign-up is off as
// PostgREST answers a function that does not exist: 404 PGRST202 naming
// the arguments sent, with no hint (there is no function to suggest).
// The body is read as for any RPC, so a broken body gets the same answer
// whether sign-up is on or off.
func handleNoSignup() echo.HandlerFunc {
	return func(c echo.Context) error {
		_, err := decodeArgs(c.Request(), signupFn, nil, nil)
		var e *Error
		switch {
		case err == nil: // no arguments: auth.signup() does not exist either
			e = errUnknownArgs(signupFn, nil, nil)
		case !errors.As(err, &e) || e.Code != "PGRST202":
			return err
		}
		e.Hint = nil
		return e
	}
}
