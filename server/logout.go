package server

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"authd/identity"
	"authd/store"
	"authd/token"
)

// handleLogout is POST /rpc/logout {"scope"?}: revoke the session
// server-side and delete both cookies. With scope "global" every session
// of its user ends too, with "others" every session but this one, whose
// cookies stay (GoTrue's scopes; "local", this session, is the default). The session is found from the refresh token (cookie
// or body) and from the access token (header or cookie, expired or not);
// either is enough, and neither is required: logging out twice, or with
// nothing, is still 204.
//
// Two cookies of one name (one perhaps planted by a sibling subdomain)
// are not chosen between, as refresh and verify refuse them: logout ends
// the session of each. The holder of a token may always end its session,
// and a planted cookie must not keep a user from logging out.
func (s *Server) handleLogout() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		args, err := decodeArgs(r, "auth.logout", nil, []string{"refresh_token", "scope"})
		if err != nil {
			return err
		}
		scope, err := parseLogoutScope(args["scope"])
		if err != nil {
			return err
		}
		refreshes := []string{args["refresh_token"]}
		if refreshes[0] == "" {
			refreshes = cookieValues(r, refreshCookie)
		}
		var hashes [][]byte
		for _, rt := range refreshes {
			if rt != "" && identity.WellFormed(rt, maxRefreshLen) {
				hashes = append(hashes, token.HashRefresh(rt))
			}
		}
		accesses := []string{bearerToken(r.Header)}
		if accesses[0] == "" {
			accesses = cookieValues(r, s.cfg.Cookie.accessName())
		}
		var sids []uuid.UUID
		for _, raw := range accesses {
			if sid := s.accessSession(raw); sid != uuid.Nil {
				sids = append(sids, sid)
			}
		}
		if scope != scopeLocal {
			// Only a live session speaks for its user here (see
			// RevokeUserSessionsOf); this one stays for "others".
			for i := range max(len(hashes), len(sids)) {
				if err := s.db.RevokeUserSessionsOf(r.Context(), at(sids, i), at(hashes, i), scope == scopeOthers); err != nil {
					return errInternal(err)
				}
				s.audit(c, store.AuditEvent{Event: auditLogout, Outcome: "ok", SessionID: at(sids, i),
					Details: map[string]string{"scope": string(scope)}})
			}
		}
		if scope == scopeOthers {
			// The current session goes on: its cookies stay.
			c.Response().Header().Set("Cache-Control", "no-store")
			return c.NoContent(http.StatusNoContent)
		}
		for i := range max(len(hashes), len(sids)) {
			ended, err := s.db.RevokeSessions(r.Context(), at(sids, i), at(hashes, i))
			if err != nil {
				return errInternal(err)
			}
			for _, e := range ended {
				s.audit(c, store.AuditEvent{Event: auditLogout, Outcome: "ok", Username: e.Username, SessionID: e.ID,
					Details: map[string]string{"scope": "local"}})
			}
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		for _, ck := range s.cfg.Cookie.cleared() {
			http.SetCookie(c.Response(), ck)
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// at is xs[i], or the zero value past its end.
func at[T any](xs []T, i int) T {
	var zero T
	if i < len(xs) {
		return xs[i]
	}
	return zero
}

// accessSession returns the session named by raw, a validly signed
// access token, or uuid.Nil. Expiry is ignored on purpose: revoking is
// harmless, and an expired token still proves which session it came from.
func (s *Server) accessSession(raw string) uuid.UUID {
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
