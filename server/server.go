// Package server is authd's HTTP door: PostgREST-compatible /rpc/login,
// /rpc/refresh_token and /rpc/logout, forward-auth at /auth/verify, key
// publication, health checks and metrics. Who a credential names is
// decided by the identity package; errors.go turns its refusals into
// statuses and PostgREST bodies.
package server

import (
	"log/slog"
	"net/http"
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
	RefreshTTL time.Duration
	// ReuseGrace is how long a spent refresh token still earns tokens
	// (concurrent tabs, SSR) before its reuse counts as theft.
	ReuseGrace time.Duration
	Cookie     CookieConfig
	// RequestTimeout bounds each request; 0 means 10 s.
	RequestTimeout time.Duration
	// Metrics is the registry the HTTP series are registered on and
	// GET /metrics serves (give it the identity core's registry, so that
	// its series are served too); nil means a registry of its own.
	Metrics *prometheus.Registry
	// Now is the clock behind the latencies the API reports; nil means
	// time.Now.
	Now func() time.Time
}

// Server holds the API's dependencies.
type Server struct {
	cfg    Config
	ident  *identity.Core
	db     *store.DB
	tokens *token.Issuer
	log    *slog.Logger

	metrics *metrics
	handler http.Handler
}

// New returns the API, an http.Handler: the HTTP door to the identity
// rules of ident, with sessions in db.
func New(cfg Config, ident *identity.Core, db *store.DB, tokens *token.Issuer, log *slog.Logger) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, ident: ident, db: db, tokens: tokens, log: log}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(log)
	// authd sits behind a gateway: the client address (for logs and login
	// throttling) is taken from X-Forwarded-For, but only as far as the hops
	// are loopback or private addresses — a client on the internet cannot
	// pick its own address with that header.
	e.IPExtractor = echo.ExtractIPFromXFFHeader()
	s.metrics = newMetrics(cfg.Metrics, db, cfg.Now)
	e.Use(
		requestLogger(log),
		s.metrics.middleware,
		middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}),
		middleware.ContextTimeout(cfg.RequestTimeout),
	)
	s.routes(e)
	s.metrics.setRoutes(e.Routes())
	s.handler = e
	return s
}

// ServeHTTP serves the HTTP API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

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
