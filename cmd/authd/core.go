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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"authd/identity"
	"authd/store"
	"authd/token"
)

// core is what serve and nats-callout share: the database, the keys and
// the identity rules both front doors apply (one user is throttled, and
// one key limited, alike over HTTP and NATS).
type core struct {
	db     *store.DB
	tokens *token.Issuer
	ident  *identity.Core
	// goJob runs job in the background until close.
	goJob func(job func(context.Context))
	// close stops the background jobs, waits for them and for the
	// writes requests left behind (identity.Core.Wait) to return, and
	// then closes the database, so that none fails on a closed pool.
	close func()
}

// process is what serve and nats-callout take from the process they run
// in: set up once by claimProcess, at the start of the command, and handed
// to the core, which changes nothing process-wide itself.
type process struct {
	// bcryptCPUs is the CPUs the bcrypt slots are sized for
	// (identity.BcryptSlotRange); GOMAXPROCS has room for the most
	// compares they allow besides.
	bcryptCPUs int
	// hup delivers SIGHUP: reload the keys, secrets and database URL.
	hup <-chan os.Signal
}

// claimProcess sizes the bcrypt slots, raising GOMAXPROCS by as many (see
// reserveProcs), and routes SIGHUP to a channel. release stops the routing.
func claimProcess(cfg config) (p process, release func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return process{bcryptCPUs: reserveProcs(cfg.FixedProcs, cfg.BcryptSlots), hup: hup}, func() { signal.Stop(hup) }
}

// reserveProcs returns the CPUs the bcrypt slots are sized for (the CPUs
// Go uses by default) and sets GOMAXPROCS to that plus the most compares
// the slots allow at once (AUTHD_BCRYPT_SLOTS, 0: identity.BcryptSlotRange),
// so that compares, which each hold a P while they run, leave the usual
// number of Ps to refresh, verify and health checks. It sets GOMAXPROCS
// from the default rather than adding to its current value, so that a
// second server in one process (as in tests) does not raise it twice; of
// servers starting at once, the last to set it wins. An operator's
// GOMAXPROCS (fixed) stands, and is the CPUs.
func reserveProcs(fixed bool, slots int) (cpus int) {
	if fixed {
		return runtime.GOMAXPROCS(0)
	}
	runtime.SetDefaultGOMAXPROCS()
	base := runtime.GOMAXPROCS(0)
	_, wide := identity.BcryptSlotRange(base, slots)
	runtime.GOMAXPROCS(base + wide)
	return base
}

