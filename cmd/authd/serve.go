package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"authd/server"
	"authd/store"
)

func runServe(ctx context.Context, c *cli, _ []string) error {
	cfg, log, err := startLogging(c, nil)
	if err != nil {
		return err
	}
	p, release := claimProcess(cfg)
	defer release()
	if err := serve(ctx, cfg, p, log, lifecycleLogger(c.stderr, cfg)); err != nil {
		log.Error("authd serve failed", "err", err)
		return loggedError{err}
	}
	return nil
}

// startLogging reads the configuration of serve and nats-callout and
// builds their logger, then logs what is wrong with the configuration and
// which AUTHD_* variables it does not know. more is what else the command
// found wrong with its configuration. A bad configuration is an error
// already logged.
func startLogging(c *cli, more error) (config, *slog.Logger, error) {
	cfg, err := loadConfig(c.getenv)
	log := newLogger(c.stderr, cfg.LogFormat, cfg.LogLevel)
	if err = errors.Join(err, more); err != nil {
		log.Error("invalid configuration", "problems", problems(err))
		return cfg, nil, loggedError{fmt.Errorf("configuration:\n%w", err)}
	}
	if unknown := unknownVars(c.environ()); len(unknown) > 0 {
		log.Warn("unknown AUTHD_* variables are ignored; check their spelling", "variables", unknown)
	}
	return cfg, log, nil
}

// problems lists the errors that errors.Join joined, one string each.
func problems(err error) []string {
	var out []string
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// serve runs the HTTP server in process p. life logs its start and stop.
func serve(ctx context.Context, cfg config, p process, log, life *slog.Logger) error {
	// Listen before anything else, so that a busy port fails start-up at
	// once, and so that the liveness probe answers while the database is
	// awaited.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	addr := ln.Addr().String()
	var api swapHandler
	api.set(server.Starting(log))

	// While draining, every answer closes its connection, so that clients
	// and load balancers holding keep-alive connections stop using them.
	var draining atomic.Bool
	var open atomic.Int64 // connections not yet closed
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			api.ServeHTTP(w, r)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10, // room for a 50 kB hostile header to reach verify and get a 401
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	life.Info("authd listening", "addr", addr)

	// The operator listener, when asked for: /metrics only there, so that
	// the series (routes, rates, pool use) are not for anyone who reaches
	// the API. Listened on now for the same reasons as the API.
	var ops swapHandler
	opsErr := make(chan error, 1)
	if cfg.MetricsAddr != "" {
		opsLn, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			srv.Close()
			<-errc
			return fmt.Errorf("AUTHD_METRICS_ADDR: listen on %s: %w", cfg.MetricsAddr, err)
		}
		ops.set(server.Starting(log))
		osrv := &http.Server{
			Handler:           &ops,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      15 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() { opsErr <- osrv.Serve(opsLn) }()
		defer osrv.Close()
		life.Info("authd metrics listening", "addr", opsLn.Addr().String())
	}

	reg := prometheus.NewRegistry()
	c, err := openCore(ctx, cfg, p, reg, log)
	if err != nil {
		srv.Close()
		<-errc
		if ctx.Err() != nil { // stopped while waiting for the database
			life.Info("stopped")
			return nil
		}
		return err
	}
	// Last: the background jobs end, and only then the pool closes, so
	// that no job fails on a closed pool.
	defer c.close()
	h := server.New(server.Config{
		RefreshTTL:      cfg.RefreshTTL,
		SessionLifetime: cfg.SessionLifetime,
		ReuseGrace:      cfg.ReuseGrace,
		Cookie:          cfg.Cookie,
		AllowedOrigins:  cfg.AllowedOrigins,
		Metrics:         reg,
		MetricsApart:    cfg.MetricsAddr != "",
		TrustedProxies:  cfg.TrustedProxies,
		ShedHold:        cfg.LoginShedHold,
	}, c.ident, c.db, c.tokens, log)
	api.set(h)
	if cfg.MetricsAddr != "" {
		ops.set(h.Operator())
	}
	changes := newChangeListener(c.db, map[string]func(string){
		store.ChannelAPIKey:  c.ident.ForgetAPIKey,
		store.ChannelSession: c.ident.ForgetUser,
	}, c.ident.ForgetAll, reg, log)
	c.goJob(changes.run)
	c.goJob(h.Audit().Run)
	purge := newPurgeJob(c.db, cfg.AuditRetention, reg, log)
	if cfg.PurgeInterval > 0 {
		c.goJob(func(ctx context.Context) { purge.run(ctx, cfg.PurgeInterval) })
	}
	ks := c.tokens.Keys()
	life.Info("authd ready", "addr", addr, "signing_kid", ks.SigningKeyID(), "algorithms", ks.Algorithms(),
		"access_ttl_ms", cfg.AccessTTL.Milliseconds(), "refresh_ttl_ms", cfg.RefreshTTL.Milliseconds(), "session_lifetime_ms", cfg.SessionLifetime.Milliseconds(), "bcrypt_cost", cfg.BcryptCost,
		"trusted_proxies", fmt.Sprint(cfg.TrustedProxies))

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case err := <-opsErr:
		return fmt.Errorf("serve metrics: %w", err)
	case <-ctx.Done():
	}
	// Drain: stop accepting, let requests in flight finish.
	life.Info("shutting down", "grace_ms", cfg.ShutdownGracePeriod.Milliseconds())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGracePeriod)
	defer cancel()
	// Shutdown alone closes idle keep-alive connections at once, and drops
	// without an answer a request it reads after it began: a client that
	// sent a POST on such a connection sees EOF and cannot retry it. So
	// first refuse new connections and let the open ones close after their
	// next answer; Shutdown then closes those left idle.
	draining.Store(true)
	ln.Close()
	<-errc // Serve returns once the listener is closed
	for deadline := time.Now().Add(min(time.Second, cfg.ShutdownGracePeriod/2)); open.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	err = srv.Shutdown(sctx)
	// The audit events of the last requests, which Run, stopped with ctx,
	// may not have seen.
	h.Audit().Flush(context.Background())
	if err != nil {
		return fmt.Errorf("drain connections: %w", err)
	}
	life.Info("stopped")
	return nil
}

// swapHandler serves with the handler set last: the start-up answers while
// the database is awaited, then the API.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// lifecycleLogger logs the lines that say a server started, where it
// listens, and that it stopped, whatever AUTHD_LOG_LEVEL says: they are
// few, and an operator (or a test) that asks for warnings only still needs
// them.
func lifecycleLogger(w io.Writer, cfg config) *slog.Logger {
	return newLogger(w, cfg.LogFormat, "info")
}

// newLogger logs to w in JSON, one object a line (AUTHD_LOG_FORMAT=json,
// for log shippers), or in slog's key=value text (text, for a terminal).
// Durations are logged as numbers of milliseconds, in keys ending _ms.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
