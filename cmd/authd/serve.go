package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("serve takes no arguments, got %q", args)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(stderr, cfg.LogLevel)

	// The watchers of keys and files stop with wctx, once serve returns.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	c, err := openCore(wctx, cfg, prometheus.NewRegistry(), log)
	if err != nil {
		return err
	}
	defer c.db.Close()
	handler, ks := c.api, c.tokens.Keys()

	if cfg.PurgeInterval > 0 {
		go handler.RunPurge(wctx, cfg.PurgeInterval)
	}

	// Listen before serving so that a busy port fails start-up.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	// While draining, every answer closes its connection, so that clients
	// and load balancers holding keep-alive connections stop using them.
	var draining atomic.Bool
	var open atomic.Int64 // connections not yet closed
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			handler.ServeHTTP(w, r)
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
	log.Info("authd listening", "addr", ln.Addr().String(), "signing_kid", ks.SigningKeyID(), "algorithms", ks.Algorithms(),
		"access_ttl", cfg.AccessTTL.String(), "refresh_ttl", cfg.RefreshTTL.String(), "bcrypt_cost", cfg.BcryptCost)
	fmt.Fprintf(stdout, "authd listening on %s\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Drain: stop accepting, let requests in flight finish.
	log.Info("shutting down", "grace", cfg.ShutdownGracePeriod.String())
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
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("drain connections: %w", err)
	}
	log.Info("stopped")
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