// openCore waits for the database (AUTHD_DB_WAIT), checks that it is
// migrated, loads the keys and builds the identity rules with their
// metrics on reg.
// Keys, secrets and the database URL then reload without a restart until
// close: on p.hup (SIGHUP), and when their files change (Vault agents and
// Kubernetes rewrite mounted secrets).
func openCore(ctx context.Context, cfg config, p process, reg *prometheus.Registry, log *slog.Logger) (*core, error) {
	db, err := waitForDB(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithCancel(context.Background())
	var jobs sync.WaitGroup
	c := &core{
		db:    db,
		goJob: func(job func(context.Context)) { jobs.Go(func() { job(jctx) }) },
	}
	c.close = func() {
		cancel()
		jobs.Wait()
		if c.ident != nil { // nil when build failed before it
			c.ident.Wait()
		}
		db.Close()
	}
	if err := c.build(ctx, cfg, p, reg, log); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// waitForDB connects to the database, trying again while it cannot be
// reached (not up yet, as when compose or Kubernetes start authd beside
// it), with a warning per attempt, until cfg.DBWait has passed. A failure
// that waiting cannot fix (a bad URL or password, a missing database)
// ends the wait at once.
func waitForDB(ctx context.Context, cfg config, log *slog.Logger) (*store.DB, error) {
	var db *store.DB
	err := retry(ctx, cfg.DBWait, log, func(ctx context.Context) error {
		var err error
		db, err = store.Open(ctx, cfg.DatabaseURL, append(cfg.DBPath.options(), store.WithStatementTimeout(cfg.StatementTimeout))...)
		return err
	})
	return db, err
}

// backoff is the pause after failed attempt n (from 1): 250 ms, doubling
// up to 5 s.
func backoff(n int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}

// retry calls try until it succeeds, fails in a way store.Transient says
// waiting cannot fix, or wait has passed (0: try once). Each attempt gets
// the time left as its deadline. Its errors come from store, which names
// the user, host, port and database of a URL but never its password.
func retry(ctx context.Context, wait time.Duration, log *slog.Logger, try func(context.Context) error) error {
	deadline := time.Now().Add(wait)
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if wait > 0 {
			actx, cancel = context.WithDeadline(ctx, deadline)
		}
		err := try(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("wait for the database: %w", ctx.Err())
		case wait == 0 || !store.Transient(err):
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("database not reachable within AUTHD_DB_WAIT=%s (%d attempts): %w", wait, attempt, err)
		}
		pause := min(backoff(attempt), left)
		log.Warn("database not reachable; retrying", "attempt", attempt, "err", err,
			"retry_in_ms", pause.Milliseconds(), "wait_left_ms", left.Milliseconds())
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for the database: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// build checks the schema, loads the keys and builds the identity rules.
func (c *core) build(ctx context.Context, cfg config, p process, reg *prometheus.Registry, log *slog.Logger) error {
	db := c.db
	pending, err := db.Pending(ctx)
	if err != nil {
		return err
	}
	if pending {
		return errors.New("database schema is not up to date: run `authd migrate up` first")
	}
	// A sign-up role the database would refuse stops start-up, rather
	// than every sign-up.
	if cfg.SignupRole != "" {
		if err := db.CheckTokenRole(ctx, cfg.SignupRole); err != nil {
			return fmt.Errorf("AUTHD_SIGNUP_ROLE: %w (create it NOLOGIN, as for `authd user add --role`, or unset AUTHD_SIGNUP_ROLE to turn sign-up off)", err)
		}
	}
	ks, keys, err := cfg.keySet()
	if err != nil {
		return err
	}
	tokens, err := token.New(ks, token.Options{
		TTL: cfg.AccessTTL, Audience: cfg.JWTAudience, Issuer: cfg.JWTIssuer, RolePath: cfg.JWTRolePath,
		// The longest-lived tokens authd mints: access or API-key tokens.
		MaxLifetime: max(cfg.AccessTTL, cfg.APIKeyTokenTTL),
	})
	if err != nil {
		return fmt.Errorf("AUTHD_JWT_ROLE_PATH: %w", err)
	}
	// A nil *Dispatcher must not become a non-nil interface.
	resets := cfg.ResetDelivery.dispatcher(db, reg, log)
	var deliver identity.ResetDeliverer
	if resets != nil {
		deliver = resets
	}
	ident, err := identity.New(identity.Config{
		BcryptCost:           cfg.BcryptCost,
		PasswordMinLength:    cfg.PasswordMinLength,
		Metrics:              reg,
		LoginFailuresPerUser: cfg.LoginFailuresPerUser,
		LoginFailuresPerIP:   cfg.LoginFailuresPerIP,
		LoginsPerIP:          cfg.LoginsPerIP,
		APIKeyTokenTTL:       cfg.APIKeyTokenTTL,
		CacheRecheck:         cfg.CacheRecheck,
		LoginQueueWait:       cfg.LoginQueueWait,
		BcryptSlots:          cfg.BcryptSlots,
		BcryptCPUs:           p.bcryptCPUs,
		LoginQueue:           cfg.LoginQueue,
		BcryptNice:           cfg.BcryptNice,
		SignupRole:           cfg.SignupRole,
		SignupsPerIP:         cfg.SignupsPerIP,
		ResetsPerIP:          cfg.ResetsPerIP,
		ResetTTL:             cfg.ResetTTL,
		ResetsPerUser:        cfg.ResetsPerUser,
		ResetLinkBase:        cfg.ResetDelivery.LinkBase,
		ResetDelivery:        deliver,
		MFAPendingTTL:        cfg.MFAPendingTTL,
	}, db, tokens, log)
	if err != nil {
		return err
	}
	c.tokens, c.ident = tokens, ident
	if resets != nil {
		c.goJob(resets.Run)
	}
	c.goJob(func(ctx context.Context) { watchSecrets(ctx, cfg, keys, tokens, db, p.hup, log) })
	return nil
}
