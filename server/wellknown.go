package server

import (
	"encoding/json"
	"net/http"
	"net/url"
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
// discovery document verifiers use to find the JWKS. Its issuer is
// AUTHD_JWT_ISS and nothing else: built from the request's Host or
// X-Forwarded-Proto, one request with Host: attacker.example would point
// every verifier behind a shared cache at the attacker's keys for
// max-age. Without an issuer that is an http(s) URL there is no document.
func (s *Server) handleOpenIDConfiguration() echo.HandlerFunc {
	return func(c echo.Context) error {
		iss := strings.TrimRight(s.tokens.IssuerName(), "/")
		if u, err := url.Parse(iss); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return &Error{
				Status: http.StatusNotFound, Code: "PGRST125",
				Message: "No discovery document: the issuer is not configured as a URL",
				Hint:    ptr("Set AUTHD_JWT_ISS to authd's public URL, e.g. https://auth.example.com"),
			}
		}
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
