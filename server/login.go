package server

import (
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"authd/identity"
	"authd/store"
	"authd/token"
)

// handleLogin is POST /rpc/login {"user_", "pass"}: SuperStack's
// auth.login, answered from Go.
func (s *Server) handleLogin() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		args, err := decodeArgs(r, "auth.login", []string{"pass", "user_"}, nil)
		if err != nil {
			return err
		}
		ctx := r.Context()
		var (
			u          store.User
			g          store.Grant
			refresh    string
			mfaPending bool
		)
		// The password checked, the session is opened, and the failure
		// reserved for the attempt given back, in one statement.
		err = s.ident.LogIn(ctx, args["user_"], args["pass"], c.RealIP(), func(checked store.User, release *store.LoginRelease) error {
			u = checked
			var refreshHash []byte
			var err error
			if refresh, refreshHash, err = token.NewRefresh(); err != nil {
				return err
			}
			// A user with a second factor gets a session that waits for
			// it (aal1, short-lived) until /rpc/mfa_verify steps it up.
			var lifetime time.Duration
			lifetime, mfaPending = s.ident.LoginSessionLifetime(u, s.cfg.SessionLifetime)
			g, err = s.db.StartSessionFrom(ctx, u, loginClient(c), refreshHash, s.cfg.RefreshTTL, lifetime, mfaPending, release)
			return err
		})
		if err != nil {
			var refused *identity.Error
			switch {
			case errors.Is(err, store.ErrUserChanged):
				err = identity.LoginRefusedChanged()
			case !errors.As(err, &refused):
				return errInternal(err) // the session's statement failed
			}
			s.logLoginRefused(c, args["user_"], err)
			s.auditLoginRefused(c, args["user_"], err)
			return err
		}
		g.Role = u.Role
		s.audit(c, store.AuditEvent{Event: auditLogin, Outcome: "ok", Username: g.Username, SessionID: g.SessionID})
		if mfaPending {
			return s.respondTokensWith(c, g, refresh, &mfaAnswer{MFARequired: true, AAL: g.AAL})
		}
		return s.respondTokens(c, g, refresh)
	}
}

// logLoginRefused logs a login refused for a wrong user name or password,
// or a disabled user: why, which client, and the user — only when the name
// is a user's, since an unknown "name" may be a password typed into the
// wrong field. Never the password. Other refusals (throttled, shed) are in
// the request's own log line, with its status and client.
func (s *Server) logLoginRefused(c echo.Context, username string, err error) {
	var e *identity.Error
	if !errors.As(err, &e) || e.Reason == "" {
		return
	}
	attrs := []slog.Attr{slog.String("reason", e.Reason)}
	if e.Reason != identity.ReasonUnknownUser {
		attrs = append(attrs, slog.String("user", username))
	}
	attrs = append(attrs, slog.String("client", c.RealIP()), slog.String("user_agent", logUserAgent(c.Request())))
	s.log.LogAttrs(c.Request().Context(), slog.LevelInfo, "login refused", attrs...)
}

// auditLoginRefused records a refused login in the audit log: failed (with
// its reason), throttled or shed. The name entered is kept only for a
// failure whose name is a user's, for the reason logLoginRefused gives; a
// throttled or shed login has no name for the same reason (it was refused
// before anyone looked the name up). A login that failed on authd's side
// (database down, timeout, client gone) is in the log, not the audit.
func (s *Server) auditLoginRefused(c echo.Context, username string, err error) {
	var e *identity.Error
	if !errors.As(err, &e) {
		return
	}
	ev := store.AuditEvent{Event: auditLogin}
	switch e.Kind {
	case identity.Unauthorized:
		ev.Outcome = "failed"
		ev.Details = map[string]string{"reason": e.Reason}
		if e.Reason != identity.ReasonUnknownUser {
			ev.Username = username
		}
	case identity.Throttled:
		ev.Outcome = "throttled"
	case identity.Busy:
		ev.Outcome = "shed"
	default:
		return
	}
	s.audit(c, ev)
}

// loginClient is where the request of a new session came from, as
// /rpc/sessions shows it: the client address and the User-Agent (NULs,
// which PostgreSQL's text refuses, dropped).
func loginClient(c echo.Context) store.LoginClient {
	return store.LoginClient{Addr: c.RealIP(), UserAgent: strings.ReplaceAll(logUserAgent(c.Request()), "\x00", "")}
}
