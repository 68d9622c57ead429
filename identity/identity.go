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
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"authd/store"
	"authd/token"
)

// Config is what the identity rules need beyond their dependencies.
type Config struct {
	// BcryptCost is the cost new password hashes get; a login re-hashes a
	// password stored below it.
	BcryptCost int
	// BcryptSlots is how many bcrypt compares run at once; 0 means
	// BcryptSlotRange: one per CPU while no latency-sensitive request
	// is about (Core.EnterUrgent), one fewer while one is.
	BcryptSlots int
	// BcryptCPUs is the CPUs BcryptSlotRange counts; 0 means GOMAXPROCS.
	BcryptCPUs int
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
	// LoginsPerIP are the logins allowed a minute from one client
	// address whatever their outcome, ten seconds' worth of them at once
	// at most (loginBurstShare): a bound on the bcrypt work one address
	// is given, not on guessing (the failure limits are). 0 means no
	// limit.
	LoginsPerIP int
	// APIKeyTokenTTL is the life of the JWTs minted for API keys; 0 means
	// DefaultAPIKeyTokenTTL.
	APIKeyTokenTTL time.Duration
	// CacheRecheck (AUTHD_CACHE_RECHECK) is how long a cached API key row
	// (or the fact that a key id does not exist) and a user's state are
	// trusted before the database is asked again, when no change
	// notification drops them first: the bound on a revocation that is not
	// heard. 0 means 1 s.
	CacheRecheck time.Duration
	// SignupRole is the role of the users POST /rpc/signup creates
	// (AUTHD_SIGNUP_ROLE); "" means sign-up is off.
	SignupRole string
	// PasswordMinLength is the password policy's minimum, in characters,
	// for passwords users choose themselves (sign-up, ChangePassword;
	// CheckNewPassword); 0 means DefaultPasswordMinLength.
	PasswordMinLength int
	// SignupsPerIP are the sign-ups allowed per SignupWindow from one
	// client address; 0 means no limit.
	SignupsPerIP int
	// SignupWindow is the period those sign-ups are counted over; 0 means
	// DefaultSignupWindow.
	SignupWindow time.Duration
	// ResetsPerIP are the password reset requests allowed per ResetWindow
	// from one client address; 0 means no limit.
	ResetsPerIP int
	// ResetsPerUser are the password reset requests allowed per
	// ResetWindow naming one user, over every instance; 0 means no limit.
	ResetsPerUser int
	// ResetWindow is the period those requests are counted over; 0 means
	// DefaultResetWindow.
	ResetWindow time.Duration
	// ResetTTL is the life of a password reset token; 0 means
	// DefaultResetTTL.
	ResetTTL time.Duration
	// ResetLinkBase is the site the reset links handed to ResetDelivery
	// point to (notify.Link); "" sends the token without a link.
	ResetLinkBase string
	// ResetDelivery receives every reset token issued, besides pg_notify;
	// nil means pg_notify only.
	ResetDelivery ResetDeliverer
	// MFAPendingTTL (AUTHD_MFA_PENDING_TTL) is how long the session a
	// login of a user with a second factor opens has to present it, and
	// the longest life of its aal1 access tokens; 0 means
	// DefaultMFAPendingTTL.
	MFAPendingTTL time.Duration
	// MFAIssuer names authd in authenticator apps (the otpauth URI's
	// issuer); "" means DefaultMFAIssuer.
	MFAIssuer string
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
	DefaultLoginsPerIP    = 60
	DefaultAPIKeyTokenTTL = 5 * time.Minute
)

// loginBurstShare: of a minute's logins from one address, a sixth (ten
// seconds' worth) may come at once. Users behind one address pressing
// "log in" together are let through; one client with a right password
// cannot keep a CPU busy with compares: at the default, 10 compares at
// once (under a second of one CPU at cost 10), then one a second.
const loginBurstShare = 6

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
	// dummyCost is dummyHash's bcrypt cost, the work every refused login
	// does at least (see equalise).
	dummyCost int
	// compare is store.CheckPassword; tests count the compares through it.
	compare func(hash, password string) bool
	// bcrypt bounds and deprioritises password hashing, so that a flood
	// of logins is shed instead of starving everything else of CPU.
	bcrypt *bcryptGate

	// failuresByClient limits failed logins per client address in this
	// process; the per-username limit is shared by every instance through
	// the database (store.ReserveLoginFailure).
	failuresByClient *clientLimiter
	// loginsByClient limits logins of any outcome per client address in
	// this process: the bcrypt work is this process's.
	loginsByClient *clientLimiter
	// signupsByClient limits sign-ups per client address in this process.
	signupsByClient *clientLimiter
	// resetsByClient limits password reset requests per client address.
	resetsByClient *clientLimiter

	keys     keyCache
	verified verifiedCache
	// users caches each user's state for checkLive.
	users *Cache[string, userEntry]

	metrics *metrics

	// touches are the writes of API keys' last use in flight (touchAPIKey),
	// off the request path; Wait waits for them.
	touches sync.WaitGroup
}

