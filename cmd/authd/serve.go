package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	srv := &http.Server{
		Handler:           handler,
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
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("drain connections: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
