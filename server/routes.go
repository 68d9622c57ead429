package server

import "github.com/labstack/echo/v4"

// routes is the whole API.
func (s *Server) routes(e *echo.Echo) {
	e.POST("/rpc/login", s.handleLogin())
	e.POST("/rpc/refresh_token", s.handleRefresh())
	e.POST("/rpc/logout", s.handleLogout())

	// Forward-auth for gateways; they may send any method.
	e.Any("/auth/verify", s.handleVerify())

	// Key publication for verifiers (PostgREST, caddy-jwt, NATS callouts).
	e.GET("/.well-known/jwks.json", s.handleJWKS())
	e.GET("/.well-known/openid-configuration", s.handleOpenIDConfiguration())

	e.GET("/healthz", handleHealthz())
	e.GET("/auth/health", handleHealthz()) // the seed's nginx gateway path
	e.GET("/readyz", s.handleReadyz())
	e.GET("/metrics", s.metrics.handler())
}
