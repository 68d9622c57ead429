// Package server is authd's HTTP door: PostgREST-compatible /rpc/login,
// /rpc/refresh_token and /rpc/logout, forward-auth at /auth/verify, key
// publication, health checks and metrics. Who a credential names is
// decided by the identity package; errors.go turns its refusals into
// statuses and PostgREST bodies.
package server

import (
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"authd/identity"
	"authd/store"
	"authd/token"
)

// Config is what the HTTP API needs beyond its dependencies.
type Config struct {
	// RefreshTTL is how long a refresh token lives unused: the session's
	// idle timeout.
	RefreshTTL time.Duration
	// SessionLifetime is how long a session lives from login however
	// often it is refreshed; no refresh token or refresh cookie outlives
	// it. 0 means 30 days.
	SessionLifetime time.Duration
	// ReuseGrace is how long a spent refresh token still earns tokens
	// (concurrent tabs, SSR) before its reuse counts as theft.
	ReuseGrace time.Duration
	Cookie     CookieConfig
	// AllowedOrigins are the origins (ParseOrigin's form) besides the
	// site's own whose pages may log in, refresh and log out: an
	// application on another origin that the gateway answers CORS for.
	AllowedOrigins []string
	// RequestTimeout bounds each request; 0 means 10 s.
	RequestTimeout time.Duration
	// Metrics is the registry the HTTP series are registered on and
	// GET /metrics serves (give it the identity core's registry, so that
	// its series are served too); nil means a registry of its own.
	Metrics *prometheus.Registry
	// Now is the clock behind the latencies the API reports; nil means
	// time.Now.
	Now func() time.Time
	// TrustedProxies are the gateways whose X-Forwarded-For entries are
	// believed (AUTHD_TRUSTED_PROXIES; see clientAddr); nil believes none,
	// and the client is the TCP peer.
	TrustedProxies []netip.Prefix
	// MetricsApart takes GET /metrics out of the API (it answers 404
	// there, as any unknown path) and leaves it to Operator, for a
	// listener that the public network does not reach.
	MetricsApart bool
	// AuditBuffer is how many audit events may wait to be written before
	// more are dropped; 0 means 10000.
	AuditBuffer int
	// ShedHold is how long a login shed at the door is held before its
	// answer when its client address was shed less than ShedHold ago: a
	// client that ignores Retry-After gets one answer per ShedHold per
	// connection instead of as many as it can post (shed.go). 0 holds
	// none.
	ShedHold time.Duration
}

// Server holds the API's dependencies.
type Server struct {
	cfg    Config
	ident  *identity.Core
	db     *store.DB
	tokens *token.Issuer
	log    *slog.Logger

	auditor  *Auditor
	metrics  *metrics
	shed     *shedder
	handler  http.Handler
	operator http.Handler
}

// New returns the API, an http.Handler: the HTTP door to the identity
// rules of ident, with sessions in db.
func New(cfg Config, ident *identity.Core, db *store.DB, tokens *token.Issuer, log *slog.Logger) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = 30 * 24 * time.Hour
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.AuditBuffer <= 0 {
		cfg.AuditBuffer = auditBuffer
	}
	s := &Server{cfg: cfg, ident: ident, db: db, tokens: tokens, log: log}
	s.auditor = newAuditor(db, cfg.AuditBuffer, cfg.Metrics, cfg.Now, log)

	e := newEcho(log)
	// authd sits behind a gateway: the client address (for logs and login
	// throttling) is taken from X-Forwarded-For, but only as far as the hops
	// are the trusted proxies — nobody else can pick their own address with
	// that header.
	e.IPExtractor = clientIPExtractor(cfg.TrustedProxies)
	s.metrics = newMetrics(cfg.Metrics, db, cfg.Now)
	e.Use(
		s.metrics.middleware,
		s.urgent,
		middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}),
		middleware.ContextTimeout(cfg.RequestTimeout),
	)
	s.routes(e)
	s.metrics.setRoutes(e.Routes())
	// A login the bcrypt queue has no room for is answered at the door,
	// before echo (shed.go).
	s.shed = newShedder(s.metrics, cfg.Now, log, e.IPExtractor)
	s.shed.holds = newShedHolds(cfg.ShedHold)
	s.handler = s.door(e)

	// Scrapes and probes on the operator listener are not counted: they
	// are not the API's traffic.
	op := newEcho(log)
	op.IPExtractor = e.IPExtractor
	op.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}))
	s.operatorRoutes(op)
	s.operator = op
	return s
}

// ServeHTTP serves the HTTP API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Operator serves the operator endpoints, /metrics, /healthz and /readyz,
// for a listener of their own (see Config.MetricsApart).
func (s *Server) Operator() http.Handler { return s.operator }

// newEcho is an echo instance that renders errors in PostgREST's shape and
// logs each request.
func newEcho(log *slog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(log)
	e.Use(requestLogger(log))
	return e
}

// requestLogger logs one line per request: never headers, cookies, query
// strings or bodies, which carry tokens and passwords.
func requestLogger(log *slog.Logger) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus:   true,
		LogURIPath:  true,
		LogMethod:   true,
		LogLatency:  true,
		LogRemoteIP: true,
		HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			log.LogAttrs(c.Request().Context(), slog.LevelInfo, "request",
				slog.String("method", v.Method),
				slog.String("path", v.URIPath),
				slog.Int("status", v.Status),
				slog.Float64("latency_ms", float64(v.Latency.Microseconds())/1000),
				slog.String("remote_ip", v.RemoteIP),
			)
			return nil
		},
	})
}
