// Package identity holds the rules every door of authd shares (HTTP, the
// NATS callout): who a password, an access token or an API key belongs to;
// throttling of failed logins; the bcrypt gate that bounds password
// hashing; role checks; the caches of verified tokens and API keys. Its
// refusals are *Error values of a Kind that each door maps to its own
// protocol, in PostgREST's codes and words.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"authd/store"
	"authd/token"
)

// Config is what the identity rules need beyond their dependencies.
type Config struct {
	// BcryptCost is the cost new password hashes get; a login re-hashes a
	// password stored below it.
	BcryptCost int
	// BcryptSlots is how many bcrypt compares run at once; 0 means
	// DefaultBcryptSlots(GOMAXPROCS).
	BcryptSlots int
	// LoginQueue is how many logins may wait for a bcrypt slot; one more
	// is shed at once (Busy). 0 means DefaultLoginQueue, with the compare
	// time measured by hashing the dummy password at start-up.
	LoginQueue int
	// LoginQueueWait bounds how long a login waits for a bcrypt slot before
	// it is shed (Busy); 0 means DefaultLoginQueueWait.
	LoginQueueWait time.Duration
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
	// DefaultAPIKeyTokenTTL.
	APIKeyTokenTTL time.Duration
	// APIKeyRecheck is how long a cached API key row, or the fact that a
	// key id does not exist, is trusted before the database is asked
	// again: disabling a key takes effect within this time on every
	// instance. 0 means 1 s.
	APIKeyRecheck time.Duration
	// Now is the clock behind expiry checks, limiters, caches and the
	// waits reported; nil means time.Now. Tests set it to move time
	// without waiting.
	Now func() time.Time
	// Metrics is the registry the rules' series (authd_logins_total,
	// authd_bcrypt_*) are registered on; nil means a registry of its own.
	Metrics *prometheus.Registry
}

// The defaults of Config, which authd's configuration shares.
const (
	DefaultLoginQueueWait = 2 * time.Second
	DefaultAPIKeyTokenTTL = 5 * time.Minute
)

// Core applies the identity rules. One Core serves every door of a
// process, so that a user is throttled, and a key limited, alike over
// HTTP and NATS.
type Core struct {
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
}

