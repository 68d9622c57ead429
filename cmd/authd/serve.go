package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"authd/server"
	"authd/store"
	"authd/token"
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

	db, err := store.Open(ctx, cfg.DatabaseURL, store.WithStatementTimeout(cfg.StatementTimeout))
	if err != nil {
		return err
	}
	defer db.Close()
	pending, err := db.Pending(ctx)
	if err != nil {
		return err
	}
	if pending {
		return errors.New("database schema is not up to date: run `authd migrate up` first")
	}

	ks, err := cfg.keySet()
	if err != nil {
		return err
	}
	tokens, err := token.New(ks, token.Options{
		TTL: cfg.AccessTTL, Audience: cfg.JWTAudience, Issuer: cfg.JWTIssuer, RolePath: cfg.JWTRolePath,
	})
	if err != nil {
		return fmt.Errorf("AUTHD_JWT_ROLE_PATH: %w", err)
	}
	// Keys, secrets and the database URL change without a restart: on
	// SIGHUP, and when their files change (Vault agents and Kubernetes
	// rewrite mounted secrets).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watchSecrets(wctx, cfg, tokens, db, hup, log)
	handler, err := server.New(server.Config{
		RefreshTTL: cfg.RefreshTTL,
		ReuseGrace: cfg.ReuseGrace,
		BcryptCost: cfg.BcryptCost,
		Cookie:     cfg.Cookie,

		LoginFailuresPerUser: cfg.LoginFailuresPerUser,
		LoginFailuresPerIP:   cfg.LoginFailuresPerIP,
		APIKeyTokenTTL:       cfg.APIKeyTokenTTL,
		BcryptWait:           cfg.LoginQueueWait,
	}, db, tokens, log)
	if err != nil {
		return err
	}

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