// Wait waits for the background writes that requests left behind (an API
// key's last use) to end, each within seconds. Call it once no request
// can reach c any more, before the database closes: a write that outlived
// it would fail on a closed pool, and the use it records would be lost.
func (c *Core) Wait() { c.touches.Wait() }

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
	if cfg.CacheRecheck <= 0 {
		cfg.CacheRecheck = time.Second
	}
	if cfg.LoginFailureWindow <= 0 {
		cfg.LoginFailureWindow = time.Minute
	}
	if cfg.PasswordMinLength <= 0 {
		cfg.PasswordMinLength = DefaultPasswordMinLength
	}
	if cfg.SignupWindow <= 0 {
		cfg.SignupWindow = DefaultSignupWindow
	}
	if cfg.ResetWindow <= 0 {
		cfg.ResetWindow = DefaultResetWindow
	}
	if cfg.ResetTTL <= 0 {
		cfg.ResetTTL = DefaultResetTTL
	}
	if cfg.MFAPendingTTL <= 0 {
		cfg.MFAPendingTTL = DefaultMFAPendingTTL
	}
	if cfg.MFAIssuer == "" {
		cfg.MFAIssuer = DefaultMFAIssuer
	}
	if cfg.LoginQueueWait <= 0 {
		cfg.LoginQueueWait = DefaultLoginQueueWait
	}
	if cfg.BcryptCPUs <= 0 {
		cfg.BcryptCPUs = runtime.GOMAXPROCS(0)
	}
	narrow, wide := BcryptSlotRange(cfg.BcryptCPUs, cfg.BcryptSlots)
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	hashStart := cfg.Now()
	dummy, err := store.HashPassword("authd-timing-equaliser", cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("make dummy hash: %w", err)
	}
	if cfg.LoginQueue <= 0 {
		// At least 4 per slot as they widen: logins alone fill the wide
		// slots, and a burst of them must find room behind.
		cfg.LoginQueue = max(DefaultLoginQueue(narrow, cfg.Now().Sub(hashStart)), min(4*wide, 10000))
	}
	// Not always cfg.BcryptCost: bcrypt hashes at its default for a cost
	// below its minimum.
	dummyCost, err := bcrypt.Cost([]byte(dummy))
	if err != nil {
		return nil, fmt.Errorf("read dummy hash: %w", err)
	}
	m := newMetrics(cfg.Metrics, cfg.Now)
	return &Core{
		cfg: cfg, db: db, tokens: tokens, log: log,
		dummyHash: dummy, dummyCost: dummyCost, compare: store.CheckPassword,
		bcrypt:           newBcryptGate(narrow, wide, cfg.LoginQueue, cfg.LoginQueueWait, cfg.BcryptNice, m),
		failuresByClient: newClientLimiter(cfg.LoginFailuresPerIP, cfg.LoginFailureWindow, cfg.Now),
		loginsByClient:   newBurstLimiter(cfg.LoginsPerIP, time.Minute, cfg.LoginsPerIP/loginBurstShare, cfg.Now),
		signupsByClient:  newClientLimiter(cfg.SignupsPerIP, cfg.SignupWindow, cfg.Now),
		resetsByClient:   newClientLimiter(cfg.ResetsPerIP, cfg.ResetWindow, cfg.Now),
		keys:             newKeyCache(cfg.Now),
		verified:         newVerifiedCache(cfg.Now),
		users:            NewCache[string, userEntry](maxUsers, cfg.Now),
		metrics:          m,
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
	// SessionID is the token's sid claim: the login session of a user's
	// access token, "" for a token of no session.
	SessionID string
	// AAL is the token's aal claim (token.AAL1, token.AAL2), "" for a
	// token without one.
	AAL string
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
// names, expiry with PostgREST's 30 s leeway, audience — and that its
// session, user, role or API key is still live (checkLive), from a cache
// of each user's state that change notifications keep current, so no
// database round trip per request. Tokens already verified under the
// current keys are remembered. Errors are *Error in PostgREST's words:
// InvalidToken, or Forbidden for a role gone or refused.
func (c *Core) IdentifyToken(ctx context.Context, raw string) (Identity, error) {
	if err := CheckTokenSize(raw); err != nil {
		return Identity{}, err
	}
	gen := c.tokens.Generation()
	v, ok := c.verified.get(raw, gen)
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
		var issued time.Time
		if claims.IssuedAt != nil {
			issued = claims.IssuedAt.Time
		}
		v = newVerified(user, claims.Role, claims.SessionID, claims.AAL, issued, claims.ExpiresAt.Time, gen)
		c.verified.put(raw, v)
	}
	if v.role == "" {
		return Identity{}, invalidToken("PGRST303", "JWT has no role claim", nil)
	}
	if err := c.checkLive(ctx, v); err != nil {
		return Identity{}, err
	}
	return Identity{User: v.user, Role: v.role, Token: raw, Expires: time.Unix(v.expires, 0), SessionID: v.sid, AAL: v.aal}, nil
}

