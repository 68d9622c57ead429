package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"authd/identity"
	"authd/natsauth"
	"authd/natsauth/workload"
	"authd/store"
)

// natsConfig is what `authd nats-callout` reads beyond serve's
// configuration (database, keys, token lifetimes, login throttling).
type natsConfig struct {
	// URL is the NATS server, AUTHD_NATS_URL.
	URL string
	// How the callout logs in to NATS, as one of auth_callout.auth_users:
	// exactly one of a credentials file (operator mode), an nkey seed
	// file, or a user and password.
	CredsFile    string
	NKeySeedFile string
	User         string
	Password     string
	// Issuer signs the answers: its public key is auth_callout.issuer.
	Issuer nkeys.KeyPair
	// XKey, optional, opens encrypted requests: its public key is
	// auth_callout.xkey.
	XKey nkeys.KeyPair
	// Account is where users land: an account name in config mode, the
	// callout account's public key in operator mode.
	Account string
	// HealthAddr, when set, serves /healthz, /readyz and /metrics.
	HealthAddr string
	// Workload admits Kubernetes workloads by their service-account
	// tokens, when its issuer is set.
	Workload workloadConfig
}

// loadNATSConfig reads the AUTHD_NATS_* variables, reporting every problem
// at once. Seeds never appear in errors.
func loadNATSConfig(getenv func(string) string) (natsConfig, error) {
	e := &env{getenv: getenv}
	c := natsConfig{
		URL:          e.str("AUTHD_NATS_URL", nats.DefaultURL),
		CredsFile:    e.getenv("AUTHD_NATS_CREDS"),
		NKeySeedFile: e.getenv("AUTHD_NATS_NKEY_SEED_FILE"),
		User:         e.getenv("AUTHD_NATS_USER"),
		Account:      e.str("AUTHD_NATS_ACCOUNT", "$G"),
		HealthAddr:   e.getenv("AUTHD_NATS_HEALTH_ADDR"),
		Workload:     loadWorkloadConfig(e),
	}
	var passwordOK bool
	c.Password, passwordOK = natsPassword(e)

	var modes []string
	for _, m := range []struct{ name, value string }{
		{"AUTHD_NATS_CREDS", c.CredsFile},
		{"AUTHD_NATS_NKEY_SEED_FILE", c.NKeySeedFile},
		{"AUTHD_NATS_USER", c.User},
	} {
		if m.value != "" {
			modes = append(modes, m.name)
		}
	}
	switch {
	case len(modes) == 0:
		e.fail("AUTHD_NATS_CREDS", "not set (nor AUTHD_NATS_NKEY_SEED_FILE, nor AUTHD_NATS_USER and AUTHD_NATS_PASSWORD): how authd logs in to NATS as the callout user")
	case len(modes) > 1:
		e.fail(modes[0], "%s are set: log in to NATS one way only", strings.Join(modes, " and "))
	case c.User != "" && c.Password == "" && passwordOK:
		e.fail("AUTHD_NATS_PASSWORD", "not set (nor AUTHD_NATS_PASSWORD_FILE), but AUTHD_NATS_USER is")
	}
	if c.Password != "" && c.User == "" {
		e.fail("AUTHD_NATS_USER", "not set, but a password is")
	}
	if f := c.CredsFile; f != "" {
		if _, err := os.Stat(f); err != nil {
			e.fail("AUTHD_NATS_CREDS", "%v", err)
		}
	}

	if f := e.getenv("AUTHD_NATS_ISSUER_SEED_FILE"); f == "" {
		e.fail("AUTHD_NATS_ISSUER_SEED_FILE", "not set: the account nkey seed (SA…) whose public key is auth_callout.issuer; make one with: nk -gen account -pubout")
	} else {
		c.Issuer = readSeed(e, "AUTHD_NATS_ISSUER_SEED_FILE", f, nkeys.PrefixByteAccount)
	}
	if f := e.getenv("AUTHD_NATS_XKEY_SEED_FILE"); f != "" {
		c.XKey = readSeed(e, "AUTHD_NATS_XKEY_SEED_FILE", f, nkeys.PrefixByteCurve)
	}
	return c, errors.Join(e.errs...)
}

