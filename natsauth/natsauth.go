// Package natsauth answers NATS auth callout requests with authd's rules:
// a client connecting to nats-server with an authd access token, an API
// key, or a username and password gets a NATS user whose permissions are
// its role's grants in auth.nats_permission — so one role means the same
// thing to PostgREST and to NATS.
//
// The protocol (NATS 2.10+, ADR-26): for each CONNECT, nats-server
// publishes an authorization request JWT, signed by the server, to
// $SYS.REQ.USER.AUTH in the auth callout's account, optionally sealed with
// the curve key in auth_callout.xkey. The answer is an authorization
// response JWT signed by the account key in auth_callout.issuer, holding
// either a user JWT or an error.
package natsauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"authd/identity"
	"authd/natsauth/workload"
	"authd/store"
)

// Subject is where nats-server sends authorization requests.
const Subject = "$SYS.REQ.USER.AUTH"

// queueGroup lets several authd instances share the requests: each is
// answered once, by one of them.
const queueGroup = "authd"

// xkeyHeader carries the server's public curve key when the request is
// encrypted (auth_callout.xkey is set).
const xkeyHeader = "Nats-Server-Xkey"

// Authority is what the callout asks of authd: who a credential names,
// with the rules every door shares (*identity.Core), and what a role may
// do on NATS (*store.DB).
type Authority interface {
	IdentifyToken(ctx context.Context, raw string) (identity.Identity, error)
	IdentifyAPIKey(ctx context.Context, key string) (identity.Identity, error)
	IdentifyPassword(ctx context.Context, username, password, client string) (identity.Identity, error)
	NATSPermissions(ctx context.Context, role string) (store.NATSPermissions, error)
}

// Config is a Service's keys and placement.
type Config struct {
	// Issuer is the account key whose public half is auth_callout.issuer:
	// it signs the responses and the users' JWTs. Required.
	Issuer nkeys.KeyPair
	// XKey, when set, is the curve key whose public half is
	// auth_callout.xkey: requests sealed to it are opened, and their
	// answers sealed back to the server.
	XKey nkeys.KeyPair
	// Account is where users are placed. In config mode (accounts in
	// nats-server.conf) it is an account name, such as "APP" or "$G", put
	// in the user JWT's audience. In operator mode it is the public key
	// (A…) of the account Issuer belongs to (Issuer is that account's key
	// or one of its signing keys); users land in that account.
	Account string
	// Timeout bounds one decision; 0 means 1.5 s. nats-server gives up
	// after its auth timeout (2 s by default), and a request's own expiry
	// caps it further.
	Timeout time.Duration
	// PermissionsTTL is how long a role's permissions are reused; 0 means
	// 1 s.
	PermissionsTTL time.Duration
	// Now is the clock of the permissions cache; nil means time.Now. Tests
	// set it to age the cache without sleeping. Request deadlines and
	// reported latencies keep the real clock: they bound real waits.
	Now func() time.Time
	// MaxInFlight bounds the requests being decided at once; past it,
	// requests are refused at once. 0 means 4096.
	MaxInFlight int
	// Metrics is the registry the callout's series are registered on
	// (authd_nats_auth_*); nil means a registry of its own.
	Metrics *prometheus.Registry
	// Workloads, when set, admits workloads (Kubernetes pods) by a token
	// of a trusted external issuer: a connect token whose iss is one of
	// its issuers is verified by it, and the workload gets
	// WorkloadPermissions' answer (method "k8s"). Any other token is
	// checked as authd's own. WorkloadPermissions is then required.
	Workloads           *workload.Verifier
	WorkloadPermissions workload.Permissions
}