// MaxUsernameLen bounds, in bytes, the user names a login looks up; a
// longer name is an unknown user. `authd user add` refuses to create one.
const MaxUsernameLen = 256

// WellFormed reports whether s can be a name or credential authd stores:
// valid UTF-8 without NUL (PostgreSQL's text holds neither), at most max
// bytes. Input that is not is refused as an unknown user or an invalid
// token would be, before any database work.
func WellFormed(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
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
	return Identity{User: u.Username, Role: u.Role, Token: tok, Expires: exp, AAL: token.AAL1}, nil
}

// CheckPassword is the one password check, for /rpc/login and for NATS
// clients: throttling per username and client, bcrypt in a bounded slot,
// a dummy compare for unknown users, disabled users refused as a wrong
// password, the role checks and the hash upgrade.
// Its errors are *Error.
func (c *Core) CheckPassword(ctx context.Context, username, password, client string) (store.User, error) {
	u, r, err := c.checkPassword(ctx, username, password, client)
	if err != nil {
		return store.User{}, err
	}
	r.giveBack()
	return u, nil
}

// LogIn is CheckPassword for a login that opens a session: once the
// password is found right, open opens it, and gives back in the same
// statement the failure reserved for the username (release, nil if none:
// store.StartSessionFrom's) — one round trip and one commit fewer a login
// than giving it back first. If open fails, the failure is given back on
// its own, unless open's statement did (store.ErrUserChanged: the
// password was right, the user changed since). Its errors are *Error, or
// open's as they are.
func (c *Core) LogIn(ctx context.Context, username, password, client string, open func(u store.User, release *store.LoginRelease) error) error {
	u, r, err := c.checkPassword(ctx, username, password, client)
	if err != nil {
		return err
	}
	release := r.handOver()
	if err := open(u, release); err != nil {
		if !errors.Is(err, store.ErrUserChanged) {
			r.giveBackUser()
		}
		return err
	}
	return nil
}

// ThrottleLogin is the door's early look at the per-address login limit
// (Config.LoginsPerIP): the refusal due to a login from client arriving
// now, nil if the address has a login left. It counts nothing against
// the address (the password check does, as it must for every door) but
// counts the refusal (authd_logins_total{result="throttled"}), so that a
// door can answer it before it reads the request.
func (c *Core) ThrottleLogin(client string) *Error {
	d := c.loginsByClient.wait(client, c.cfg.Now())
	if d <= 0 {
		return nil
	}
	c.metrics.logins.WithLabelValues("throttled").Inc()
	return errTooManyLoginsFrom(d)
}

