package server

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"authd/identity"
	"authd/store"
	"authd/token"
)

// handleLogout is POST /rpc/logout: revoke the session server-side and
// delete both cookies. The session is found from the refresh token (cookie
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
		args, err := decodeArgs(r, "auth.logout", nil, []string{"refresh_token"})
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
		for i := range max(len(hashes), len(sids)) {
			var (
				hash []byte
				sid  uuid.UUID
			)
			if i < len(hashes) {
				hash = hashes[i]
			}
			if i < len(sids) {
				sid = sids[i]
			}
			ended, err := s.db.RevokeSessions(r.Context(), sid, hash)
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