// natsPassword is AUTHD_NATS_PASSWORD, or the contents of
// AUTHD_NATS_PASSWORD_FILE without its final newline. It returns false when
// it reported a problem, so that the caller does not call the password
// "not set" as well.
func natsPassword(e *env) (string, bool) {
	return secretVar(e, "AUTHD_NATS_PASSWORD")
}

// readSeed reads an nkey seed of the given kind from the first line of
// path, as `nk -gen … -pubout` writes it (the public key follows on the
// second line).
func readSeed(e *env, name, path string, kind nkeys.PrefixByte) nkeys.KeyPair {
	b, err := os.ReadFile(path)
	if err != nil {
		e.fail(name, "%v", err)
		return nil
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	prefix, _, err := nkeys.DecodeSeed([]byte(strings.TrimSpace(line)))
	if err != nil || prefix != kind {
		want := map[nkeys.PrefixByte]string{nkeys.PrefixByteAccount: "an account seed (SA…)", nkeys.PrefixByteCurve: "a curve seed (SX…)"}[kind]
		e.fail(name, "%s: first line is not %s", path, want)
		return nil
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(line)))
	if err != nil {
		e.fail(name, "%s: %v", path, err)
		return nil
	}
	return kp
}

// options are the nats.go options that log the callout in.
func (c natsConfig) options() ([]nats.Option, error) {
	switch {
	case c.CredsFile != "":
		return []nats.Option{nats.UserCredentials(c.CredsFile)}, nil
	case c.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("AUTHD_NATS_NKEY_SEED_FILE: %w", err)
		}
		return []nats.Option{o}, nil
	}
	return []nats.Option{nats.UserInfo(c.User, c.Password)}, nil
}

// authority is what the callout asks of authd: the identity rules for who
// a credential names, and the store's NATS grants for what a role may do.
type authority struct {
	*identity.Core
	*store.DB
}

func runNATSCallout(ctx context.Context, c *cli, _ []string) error {
	ncfg, nerr := loadNATSConfig(c.getenv)
	cfg, log, err := startLogging(c, nerr)
	if err != nil {
		return err
	}
	p, release := claimProcess(cfg)
	defer release()
	if err := natsCallout(ctx, cfg, ncfg, p, log, lifecycleLogger(c.stderr, cfg)); err != nil {
		log.Error("authd nats-callout failed", "err", err)
		return loggedError{err}
	}
	return nil
}

