// Package server is authd's HTTP API: PostgREST-compatible /rpc/login,
// /rpc/refresh_token and /rpc/logout, plus health checks.
package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"authd/store"
	"authd/token"
)

// Config is what the HTTP API needs beyond its dependencies.
type Config struct {
	RefreshTTL time.Duration
	// ReuseGrace is how long a spent refresh token still earns tokens
	// (concurrent tabs, SSR) before its reuse counts as theft.
	ReuseGrace time.Duration
	BcryptCost int
	Cookie     CookieConfig
	// RequestTimeout bounds each request; 0 means 10 s.
	RequestTimeout time.Duration
	// Metrics is the registry authd's series are registered on and
	// GET /metrics serves; nil means a registry of its own.
	Metrics *prometheus.Registry
	// BcryptSlots is how many bcrypt compares run at once; 0 means
	// DefaultBcryptSlots(GOMAXPROCS).
	BcryptSlots int
	// LoginQueue is how many logins may wait for a bcrypt slot; one more
	// is shed at once with 503. 0 means DefaultLoginQueue, with the
	// compare time measured by hashing the dummy password at start-up.
	LoginQueue int
	// BcryptWait bounds how long a login waits for a bcrypt slot before
	// it is shed with 503; 0 means 2 s.
	BcryptWait time.Duration
	// BcryptNice is the nice value of the threads bcrypt runs on (Linux);
	// 0 leaves them at the process's priority.
	BcryptNice int
	// LoginFailuresPerUser and LoginFailuresPerIP are the failed logins
	// allowed per LoginFailureWindow for one username and from one client
	// address; 0 means no limit.
	LoginFailuresPerUser int
	LoginFailuresPerIP   int
	// LoginFailureWindow is the period those failures are counted over
	// (their buckets refill over it); 0 means a minute.
	LoginFailureWindow time.Duration
	// APIKeyTokenTTL is the life of the JWTs minted for API keys; 0 means
	// 5 minutes.
	APIKeyTokenTTL time.Duration
	// APIKeyRecheck is how long a cached API key row, or the fact that a
	// key id does not exist, is trusted before the database is asked
	// again: disabling a key takes effect within this time on every
	// instance. 0 means 1 s.
	APIKeyRecheck time.Duration
	// Now is the clock behind expiry checks, limiters, caches and the
	// timings authd reports; nil means time.Now. Tests set it to move
	// time without waiting.
	Now func() time.Time
}

// Server holds the API's dependencies.
type Server struct {
	cfg    Config
	db     *store.DB
	tokens *token.Issuer
	log    *slog.Logger
	// dummyHash is compared against when a login names no known user, so
	// that an unknown user costs the same bcrypt work as a wrong password.
	dummyHash string
	// bcrypt bounds and deprioritises password hashing, so that a flood
	// of logins is shed instead of starving everything else of CPU.
	bcrypt *bcryptGate

	failuresByUser *keyedLimiter
	failuresByIP   *keyedLimiter

	keys     keyCache
	verified verifiedCache

	metrics *metrics
	handler http.Handler
}

// New returns the API. It is an http.Handler, and its Identify methods
// serve other front doors (the NATS callout) with the same rules.
func New(cfg Config, db *store.DB, tokens *token.Issuer, log *slog.Logger) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.APIKeyTokenTTL <= 0 {
		cfg.APIKeyTokenTTL = 5 * time.Minute
	}
	if cfg.APIKeyRecheck <= 0 {
		cfg.APIKeyRecheck = time.Second
	}
	if cfg.LoginFailureWindow <= 0 {
		cfg.LoginFailureWindow = time.Minute
	}
	if cfg.BcryptWait <= 0 {
		cfg.BcryptWait = 2 * time.Second
	}
	if cfg.BcryptSlots <= 0 {
		cfg.BcryptSlots = DefaultBcryptSlots(runtime.GOMAXPROCS(0))
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	hashStart := cfg.Now()
	dummy, err := store.HashPassword("authd-timing-equaliser", cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("make dummy hash: %w", err)
	}
	if cfg.LoginQueue <= 0 {
		cfg.LoginQueue = DefaultLoginQueue(cfg.BcryptSlots, cfg.Now().Sub(hashStart))
	}
	s := &Server{
		cfg: cfg, db: db, tokens: tokens, log: log, dummyHash: dummy,
		failuresByUser: newKeyedLimiter(cfg.LoginFailuresPerUser, cfg.LoginFailureWindow),
		failuresByIP:   newKeyedLimiter(cfg.LoginFailuresPerIP, cfg.LoginFailureWindow),
		keys:           keyCache{recheck: cfg.APIKeyRecheck},
	}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(log)
	// authd sits behind a gateway: the client address (for logs and login
	// throttling) is taken from X-Forwarded-For, but only as far as the hops
	// are loopback or private addresses — a client on the internet cannot
	// pick its own address with that header.
	e.IPExtractor = echo.ExtractIPFromXFFHeader()
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(cfg.Metrics, db, cfg.Now)
	s.bcrypt = newBcryptGate(cfg.BcryptSlots, cfg.LoginQueue, cfg.BcryptWait, cfg.BcryptNice, s.metrics)
	e.Use(
		requestLogger(log),
		s.metrics.middleware,
		middleware.RecoverWithConfig(middleware.RecoverConfig{DisablePrintStack: true}),
		middleware.ContextTimeout(cfg.RequestTimeout),
	)
	s.routes(e)
	s.handler = e
	return s, nil
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