// checkPassword is the check of CheckPassword and LogIn. When the
// password is right it returns the attempt's reservation, which the
// caller gives back; on any other outcome it has given back what it
// should, and the reservation is nil.
func (c *Core) checkPassword(ctx context.Context, username, password, client string) (u store.User, r *reservation, err error) {
	defer func() { c.metrics.loginResult(err) }()
	// One address gets no more than its share of the bcrypt work,
	// however right its passwords: counted before anything else, and
	// given back if no password was checked (shed, the client left, the
	// database failed).
	now := c.cfg.Now()
	byAddr, d := c.loginsByClient.reserve(client, now)
	if d > 0 {
		return store.User{}, nil, errTooManyLoginsFrom(d)
	}
	compared := false
	defer func() {
		if !compared && byAddr != nil {
			byAddr.CancelAt(now)
		}
	}()
	// A full queue sheds the login before it costs anything: no
	// throttle to reserve, no user to look up. A login let in has its
	// place at the gate kept while it does its database work.
	place, admitted := c.bcrypt.slots.admit()
	if !admitted {
		return store.User{}, nil, errBusy()
	}
	defer place.give() // if it never reaches the gate
	// Brute-force protection, before any bcrypt work (reserve). The
	// reservations are given back when the password was right, or no
	// password was checked (the login was shed, the client left, the
	// database failed) — only a compare that failed may count.
	//
	// The user is read in the same round trip as the reservation. A name
	// no user can have (see WellFormed) is an unknown user, without asking
	// the database: PostgreSQL would refuse a NUL or invalid UTF-8 with an
	// error (a 500, logged with the client's text), and the answer must
	// not tell such a name from any other unknown one.
	r, u, found, err := c.reserveAndLoad(ctx, username, client, now, WellFormed(username, MaxUsernameLen))
	if err != nil {
		return store.User{}, nil, err
	}
	// Compare against a dummy hash for an unknown user, so that the
	// answer takes as long as for a wrong password.
	hash := c.dummyHash
	if found {
		hash = u.PasswordHash
	}
	var ok bool
	if err := c.bcrypt.runIn(ctx, place, func() {
		ok = c.compare(hash, password)
		if !(ok && found && u.DisabledAt == nil) {
			c.equalise(hash, password)
		}
	}); err != nil {
		r.giveBack() // shed or abandoned before its compare
		return store.User{}, nil, err
	}
	compared = true
	// A disabled user is refused exactly as a wrong password is, after
	// the same bcrypt work: the answer does not say the account exists.
	switch {
	case !found:
		return store.User{}, nil, loginRefused(ReasonUnknownUser) // the reserved failures stand
	case !ok:
		return store.User{}, nil, loginRefused(ReasonWrongPassword)
	case u.DisabledAt != nil:
		return store.User{}, nil, loginRefused(ReasonDisabled)
	case !u.RoleExists:
		r.giveBack()
		return store.User{}, nil, RoleMissing(u.Role)
	case u.RoleRefusal != "":
		r.giveBack()
		return store.User{}, nil, RolePrivileged(u.Role, u.RoleRefusal)
	}
	if store.NeedsRehash(u.PasswordHash, c.cfg.BcryptCost) {
		u = c.upgradeHash(ctx, u, password)
	}
	return u, r, nil
}

// equalise follows a refused compare against hash with the compares that
// bring its bcrypt work up to an unknown user's (the dummy hash's cost),
// so that the time of a wrong password does not point out the users whose
// hash is cheaper: SuperStack's cost-6 hashes, hashes made before
// AUTHD_BCRYPT_COST was raised, or no usable hash at all. bcrypt's work
// doubles with each cost step, so a compare at cost c is topped up by one
// at each cost from c to the dummy's less one (2^c + 2^c + 2^(c+1) + … +
// 2^(d-1) = 2^d); a hash bcrypt cannot read, refused without any work, by
// the dummy's compare. A dearer hash cannot be made faster: see `authd
// user list --stale-hashes`.
func (c *Core) equalise(hash, password string) {
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		c.compare(c.dummyHash, password)
		return
	}
	for k := cost; k < c.dummyCost; k++ {
		c.compare(padHash(k), password)
	}
}

// padHash is a hash of bcrypt's form at cost, of no password: comparing
// against it does all the work of that cost and never matches (its digest
// is zeros), and making it costs nothing.
func padHash(cost int) string {
	return fmt.Sprintf("$2a$%02d$%s", cost, strings.Repeat(".", 53))
}

// reserveFailure counts an attempt (a password or a second factor) as a
// failure of client and of username in advance, and returns giveBack,
// which takes both back when the attempt succeeds or was never judged —
// so a user who knows their password (or has their authenticator) is
// never slowed, and a concurrent burst of guesses gets no more tries than
// a sequential one. Throttled when either has no failure left; its errors
// are *Error.
func (c *Core) reserveFailure(ctx context.Context, username, client string, now time.Time) (giveBack func(), err error) {
	r, err := c.reserve(ctx, username, client, now)
	if err != nil {
		return nil, err
	}
	return r.giveBack, nil
}

// reserve is reserveFailure, with the reservation itself.
func (c *Core) reserve(ctx context.Context, username, client string, now time.Time) (*reservation, error) {
	r, _, _, err := c.reserveAndLoad(ctx, username, client, now, false)
	return r, err
}

// reserveAndLoad is reserve, and with load also reads the user (found:
// there is one) — in the reservation's own statement when the username
// has a limit: a login's first and only round trip before its compare.
// Its errors are *Error; on one nothing is reserved.
func (c *Core) reserveAndLoad(ctx context.Context, username, client string, now time.Time, load bool) (r *reservation, u store.User, found bool, err error) {
	clean := c.failuresByClient.clean(client, now)
	byClient, d := c.failuresByClient.reserve(client, now)
	if d > 0 {
		return nil, store.User{}, false, errTooManyLogins(d)
	}
	byUser, u, found, d, err := c.reserveUserFailure(ctx, username, clean, now, load)
	if err != nil || d > 0 {
		if byClient != nil {
			byClient.CancelAt(now) // no attempt was made
		}
		if err != nil {
			return nil, store.User{}, false, Failure(err)
		}
		return nil, store.User{}, false, errTooManyLogins(d)
	}
	return &reservation{c: c, ctx: ctx, username: username, now: now, byClient: byClient, byUser: byUser}, u, found, nil
}

