package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"authd/store"
	"authd/token"
)

// caller is who a self-service request comes from: the user and the
// session of its access token (Authorization: Bearer, else the access
// cookie), checked as /auth/verify checks it — signature, expiry, and a
// session that is still live. A token of no login session (an API key's,
// a role-only token) is refused: there is no session to act for.
//
// The token is checked before the body is read: a request without a good
// one is 401 whatever it carries. Then the body is decoded as for
// decodeArgs(fn, required, optional).
func (s *Server) caller(c echo.Context, fn string, required []string, optional ...string) (user string, sessionID uuid.UUID, args rpcArgs, err error) {
	user, sessionID, _, args, err = s.callerAAL(c, fn, required, optional...)
	return user, sessionID, args, err
}

// callerAAL is caller with the assurance level of the access token (its
// aal claim).
func (s *Server) callerAAL(c echo.Context, fn string, required []string, optional ...string) (user string, sessionID uuid.UUID, aal string, args rpcArgs, err error) {
	r := c.Request()
	raw, err := presentedAccess(r, s.cfg.Cookie.accessName())
	if err != nil {
		return "", uuid.Nil, "", nil, err
	}
	id, err := s.ident.IdentifyToken(r.Context(), raw)
	if err != nil {
		return "", uuid.Nil, "", nil, err
	}
	sid, perr := uuid.Parse(id.SessionID)
	if perr != nil || id.User == "" || strings.HasPrefix(id.User, "apikey:") {
		return "", uuid.Nil, "", nil, invalidToken("PGRST303", "JWT is not for a login session")
	}
	args, err = decodeArgs(r, fn, required, optional)
	if err != nil {
		return "", uuid.Nil, "", nil, err
	}
	return id.User, sid, id.AAL, args, nil
}

// handleChangePassword is POST /rpc/change_password {"pass", "new_pass"}:
// a user changes their own password, authenticated twice — by the access
// token, and by the current password with every rule of a login. Every
// other session of the user ends; this one continues with new tokens,
// answered as a refresh answers.
func (s *Server) handleChangePassword() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, sid, aal, args, err := s.callerAAL(c, "auth.change_password", []string{"new_pass", "pass"})
		if err != nil {
			return err
		}
		r := c.Request()
		refresh, refreshHash, err := token.NewRefresh()
		if err != nil {
			return errInternal(err)
		}
		g, err := s.ident.ChangePassword(r.Context(), user, sid, aal, args["pass"], args["new_pass"], c.RealIP(),
			refreshHash, s.cfg.RefreshTTL)
		if err != nil {
			s.logLoginRefused(c, user, err)
			s.audit(c, store.AuditEvent{Event: auditPassword, Outcome: "failed", Username: user, SessionID: sid})
			return err
		}
		s.audit(c, store.AuditEvent{Event: auditPassword, Outcome: "ok", Username: user, SessionID: sid})
		s.log.InfoContext(r.Context(), "password changed by its user; other sessions revoked",
			"user", user, "session", sid.String(), "client", c.RealIP(), "user_agent", logUserAgent(r))
		return s.respondTokens(c, g, refresh)
	}
}

// sessionJSON is one row of /rpc/sessions. Field names follow GoTrue's
// where it has one (ip, user_agent, refreshed_at).
type sessionJSON struct {
	ID          string     `json:"id"`
	CreatedAt   time.Time  `json:"created_at"`
	RefreshedAt *time.Time `json:"refreshed_at"`
	NotAfter    time.Time  `json:"not_after"`
	IP          *string    `json:"ip"`
	UserAgent   *string    `json:"user_agent"`
	Current     bool       `json:"current"`
	// AAL is the session's assurance level: aal2 once a second factor
	// stepped it up (GoTrue's name).
	AAL string `json:"aal"`
}

// handleSessions is POST /rpc/sessions: the caller's live sessions, a
// JSON array as PostgREST answers a set-returning function.
func (s *Server) handleSessions() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, sid, _, err := s.caller(c, "auth.sessions", nil)
		if err != nil {
			return err
		}
		r := c.Request()
		live, err := s.db.LiveSessions(r.Context(), user)
		if err != nil {
			return errInternal(err)
		}
		out := make([]sessionJSON, 0, len(live))
		for _, l := range live {
			out = append(out, sessionJSON{
				ID: l.ID.String(), CreatedAt: l.CreatedAt.UTC(), RefreshedAt: utcOrNil(l.RefreshedAt),
				NotAfter: l.ExpiresAt.UTC(), IP: nilIfEmpty(l.ClientAddr), UserAgent: nilIfEmpty(l.UserAgent),
				Current: l.ID == sid, AAL: l.AAL,
			})
		}
		b, err := json.Marshal(out)
		if err != nil {
			return errInternal(fmt.Errorf("encode sessions: %w", err))
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.Blob(http.StatusOK, jsonType, b)
	}
}

func utcOrNil(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// handleRevokeSession is POST /rpc/revoke_session {"session_id"}: the
// caller ends one of their own sessions. Another user's session is 404,
// as an unknown one: the answer does not say that it exists.
func (s *Server) handleRevokeSession() echo.HandlerFunc {
	return func(c echo.Context) error {
		user, _, args, err := s.caller(c, "auth.revoke_session", []string{"session_id"})
		if err != nil {
			return err
		}
		r := c.Request()
		id, err := uuid.Parse(args["session_id"])
		if err != nil {
			return errInvalidUUID()
		}
		err = s.db.RevokeSessionOf(r.Context(), user, id)
		switch {
		case errors.Is(err, store.ErrSessionNotFound):
			return errSessionNotFound()
		case err != nil:
			return errInternal(err)
		}
		s.ident.ForgetUser(user) // this instance need not wait for the notification
		s.audit(c, store.AuditEvent{Event: auditSessionEnd, Outcome: "ok", Username: user, SessionID: id})
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.NoContent(http.StatusNoContent)
	}
}

// logoutScope is the scope argument of /rpc/logout (GoTrue's names).
type logoutScope string

const (
	scopeLocal  logoutScope = "local"  // this session (the default)
	scopeOthers logoutScope = "others" // every session of the user but this one
	scopeGlobal logoutScope = "global" // every session of the user
)

func parseLogoutScope(s string) (logoutScope, error) {
	switch logoutScope(s) {
	case "", scopeLocal:
		return scopeLocal, nil
	case scopeOthers, scopeGlobal:
		return logoutScope(s), nil
	}
	return "", errInvalidScope()
}

// errInvalidUUID is PostgreSQL's answer to a uuid argument that is not
// one, as PostgREST passes it on. The value is not repeated: it is the
// client's text.
func errInvalidUUID() *Error {
	return &Error{Status: http.StatusBadRequest, Code: "22P02", Message: "invalid input syntax for type uuid"}
}

// errSessionNotFound is the answer for a session id that is not one of
// the caller's (PostgREST answers SQLSTATE PT404 with 404).
func errSessionNotFound() *Error {
	return &Error{Status: http.StatusNotFound, Code: "PT404", Message: "Session not found"}
}

func errInvalidScope() *Error {
	return &Error{
		Status: http.StatusBadRequest, Code: "22023", Message: "invalid logout scope",
		Hint: ptr("scope is local (this session, the default), others or global"),
	}
}