// New returns the identity rules on db and tokens, with their metrics on
// cfg.Metrics. It hashes a dummy password, which also measures the compare
// time for the default login queue.
func New(cfg Config, db *store.DB, tokens *token.Issuer, log *slog.Logger) (*Core, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.APIKeyTokenTTL <= 0 {
		cfg.APIKeyTokenTTL = DefaultAPIKeyTokenTTL
	}
	if cfg.APIKeyRecheck <= 0 {
		cfg.APIKeyRecheck = time.Second
	}
	if cfg.LoginFailureWindow <= 0 {
		cfg.LoginFailureWindow = time.Minute
	}
	if cfg.LoginQueueWait <= 0 {
		cfg.LoginQueueWait = DefaultLoginQueueWait
	}
	if cfg.BcryptSlots <= 0 {
		cfg.BcryptSlots = DefaultBcryptSlots(runtime.GOMAXPROCS(0))
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	hashStart := cfg.Now()
	dummy, err := store.HashPassword("authd-timing-equaliser", cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("make dummy hash: %w", err)
	}
	if cfg.LoginQueue <= 0 {
		cfg.LoginQueue = DefaultLoginQueue(cfg.BcryptSlots, cfg.Now().Sub(hashStart))
	}
	m := newMetrics(cfg.Metrics, cfg.Now)
	return &Core{
		cfg: cfg, db: db, tokens: tokens, log: log, dummyHash: dummy,
		bcrypt:         newBcryptGate(cfg.BcryptSlots, cfg.LoginQueue, cfg.LoginQueueWait, cfg.BcryptNice, m),
		failuresByUser: newKeyedLimiter(cfg.LoginFailuresPerUser, cfg.LoginFailureWindow),
		failuresByIP:   newKeyedLimiter(cfg.LoginFailuresPerIP, cfg.LoginFailureWindow),
		keys:           keyCache{recheck: cfg.APIKeyRecheck},
		metrics:        m,
	}, nil
}

// Identity is who a credential names, and the JWT to hand on for them:
// what /auth/verify tells a gateway, and what a NATS callout turns into
// permissions. The same rules decide it for every front door.
type Identity struct {
	User    string
	Role    string
	Token   string    // the access JWT to forward
	Expires time.Time // when Token expires
}

// MaxTokenLen bounds the JWT authd will look at. Its own are under 1 KiB;
// PostgREST users' tokens with many claims stay far below this.
const MaxTokenLen = 8 << 10

// CheckTokenSize refuses a token longer than MaxTokenLen before any work
// is spent on it.
func CheckTokenSize(raw string) error {
	if len(raw) > MaxTokenLen {
		return invalidToken("PGRST301", fmt.Sprintf("JWT is larger than %d bytes", MaxTokenLen), nil)
	}
	return nil
}

// IdentifyToken checks an access token: pinned algorithms, the key its kid
// names, expiry with PostgREST's 30 s leeway, audience. No database work;
// tokens already verified under the current keys are remembered. Errors
// are InvalidToken *Error in PostgREST's words.
func (c *Core) IdentifyToken(raw string) (Identity, error) {
	if err := CheckTokenSize(raw); err != nil {
		return Identity{}, err
	}
	gen := c.tokens.Generation()
	v, ok := c.verified.get(raw, gen, c.cfg.Now())
	if !ok {
		claims, err := c.tokens.Verify(raw)
		if err != nil {
			return Identity{}, errInvalidToken(raw, err)
		}
		user := claims.Username
		if user == "" {
			user = claims.Subject
		}
		// Verify requires exp, so ExpiresAt is set.
		v = newVerified(user, claims.Role, claims.ExpiresAt.Time, gen)
		c.verified.put(raw, v)
	}
	if v.role == "" {
		return Identity{}, invalidToken("PGRST303", "JWT has no role claim", nil)
	}
	return Identity{User: v.user, Role: v.role, Token: raw, Expires: time.Unix(v.expires, 0)}, nil
}

// IdentifyPassword checks a username and password with every rule of
// /rpc/login (CheckPassword) but opens no session: the identity carries an
// access token of the usual lifetime.
func (c *Core) IdentifyPassword(ctx context.Context, username, password, client string) (Identity, error) {
	u, err := c.CheckPassword(ctx, username, password, client)
	if err != nil {
		return Identity{}, err
	}
	tok, exp, err := c.tokens.Issue(u.Username, u.Role, "")
	if err != nil {
		return Identity{}, Failure(err)
	}
	return Identity{User: u.Username, Role: u.Role, Token: tok, Expires: exp}, nil
}

// CheckPassword is the one password check, for /rpc/login and for NATS
// clients: throttling per username and client, bcrypt in a bounded slot,
// a dummy compare for unknown users, disabled users refused as a wrong
// password, the role checks and the hash upgrade.
// Its errors are *Error.
func (c *Core) CheckPassword(ctx context.Context, username, password, client string) (u store.User, err error) {
	defer func() { c.metrics.loginResult(err) }()
	// Brute-force protection: refuse before any bcrypt work when this
	// username or this client has failed too often. Only failures count,
	// so a user who knows their password is never slowed.
	now := c.cfg.Now()
	if d := max(c.failuresByUser.wait(username, now), c.failuresByIP.wait(client, now)); d > 0 {
		return store.User{}, errTooManyLogins(d)
	}
	u, err = c.db.User(ctx, username)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, Failure(err)
	}
	// Compare against a dummy hash for an unknown user, so that the
	// answer takes as long as for a wrong password.
	hash := c.dummyHash
	if found {
		hash = u.PasswordHash
	}
	var ok bool
	if err := c.bcrypt.run(ctx, func() { ok = store.CheckPassword(hash, password) }); err != nil {
		return store.User{}, err
	}
	// A disabled user is refused exactly as a wrong password is, after
	// the same bcrypt work: the answer does not say the account exists.
	if !ok || !found || u.DisabledAt != nil {
		now := c.cfg.Now()
		c.failuresByUser.take(username, now)
		c.failuresByIP.take(client, now)
		return store.User{}, errInvalidLogin()
	}
	switch {
	case !u.RoleExists:
		return store.User{}, RoleMissing(u.Role)
	case u.RoleRefusal != "":
		return store.User{}, RolePrivileged(u.Role, u.RoleRefusal)
	}
	if store.NeedsRehash(u.PasswordHash, c.cfg.BcryptCost) {
		c.upgradeHash(ctx, u, password)
	}
	return u, nil
}

// upgradeHash re-hashes a password stored below the configured cost (such
// as SuperStack's cost-6 pgcrypto hashes) now that the plaintext is at hand.
// A failure only delays the upgrade to the next login.
func (c *Core) upgradeHash(ctx context.Context, u store.User, password string) {
	var (
		h       string
		hashErr error
	)
	err := c.bcrypt.run(ctx, func() { h, hashErr = store.HashPassword(password, c.cfg.BcryptCost) })
	if err == nil {
		err = hashErr
	}
	if err == nil {
		err = c.db.UpgradePasswordHash(ctx, u.Username, u.PasswordHash, h)
	}
	if err != nil {
		c.log.WarnContext(ctx, "password hash upgrade failed", "user", u.Username, "err", err)
		return
	}
	c.log.InfoContext(ctx, "password hash upgraded", "user", u.Username, "cost", c.cfg.BcryptCost)
}
