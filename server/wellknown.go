package server

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// jwksMaxAge is how long verifiers may cache the key set. A new key is
// published before it signs (see README "Rotate keys"), so a verifier
// that re-fetches within this time never meets an unknown kid.
const jwksMaxAge = "public, max-age=300"

// handleJWKS is GET /.well-known/jwks.json: the public keys that verify
// authd's tokens, for PostgREST's jwt-secret, caddy-jwt's jwk_url, jose's
// createRemoteJWKSet and the like. Never the HMAC secret.
func (s *Server) handleJWKS() echo.HandlerFunc {
	return func(c echo.Context) error {
		b, err := s.tokens.Keys().JWKS()
		if err != nil {
			return errInternal(err)
		}
		c.Response().Header().Set("Cache-Control", jwksMaxAge)
		return c.Blob(http.StatusOK, "application/jwk-set+json", b)
	}
}

// handleOpenIDConfiguration is GET /.well-known/openid-configuration, the
// discovery document verifiers use to find the JWKS. The issuer is
// AUTHD_JWT_ISS, or else the URL the request came in on.
func (s *Server) handleOpenIDConfiguration() echo.HandlerFunc {
	return func(c echo.Context) error {
		iss := s.tokens.IssuerName()
		if iss == "" {
			iss = c.Scheme() + "://" + c.Request().Host
		}
		iss = strings.TrimRight(iss, "/")
		algs := s.tokens.Keys().Algorithms()
		doc := map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              iss + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": algs,
			"response_types_supported":              []string{"token"},
			"subject_types_supported":               []string{"public"},
			"claims_supported":                      []string{"role", "username", "sub", "sid", "iss", "aud", "exp", "iat", "jti"},
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return errInternal(err)
		}
		c.Response().Header().Set("Cache-Control", jwksMaxAge)
		return c.Blob(http.StatusOK, jsonType, b)
	}
}
