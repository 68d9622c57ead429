package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"authd/server"
	"authd/store"
	"authd/token"
)

// core is what serve and nats-callout share: the database, the keys and
// the API whose rules both front doors apply (one user is throttled, and
// one key limited, alike over HTTP and NATS).
type core struct {
	db     *store.DB
	tokens *token.Issuer
	api    *server.Server
}

// openCore connects to a migrated database, loads the keys and builds the
// API with its metrics on reg. Keys, secrets and the database URL then
// reload without a restart until ctx ends: on SIGHUP, and when their files
// change (Vault agents and Kubernetes rewrite mounted secrets). The caller
// closes the database.
func openCore(ctx context.Context, cfg config, reg *prometheus.Registry, log *slog.Logger) (*core, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL, store.WithStatementTimeout(cfg.StatementTimeout))
	if err != nil {
		return nil, err
	}
	c, err := buildCore(ctx, cfg, db, reg, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

func buildCore(ctx context.Context, cfg config, db *store.DB, reg *prometheus.Registry, log *slog.Logger) (*core, error) {
	pending, err := db.Pending(ctx)
	if err != nil {
		return nil, err
	}
	if pending {
		return nil, errors.New("database schema is not up to date: run `authd migrate up` first")
	}
	ks, err := cfg.keySet()
	if err != nil {
		return nil, err
	}
	tokens, err := token.New(ks, token.Options{
		TTL: cfg.AccessTTL, Audience: cfg.JWTAudience, Issuer: cfg.JWTIssuer, RolePath: cfg.JWTRolePath,
	})
	if err != nil {
		return nil, fmt.Errorf("AUTHD_JWT_ROLE_PATH: %w", err)
	}
	api, err := server.New(server.Config{
		RefreshTTL: cfg.RefreshTTL,
		ReuseGrace: cfg.ReuseGrace,
		BcryptCost: cfg.BcryptCost,
		Cookie:     cfg.Cookie,
		Metrics:    reg,

		LoginFailuresPerUser: cfg.LoginFailuresPerUser,
		LoginFailuresPerIP:   cfg.LoginFailuresPerIP,
		APIKeyTokenTTL:       cfg.APIKeyTokenTTL,
		BcryptWait:           cfg.LoginQueueWait,
		BcryptSlots:          reserveProcs(cfg.getenv, cfg.BcryptSlots),
		LoginQueue:           cfg.LoginQueue,
		BcryptNice:           cfg.BcryptNice,
	}, db, tokens, log)
	if err != nil {
		return nil, err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		watchSecrets(ctx, cfg, tokens, db, hup, log)
	}()
	return &core{db: db, tokens: tokens, api: api}, nil
}

// reserveProcs sizes the bcrypt slots (0: server.DefaultBcryptSlots of
// the CPUs Go uses) and raises GOMAXPROCS by as many, so that compares,
// which each hold a P while they run, leave the usual number of Ps to
// refresh, verify and health checks. An operator's GOMAXPROCS stands.
func reserveProcs(getenv func(string) string, slots int) int {
	if getenv("GOMAXPROCS") != "" {
		if slots == 0 {
			slots = server.DefaultBcryptSlots(runtime.GOMAXPROCS(0))
		}
		return slots
	}
	base := startProcs()
	if slots == 0 {
		slots = server.DefaultBcryptSlots(base)
	}
	runtime.GOMAXPROCS(base + slots)
	return slots
}

// startProcs is GOMAXPROCS as the process started, before reserveProcs
// raised it: a process-wide fact, read once, so that several servers in
// one process (as in tests) do not raise it twice.
var startProcs = sync.OnceValue(func() int { return runtime.GOMAXPROCS(0) })
