package server

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"authd/store"
)

// tokenResponse is the body of a login or refresh with
// Prefer: return=representation (OAuth 2.0's token response field names).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// respondTokens signs an access token for g and answers with both tokens
// as cookies: 204 as SuperStack did, or 200 with the tokens in the body
// when the client prefers a representation.
func (s *Server) respondTokens(c echo.Context, g store.Grant, refresh string) error {
	return s.respondTokensWith(c, g, refresh, nil)
}

// mfaAnswer is the body of a login that needs a second factor, or of a
// verification that activated one; the tokens join it (tokenResponse's
// fields) with Prefer: return=representation.
type mfaAnswer struct {
	*tokenResponse
	MFARequired   bool     `json:"mfa_required,omitempty"`
	AAL           string   `json:"aal,omitempty"`
	RecoveryCodes []string `json:"recovery_codes,omitempty"`
}

// respondTokensWith is respondTokens with a body of its own: with extra
// set the answer is always 200 with extra, the tokens in it only when the
// client prefers a representation. The access token carries the
// session's assurance (aal, amr) and lives as long as the identity core
// says (shorter for a session waiting for its second factor).
func (s *Server) respondTokensWith(c echo.Context, g store.Grant, refresh string, extra *mfaAnswer) error {
	access, ttl, err := s.ident.SessionToken(g)
	if err != nil {
		return err
	}
	// Each cookie lives exactly as long as its token.
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	http.SetCookie(c.Response(), s.cfg.Cookie.access(access, int(ttl.Seconds())))
	for _, ck := range s.cfg.Cookie.refresh(refresh, refreshMaxAge(g.RefreshTTL)) {
		http.SetCookie(c.Response(), ck)
	}
	represent := wantsRepresentation(c.Request().Header)
	if !represent && extra == nil {
		return c.NoContent(http.StatusNoContent)
	}
	var tokens *tokenResponse
	if represent {
		tokens = &tokenResponse{
			AccessToken:  access,
			TokenType:    "bearer",
			ExpiresIn:    int(ttl.Seconds()),
			RefreshToken: refresh,
		}
		h.Set("Preference-Applied", "return=representation")
	}
	var body any = tokens
	if extra != nil {
		extra.tokenResponse = tokens
		body = extra
	}
	b, err := json.Marshal(body)
	if err != nil {
		return errInternal(fmt.Errorf("encode token response: %w", err))
	}
	return c.Blob(http.StatusOK, jsonType, b)
}
