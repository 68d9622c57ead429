package server

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// routes is the whole API.
func (s *Server) routes(e *echo.Echo) {
	// The endpoints that set or read the session cookies answer only the
	// site itself (origin.go).
	// A browser's plain form post to login or logout (no JavaScript) is
	// answered with a redirect or an HTML page instead (form.go).
	e.POST("/rpc/login", s.handleLogin(), s.browserForm(formSignIn), s.sameSite)
	e.POST("/rpc/refresh_token", s.handleRefresh(), s.sameSite)
	e.POST("/rpc/logout", s.handleLogout(), s.browserForm(formSignOut), s.sameSite)
	// Off unless AUTHD_SIGNUP_ROLE is set: then it is as if the function
	// did not exist, whoever asks.
	if s.ident.SignupEnabled() {
		e.POST("/rpc/signup", s.handleSignup(), s.sameSite)
	} else {
		e.POST("/rpc/signup", handleNoSignup())
	}
	// Self-service: authenticated by the access token, which may be a
	// cookie, so the origin policy applies as well (selfservice.go).
	e.POST("/rpc/change_password", s.handleChangePassword(), s.sameSite)
	e.POST("/rpc/sessions", s.handleSessions(), s.sameSite)
	e.POST("/rpc/revoke_session", s.handleRevokeSession(), s.sameSite)
	// Second factor (mfa.go): authenticated by the access token, as above.
	// The code step of a sign-in without JavaScript is a browser form too
	// (form.go: the login's page for a user with a factor posts here).
	e.POST("/rpc/mfa_enroll", s.handleMFAEnroll(), s.sameSite)
	e.POST("/rpc/mfa_verify", s.handleMFAVerify(), s.browserForm(formSignIn), s.sameSite)
	// Password reset (reset.go): no session, but a page of the site asks.
	e.POST("/rpc/request_password_reset", s.handleRequestPasswordReset(), s.sameSite)
	e.POST("/rpc/reset_password", s.handleResetPassword(), s.sameSite)

	// Forward-auth for gateways; they may send any method.
	e.Any("/auth/verify", s.handleVerify())

	// Key publication for verifiers (PostgREST, caddy-jwt, NATS callouts).
	getOrHead(e, "/.well-known/jwks.json", s.handleJWKS())
	getOrHead(e, "/.well-known/openid-configuration", s.handleOpenIDConfiguration())

	getOrHead(e, "/healthz", handleHealthz())
	getOrHead(e, "/auth/health", handleHealthz()) // the seed's nginx gateway path
	getOrHead(e, "/readyz", s.handleReadyz())
	if !s.cfg.MetricsApart {
		getOrHead(e, metricsPath, s.metrics.handler())
	}
}

// operatorRoutes are the endpoints of the operator listener
// (AUTHD_METRICS_ADDR): what Prometheus and probes ask, and nothing a
// client needs.
func (s *Server) operatorRoutes(e *echo.Echo) {
	getOrHead(e, metricsPath, s.metrics.handler())
	getOrHead(e, "/healthz", handleHealthz())
	getOrHead(e, "/readyz", s.handleReadyz())
}

// getOrHead routes GET and HEAD on path to h. Probes, load balancers and
// caches ask with HEAD; net/http answers it with GET's status and
// headers and drops the body h writes.
func getOrHead(e *echo.Echo, path string, h echo.HandlerFunc) {
	e.Match([]string{http.MethodGet, http.MethodHead}, path, h)
}