// reservation is an attempt's failure, counted in advance for its client
// (in this process) and its username (in the database; nil without a
// per-user limit).
type reservation struct {
	c        *Core
	ctx      context.Context
	username string
	now      time.Time
	byClient *rate.Reservation
	byUser   *store.LoginThrottle
}

// giveBack takes both counts back.
func (r *reservation) giveBack() {
	r.giveBackClient()
	r.giveBackUser()
}

// giveBackClient takes the client's count back.
func (r *reservation) giveBackClient() {
	if r.byClient != nil {
		r.byClient.CancelAt(r.now)
	}
}

// giveBackUser takes the username's count back, in a statement of its
// own.
func (r *reservation) giveBackUser() {
	if r.byUser == nil {
		return
	}
	if err := r.c.db.ReleaseLoginFailure(context.WithoutCancel(r.ctx), r.username, *r.byUser, r.c.cfg.Now()); err != nil {
		// The failure drains with the others.
		r.c.log.WarnContext(r.ctx, "return a reserved login failure", "user", r.username, "err", err)
	}
}

// handOver takes the client's count back, and hands the username's to
// the statement that opens the session (nil if there is none to give).
func (r *reservation) handOver() *store.LoginRelease {
	r.giveBackClient()
	if r.byUser == nil {
		return nil
	}
	return &store.LoginRelease{Username: r.username, Throttle: *r.byUser, Now: r.c.cfg.Now()}
}

// reserveUserFailure counts a failure of username in advance in the
// database, shared by every authd instance (nil throttle: no limit), and
// with load reads the user in the same statement (found: there is one).
// The limit is LoginFailuresPerUser a window for clients that failed
// lately, and twice that for a client that has not (clean): a guesser who
// locked a username out from a few addresses does not lock out its owner
// logging in from elsewhere, unless the guesser also spends as many fresh
// addresses. Either way the lockout drains at the limit's rate. When the
// database fails, nothing was counted.
func (c *Core) reserveUserFailure(ctx context.Context, username string, clean bool, now time.Time, load bool) (_ *store.LoginThrottle, u store.User, found bool, wait time.Duration, err error) {
	n := c.cfg.LoginFailuresPerUser
	if n <= 0 {
		if !load {
			return nil, store.User{}, false, 0, nil
		}
		u, err = c.db.User(ctx, username)
		if errors.Is(err, store.ErrNotFound) {
			return nil, store.User{}, false, 0, nil
		}
		return nil, u, err == nil, 0, err
	}
	t := store.LoginThrottle{Limit: float64(n), PerSecond: float64(n) / c.cfg.LoginFailureWindow.Seconds()}
	if clean {
		t.Limit *= 2
	}
	if load {
		wait, u, found, err = c.db.ReserveLoginFailureAndLoadUser(ctx, username, t, now)
	} else {
		wait, err = c.db.ReserveLoginFailure(ctx, username, t, now)
	}
	if err != nil || wait > 0 {
		return nil, store.User{}, false, wait, err
	}
	return &t, u, found, 0, nil
}

// upgradeHash re-hashes a password stored below the configured cost (such
// as SuperStack's cost-6 pgcrypto hashes) now that the plaintext is at hand,
// and returns u as it now is (the session the login opens names the hash
// stored: store.StartSession). A failure only delays the upgrade to the
// next login.
func (c *Core) upgradeHash(ctx context.Context, u store.User, password string) store.User {
	h, err := c.hashPassword(ctx, password)
	var upgraded bool
	if err == nil {
		upgraded, err = c.db.UpgradePasswordHash(ctx, u.Username, u.PasswordHash, h)
	}
	if err != nil {
		c.log.WarnContext(ctx, "password hash upgrade failed", "user", u.Username, "err", err)
		return u
	}
	if !upgraded {
		// The hash changed since it was read (a password change, or
		// another login's upgrade): the session this login would open
		// is refused as after any change during the check.
		return u
	}
	c.log.InfoContext(ctx, "password hash upgraded", "user", u.Username, "cost", c.cfg.BcryptCost)
	u.PasswordHash = h
	return u
}