// natsCallout answers NATS auth callout requests in process p. life logs
// its start and stop.
func natsCallout(ctx context.Context, cfg config, ncfg natsConfig, p process, log, life *slog.Logger) error {
	// Listen before anything else, so that a busy port fails start-up,
	// and the liveness probe answers while the database is awaited.
	var (
		health     net.Listener
		hsrv       *http.Server
		healthMux  swapHandler
		herr       = make(chan error, 1)
		healthAddr string
	)
	if ncfg.HealthAddr != "" {
		var err error
		if health, err = net.Listen("tcp", ncfg.HealthAddr); err != nil {
			return fmt.Errorf("AUTHD_NATS_HEALTH_ADDR: listen on %s: %w", ncfg.HealthAddr, err)
		}
		healthAddr = health.Addr().String()
		healthMux.set(startingHealth())
		hsrv = &http.Server{
			Handler:           &healthMux,
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() { herr <- hsrv.Serve(health) }()
		defer hsrv.Close()
		life.Info("authd nats-callout health listening", "addr", healthAddr)
	}

	// Keys and the database URL reload as in serve, until the core
	// closes. The NATS seeds do not: nats-server needs a restart to change
	// auth_callout anyway.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.ResetDelivery = resetDelivery{} // no reset requests come over NATS: no delivery workers
	c, err := openCore(ctx, cfg, p, reg, log)
	if err != nil {
		if ctx.Err() != nil { // stopped while waiting for the database
			life.Info("stopped")
			return nil
		}
		return err
	}
	defer c.close()
	db, ks := c.db, c.tokens.Keys()
	reg.MustRegister(db.Collector())
	scfg := natsauth.Config{
		Issuer: ncfg.Issuer, XKey: ncfg.XKey, Account: ncfg.Account, Metrics: reg,
		PermissionsTTL: cfg.CacheRecheck,
	}
	forgetWorkloadRole, forgetWorkloads := func(string) {}, func() {}
	if w := ncfg.Workload; w.Issuer.Issuer != "" {
		if scfg.Workloads, err = workload.NewVerifier(workload.Config{Issuers: []workload.IssuerConfig{w.Issuer}}, log); err != nil {
			return err
		}
		if scfg.WorkloadPermissions, forgetWorkloadRole, forgetWorkloads, err = workloadPermissions(w, db, cfg.CacheRecheck, log); err != nil {
			return err
		}
	}
	svc, err := natsauth.New(authority{c.ident, db}, scfg, log)
	if err != nil {
		return err
	}
	changes := newChangeListener(db, map[string]func(string){
		store.ChannelAPIKey:  c.ident.ForgetAPIKey,
		store.ChannelSession: c.ident.ForgetUser,
		store.ChannelNATS:    func(role string) { svc.ForgetRole(role); forgetWorkloadRole(role) },
	}, func() { c.ident.ForgetAll(); svc.ForgetAll(); forgetWorkloads() }, reg, log)
	c.goJob(changes.run)

	opts, err := ncfg.options()
	if err != nil {
		return err
	}
	closed := make(chan struct{})
	opts = append(opts,
		nats.Name("authd nats-callout"),
		// Once connected, never give up: nats-server restarts and
		// failovers must not need an authd restart.
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected; reconnecting", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("nats error", "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	)
	nc, err := nats.Connect(ncfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", redactURL(ncfg.URL), err)
	}
	defer nc.Close()
	if err := svc.Start(nc); err != nil {
		return err
	}
	if hsrv != nil {
		healthMux.set(healthHandler(reg, nc, db, log))
	}

	var xkey string
	if ncfg.XKey != nil {
		xkey, _ = ncfg.XKey.PublicKey()
	}
	life.Info("authd nats-callout answering", "subject", natsauth.Subject, "url", nc.ConnectedUrlRedacted(),
		"issuer", svc.IssuerPublicKey(), "xkey", xkey, "account", ncfg.Account, "signing_kid", ks.SigningKeyID(),
		"health_addr", healthAddr, "workload_issuer", ncfg.Workload.Issuer.Issuer, "workload_permissions", ncfg.Workload.Permissions)

	select {
	case <-ctx.Done():
	case <-closed:
		return errors.New("NATS connection closed")
	case err := <-herr:
		return fmt.Errorf("serve health: %w", err)
	}
	// Drain: nats-server stops sending requests here (other instances in
	// the queue group take them), and those received are answered.
	life.Info("shutting down", "grace_ms", cfg.ShutdownGracePeriod.Milliseconds())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGracePeriod)
	defer cancel()
	stopErr := svc.Stop(sctx)
	if hsrv != nil {
		_ = hsrv.Shutdown(sctx)
	}
	if stopErr != nil {
		return stopErr
	}
	life.Info("stopped")
	return nil
}

// healthz answers that the process runs: liveness.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"ok"}`)
}

// startingHealth serves the health endpoints while the database is
// awaited: alive, not ready.
func startingHealth() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"status":"starting","database":"unavailable"}`)
	})
	return mux
}

// healthHandler serves /healthz (the process answers: liveness), /readyz
// (connected to NATS and the database answers: readiness) and /metrics
// (the callout's authd_nats_auth_* series, the password and pool series
// of the identity rules it shares with serve, Go and process).
func healthHandler(reg *prometheus.Registry, nc *nats.Conn, db *store.DB, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !nc.IsConnected() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"unavailable","nats":"disconnected"}`)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := db.Ping(ctx); err != nil {
			log.Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"unavailable","nats":"ok","database":"unavailable"}`)
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok","nats":"ok","database":"ok"}`)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// redactURL hides the passwords in a NATS URL (or comma-separated list).
func redactURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
