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
	access, _, err := s.tokens.Issue(g.Username, g.Role, g.SessionID.String())
	if err != nil {
		return errInternal(err)
	}
	// Each cookie lives exactly as long as its token.
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	http.SetCookie(c.Response(), s.cfg.Cookie.access(access, int(s.tokens.TTL().Seconds())))
	for _, ck := range s.cfg.Cookie.refresh(refresh, refreshMaxAge(g.RefreshTTL)) {
		http.SetCookie(c.Response(), ck)
	}
	if !wantsRepresentation(c.Request().Header) {
		return c.NoContent(http.StatusNoContent)
	}
	b, err := json.Marshal(tokenResponse{
		AccessToken:  access,
		TokenType:    "bearer",
		ExpiresIn:    int(s.tokens.TTL().Seconds()),
		RefreshToken: refresh,
	})
	if err != nil {
		return errInternal(fmt.Errorf("encode token response: %w", err))
	}
	h.Set("Preference-Applied", "return=representation")
	return c.Blob(http.StatusOK, jsonType, b)
}