// Service answers authorization requests. Start it on a connection made
// as one of auth_callout.auth_users; Stop drains it.
type Service struct {
	auth      Authority
	log       *slog.Logger
	issuer    nkeys.KeyPair
	issuerPub string
	xkey      nkeys.KeyPair
	account   string
	// operator is true when account is an account public key: users are
	// then placed by their JWT's issuer, not by its audience.
	operator bool
	timeout  time.Duration

	workloads     *workload.Verifier
	workloadPerms workload.Permissions

	perms    permCache
	metrics  *metrics
	inflight chan struct{}
	wg       sync.WaitGroup

	mu  sync.Mutex
	sub *nats.Subscription
}

// New returns a Service. It checks the keys now, so a wrong seed stops
// start-up rather than every connection.
func New(auth Authority, cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.Issuer == nil {
		return nil, errors.New("natsauth: no issuer key")
	}
	pub, err := cfg.Issuer.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("natsauth: issuer key: %w", err)
	}
	if !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("natsauth: issuer key %s is not an account key (want a seed starting SA)", pub)
	}
	if cfg.XKey != nil {
		xpub, err := cfg.XKey.PublicKey()
		if err != nil || !nkeys.IsValidPublicCurveKey(xpub) {
			return nil, errors.New("natsauth: xkey is not a curve key (want a seed starting SX)")
		}
	}
	if cfg.Account == "" {
		return nil, errors.New("natsauth: no target account")
	}
	if (cfg.Workloads == nil) != (cfg.WorkloadPermissions == nil) {
		return nil, errors.New("natsauth: workload verifier and workload permissions go together")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 1500 * time.Millisecond
	}
	if cfg.PermissionsTTL <= 0 {
		cfg.PermissionsTTL = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	inflight := make(chan struct{}, cfg.MaxInFlight)
	return &Service{
		auth:          auth,
		log:           log,
		issuer:        cfg.Issuer,
		issuerPub:     pub,
		xkey:          cfg.XKey,
		account:       cfg.Account,
		operator:      nkeys.IsValidPublicAccountKey(cfg.Account),
		timeout:       cfg.Timeout,
		workloads:     cfg.Workloads,
		workloadPerms: cfg.WorkloadPermissions,
		perms:         newPermCache(cfg.PermissionsTTL, cfg.Now),
		metrics:       newMetrics(cfg.Metrics, inflight),
		inflight:      inflight,
	}, nil
}

// IssuerPublicKey is the public account key to configure as
// auth_callout.issuer.
func (s *Service) IssuerPublicKey() string { return s.issuerPub }

// Start subscribes nc to authorization requests and returns once the NATS
// server has the subscription, so a client connecting after Start is
// answered.
func (s *Service) Start(nc *nats.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sub != nil {
		return errors.New("natsauth: already started")
	}
	sub, err := nc.QueueSubscribe(Subject, queueGroup, s.handle)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", Subject, err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("subscribe to %s: %w", Subject, err)
	}
	s.sub = sub
	return nil
}

// Stop drains the service: the NATS server sends it no more requests, and
// Stop returns once every request already received is answered, or ctx
// ends. Requests then go to the other instances of the queue group.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	sub := s.sub
	s.mu.Unlock()
	if sub == nil {
		return nil
	}
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("drain %s: %w", Subject, err)
	}
	select {
	case <-closed:
	case <-ctx.Done():
		return fmt.Errorf("drain %s: %w", Subject, ctx.Err())
	}
	// The drained subscription delivers no more messages, so no handle
	// call adds to wg from here on.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("answer requests in flight: %w", ctx.Err())
	}
}

// handle takes one request off the subscription. Deciding may wait on
// bcrypt or the database, so each request is decided on its own goroutine:
// a slow password check never delays a token client behind it.
func (s *Service) handle(m *nats.Msg) {
	received := time.Now()
	select {
	case s.inflight <- struct{}{}:
	default:
		// An empty answer is an immediate refusal ("no reason supplied"):
		// better than an answer after the client's timeout.
		s.metrics.observe(methodNone, "busy", time.Since(received))
		s.log.Warn("nats auth refused: too many requests in flight", "in_flight", cap(s.inflight))
		_ = m.Respond(nil)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.inflight }()
		s.answer(m, received)
	}()
}
