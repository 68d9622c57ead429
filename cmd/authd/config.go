package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"authd/identity"
	"authd/server"
	"authd/store"
	"authd/token"
)

// config is authd serve's configuration, read from the environment only.
type config struct {
	adminConfig // not used by serve, but a setting of the same environment

	DatabaseURL string
	// DatabaseURLFile is DATABASE_URL_FILE, read again on reloads (a
	// rotated password); "" when the URL came from DATABASE_URL.
	DatabaseURLFile string
	Addr            string
	Secret          secretSource
	SigningKeysDir  string
	JWTIssuer       string
	JWTRolePath     string
	JWTAudience     string
	AccessTTL       time.Duration
	RefreshTTL      time.Duration
	// SessionLifetime is AUTHD_SESSION_LIFETIME: a session's absolute
	// end, counted from login.
	SessionLifetime time.Duration
	ReuseGrace      time.Duration
	BcryptCost      int
	// PasswordMinLength is AUTHD_PASSWORD_MIN_LENGTH, for the passwords
	// users choose themselves (sign-up, /rpc/change_password), as for
	// user add.
	PasswordMinLength int
	Cookie            server.CookieConfig
	// AllowedOrigins are AUTHD_ALLOWED_ORIGINS, in server.ParseOrigin's
	// form: origins besides the site's own that may log in.
	AllowedOrigins []string
	LogLevel       string
	LogFormat      string // json or text
	// DBWait is how long serve and nats-callout wait for the database at
	// start-up; 0 tries once.
	DBWait              time.Duration
	DBPath              dbPath
	ShutdownGracePeriod time.Duration
	// Failed logins allowed per minute per username and per client address.
	LoginFailuresPerUser int
	LoginFailuresPerIP   int
	// LoginsPerIP is AUTHD_LOGINS_PER_IP: logins a minute from one client
	// address, whatever their outcome (identity.Config.LoginsPerIP).
	LoginsPerIP    int
	APIKeyTokenTTL time.Duration
	// CacheRecheck bounds how long a cached API key row or a role's NATS
	// permissions are used without a re-read, when no change
	// notification arrives (store.Listen).
	CacheRecheck   time.Duration
	LoginQueueWait time.Duration
	// LoginShedHold: see server.Config.ShedHold.
	LoginShedHold time.Duration
	// BcryptSlots and LoginQueue are 0 for their defaults
	// (identity.BcryptSlotRange, identity.DefaultLoginQueue).
	BcryptSlots int
	LoginQueue  int
	BcryptNice  int
	// FixedProcs is whether GOMAXPROCS is set: the operator's count of
	// CPUs stands, and authd does not add the bcrypt slots to it.
	FixedProcs       bool
	StatementTimeout time.Duration
	PurgeInterval    time.Duration
	// AuditRetention is how long the purge job keeps audit log rows
	// (AUTHD_AUDIT_RETENTION); 0 keeps them for ever.
	AuditRetention time.Duration

	// TrustedProxies are the gateways whose X-Forwarded-For is believed
	// (AUTHD_TRUSTED_PROXIES); nil: none.
	TrustedProxies []netip.Prefix

	// MetricsAddr, when set, is the operator listener's address: /metrics
	// is served there only, with /healthz and /readyz.
	MetricsAddr string

	// SignupRole is AUTHD_SIGNUP_ROLE, the role of the users POST
	// /rpc/signup creates; "" (the default) turns sign-up off.
	SignupRole string
	// SignupsPerIP is AUTHD_SIGNUP_PER_IP: sign-ups per hour from one
	// client address; 0 means no limit.
	SignupsPerIP int
	// ResetsPerIP is AUTHD_RESET_PER_IP: password reset requests per hour
	// from one client address; 0 means no limit.
	ResetsPerIP int
	// ResetTTL is AUTHD_RESET_TTL, the life of a password reset token.
	ResetTTL time.Duration
	// ResetsPerUser is AUTHD_RESET_PER_USER: password reset requests per
	// hour naming one user, over every instance; 0 means no limit.
	ResetsPerUser int
	// ResetDelivery are the reset link hooks besides pg_notify.
	ResetDelivery resetDelivery
	// MFAPendingTTL is AUTHD_MFA_PENDING_TTL: how long the session of a
	// user with a second factor has to present it after login, and the
	// longest life of its aal1 access tokens.
	MFAPendingTTL time.Duration
}

// env reads variables and collects every problem, so a bad env file is
// fixed in one go rather than one restart per mistake.
type env struct {
	getenv func(string) string
	errs   []error
}

func (e *env) fail(name, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (e *env) str(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

func (e *env) duration(name string, def time.Duration) time.Duration {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.fail(name, "want a duration such as 90s or 1h, got %q", v)
		return def
	}
	return d
}

func (e *env) count(name string, def int) int {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		e.fail(name, "want a whole number, 0 or more, got %q", v)
		return def
	}
	return n
}

// oneOf is one of the values allowed; def when unset, and when the value
// is not allowed (reported), so that the log line reporting it is still
// written.
func (e *env) oneOf(name, def string, allowed ...string) string {
	v := e.str(name, def)
	if slices.Contains(allowed, v) {
		return v
	}
	last := len(allowed) - 1
	e.fail(name, "want %s or %s, got %q", strings.Join(allowed[:last], ", "), allowed[last], v)
	return def
}

func (e *env) boolean(name string, def bool) bool {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, "want true or false, got %q", v)
		return def
	}
	return b
}

func (e *env) sameSite(name string, def http.SameSite) http.SameSite {
	v := e.getenv(name)
	switch strings.ToLower(v) {
	case "":
		return def
	case "lax":
		return http.SameSiteLaxMode
	case "strict":
		return http.SameSiteStrictMode
	case "none":
		return http.SameSiteNoneMode
	}
	e.fail(name, "want Lax, Strict or None, got %q", v)
	return def
}

// databaseURL is DATABASE_URL, or the contents of DATABASE_URL_FILE (a
// mounted Kubernetes or Vault secret); empty means libpq's defaults
// (PGHOST, PGUSER, … or the local socket), which pgx understands.
func databaseURL(getenv func(string) string) (string, error) {
	v, f := getenv("DATABASE_URL"), getenv("DATABASE_URL_FILE")
	switch {
	case v != "" && f != "":
		return "", errors.New("DATABASE_URL and DATABASE_URL_FILE are both set: use one")
	case f != "":
		return readDatabaseURLFile(f)
	}
	return v, nil
}

// readDatabaseURLFile reads the database URL from the DATABASE_URL_FILE
// at path: at start-up, and again on reloads.
func readDatabaseURLFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL_FILE: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// dbPath is how authd reaches PostgreSQL besides DATABASE_URL:
// AUTHD_DB_POOLER says what kind of pooler, if any, DATABASE_URL points
// at, and AUTHD_DB_DIRECT_URL reaches PostgreSQL past a transaction-mode
// pooler, for what needs a session of its own (LISTEN, migrations).
type dbPath struct {
	Pooler    store.Pooler
	DirectURL string
}

func readDBPath(e *env) dbPath {
	p := dbPath{DirectURL: e.getenv("AUTHD_DB_DIRECT_URL")}
	var err error
	if p.Pooler, err = store.ParsePooler(e.getenv("AUTHD_DB_POOLER")); err != nil {
		e.fail("AUTHD_DB_POOLER", "want none or transaction, got %q", e.getenv("AUTHD_DB_POOLER"))
	}
	return p
}

// options are the store options of p.
func (p dbPath) options() []store.Option {
	return []store.Option{store.WithPooler(p.Pooler), store.WithDirectURL(p.DirectURL)}
}

// secretVar is the variable name, or the contents of name_FILE without
// its final newline. It returns false when it reported a problem, so that
// the caller does not call the secret "not set" as well.
func secretVar(e *env, name string) (string, bool) {
	v, f := e.getenv(name), e.getenv(name+"_FILE")
	switch {
	case v != "" && f != "":
		e.fail(name, "%s and %s_FILE are both set: use one", name, name)
		return "", false
	case f != "":
		b, err := os.ReadFile(f)
		if err != nil {
			e.fail(name+"_FILE", "%v", err)
			return "", false
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), true
	}
	return v, true
}

// openDB connects to the database of DATABASE_URL or DATABASE_URL_FILE,
// through the pooler AUTHD_DB_POOLER names, for the commands that need
// nothing else.
func openDB(ctx context.Context, getenv func(string) string) (*store.DB, error) {
	dbURL, err := databaseURL(getenv)
	if err != nil {
		return nil, err
	}
	e := &env{getenv: getenv}
	path := readDBPath(e)
	if err := errors.Join(e.errs...); err != nil {
		return nil, err
	}
	return store.Open(ctx, dbURL, path.options()...)
}

// withDB runs f on the database of DATABASE_URL or DATABASE_URL_FILE, for
// the commands that need nothing else.
func withDB(ctx context.Context, c *cli, f func(db *store.DB) error) error {
	db, err := openDB(ctx, c.getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	return f(db)
}

// errMigrateThroughPooler: goose holds a session advisory lock for the
// whole migration, which a transaction-mode pooler cannot keep.
var errMigrateThroughPooler = errors.New("migrations hold a session lock, which a transaction-mode pooler (AUTHD_DB_POOLER=transaction) cannot keep: set AUTHD_DB_DIRECT_URL to a URL that reaches PostgreSQL directly")

// openMigrationDB connects for the migrate commands: to DATABASE_URL, or
// past a transaction-mode pooler to AUTHD_DB_DIRECT_URL.
func openMigrationDB(ctx context.Context, getenv func(string) string) (*store.DB, error) {
	e := &env{getenv: getenv}
	path := readDBPath(e)
	if err := errors.Join(e.errs...); err != nil {
		return nil, err
	}
	if path.Pooler != store.PoolerTransaction {
		return openDB(ctx, getenv)
	}
	if path.DirectURL == "" {
		return nil, errMigrateThroughPooler
	}
	return store.Open(ctx, path.DirectURL)
}

// adminConfig is what user add and apikey create read from the
// environment besides the database URL.
type adminConfig struct {
	// AuthenticatorRole is the role PostgREST logs in as: the commands
	// warn when it cannot switch to the role of what they create.
	AuthenticatorRole string
}

func readAdminConfig(e *env) adminConfig {
	return adminConfig{AuthenticatorRole: e.str("AUTHD_AUTHENTICATOR_ROLE", "authenticator")}
}

// loadAdminConfig reads the adminConfig of user add and apikey create.
// None of its settings can be wrong, so it returns no error.
func loadAdminConfig(getenv func(string) string) adminConfig {
	return readAdminConfig(&env{getenv: getenv})
}

// loadConfig reads authd serve's configuration.
func loadConfig(getenv func(string) string) (config, error) {
	e := &env{getenv: getenv}
	dbURL, err := databaseURL(getenv)
	if err != nil {
		e.errs = append(e.errs, err)
	}
	c := config{
		DatabaseURL:     dbURL,
		DatabaseURLFile: e.getenv("DATABASE_URL_FILE"),
		JWTIssuer:       e.getenv("AUTHD_JWT_ISS"),
		JWTRolePath:     e.getenv("AUTHD_JWT_ROLE_PATH"),
		SigningKeysDir:  e.getenv("AUTHD_SIGNING_KEYS_DIR"),
		Addr:            e.str("AUTHD_ADDR", ":3001"),
		MetricsAddr:     e.getenv("AUTHD_METRICS_ADDR"),
		JWTAudience:     e.getenv("AUTHD_JWT_AUD"),
		RefreshTTL:      e.duration("AUTHD_REFRESH_TTL", 30*24*time.Hour),
		SessionLifetime: e.duration("AUTHD_SESSION_LIFETIME", 30*24*time.Hour),
		ReuseGrace:      e.duration("AUTHD_REFRESH_REUSE_GRACE", 10*time.Second),
		adminConfig:     readAdminConfig(e),
		LogLevel:        e.oneOf("AUTHD_LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		LogFormat:       e.oneOf("AUTHD_LOG_FORMAT", "json", "json", "text"),
		DBWait:          e.duration("AUTHD_DB_WAIT", 60*time.Second),
		DBPath:          readDBPath(e),
		Cookie: server.CookieConfig{
			// Secure unless the operator says the site is plain HTTP
			// (development): a token cookie must not cross the network
			// in clear because a setting was forgotten.
			Secure:          e.boolean("AUTHD_COOKIE_SECURE", true),
			SameSite:        e.sameSite("AUTHD_COOKIE_SAMESITE", http.SameSiteLaxMode),
			RefreshSameSite: e.sameSite("AUTHD_REFRESH_COOKIE_SAMESITE", http.SameSiteStrictMode),
			Domain:          e.getenv("AUTHD_COOKIE_DOMAIN"),
		},
		ShutdownGracePeriod:  e.duration("AUTHD_SHUTDOWN_GRACE", 10*time.Second),
		LoginFailuresPerUser: e.count("AUTHD_LOGIN_FAILURES_PER_USER", 10),
		LoginFailuresPerIP:   e.count("AUTHD_LOGIN_FAILURES_PER_IP", 60),
		LoginsPerIP:          e.count("AUTHD_LOGINS_PER_IP", identity.DefaultLoginsPerIP),
		APIKeyTokenTTL:       e.duration("AUTHD_APIKEY_TOKEN_TTL", identity.DefaultAPIKeyTokenTTL),
		LoginQueueWait:       e.duration("AUTHD_LOGIN_QUEUE_WAIT", identity.DefaultLoginQueueWait),
		LoginShedHold:        e.duration("AUTHD_LOGIN_SHED_HOLD", time.Second),
		CacheRecheck:         e.duration("AUTHD_CACHE_RECHECK", time.Second),
		BcryptSlots:          e.count("AUTHD_BCRYPT_SLOTS", 0),
		LoginQueue:           e.count("AUTHD_LOGIN_QUEUE", 0),
		BcryptNice:           e.count("AUTHD_BCRYPT_NICE", 10),
		FixedProcs:           e.getenv("GOMAXPROCS") != "",
		StatementTimeout:     e.duration("AUTHD_STATEMENT_TIMEOUT", 5*time.Second),
		PurgeInterval:        e.duration("AUTHD_PURGE_INTERVAL", 10*time.Minute),
		SignupRole:           e.getenv("AUTHD_SIGNUP_ROLE"),
		SignupsPerIP:         e.count("AUTHD_SIGNUP_PER_IP", identity.DefaultSignupsPerIP),
		PasswordMinLength:    passwordMinLength(e),
		ResetsPerIP:          e.count("AUTHD_RESET_PER_IP", identity.DefaultResetsPerIP),
		ResetTTL:             e.duration("AUTHD_RESET_TTL", identity.DefaultResetTTL),
		ResetsPerUser:        e.count("AUTHD_RESET_PER_USER", identity.DefaultResetsPerUser),
		ResetDelivery:        readResetDelivery(e),
		MFAPendingTTL:        e.duration("AUTHD_MFA_PENDING_TTL", identity.DefaultMFAPendingTTL),
	}
	if c.SignupRole != "" && c.SignupRole == c.AuthenticatorRole {
		e.fail("AUTHD_SIGNUP_ROLE", "%q is AUTHD_AUTHENTICATOR_ROLE, the role PostgREST logs in as: it may not be the role of a token", c.SignupRole)
	}
	c.AuditRetention = auditRetention(e)
	if c.BcryptNice > 19 {
		e.fail("AUTHD_BCRYPT_NICE", "want 0 (normal priority) to 19 (lowest), got %d", c.BcryptNice)
	}
	if c.CacheRecheck <= 0 {
		e.fail("AUTHD_CACHE_RECHECK", "must be positive, got %s", c.CacheRecheck)
	}
	if c.MFAPendingTTL < 30*time.Second {
		e.fail("AUTHD_MFA_PENDING_TTL", "must be at least 30s (a code's step), got %s", c.MFAPendingTTL)
	}
	if c.APIKeyTokenTTL < time.Minute {
		e.fail("AUTHD_APIKEY_TOKEN_TTL", "must be at least 1m, got %s", c.APIKeyTokenTTL)
	}
	var secretOK bool
	c.Secret, secretOK = jwtSecret(e)
	switch {
	case !secretOK: // jwtSecret said why
	case c.Secret.name == "" && c.SigningKeysDir == "":
		e.fail("JWT_SECRET", "not set (nor JWT_SECRET_FILE, PGRST_JWT_SECRET or AUTHD_SIGNING_KEYS_DIR); generate one with: openssl rand -base64 32")
	default:
		// Load the keys once now, so that a bad secret or key file stops
		// start-up; reloads read them again with keySet.
		if _, _, err := c.keySet(); err != nil {
			e.errs = append(e.errs, err)
		}
	}
	c.AccessTTL = accessTTL(e)
	c.TrustedProxies = trustedProxies(e)
	c.BcryptCost = bcryptCost(e)
	if c.RefreshTTL == 0 {
		e.fail("AUTHD_REFRESH_TTL", "must be positive")
	}
	c.Cookie.HostPrefix = hostPrefix(e, c.Cookie)
	c.AllowedOrigins = allowedOrigins(e)
	if c.SessionLifetime == 0 {
		e.fail("AUTHD_SESSION_LIFETIME", "must be positive")
	}
	if c.Cookie.SameSite == http.SameSiteNoneMode && !c.Cookie.Secure {
		e.fail("AUTHD_COOKIE_SAMESITE", "None requires AUTHD_COOKIE_SECURE=true (browsers drop such cookies)")
	}
	if c.Cookie.RefreshSameSite == http.SameSiteNoneMode && !c.Cookie.Secure {
		e.fail("AUTHD_REFRESH_COOKIE_SAMESITE", "None requires AUTHD_COOKIE_SECURE=true (browsers drop such cookies)")
	}
	return c, errors.Join(e.errs...)
}

// auditRetention is AUTHD_AUDIT_RETENTION: 90 days unless set; days are
// written as in apikey create --expires (90d), and 0 keeps every row.
func auditRetention(e *env) time.Duration {
	v := e.getenv("AUTHD_AUDIT_RETENTION")
	switch v {
	case "":
		return 90 * 24 * time.Hour
	case "0":
		return 0
	}
	d, err := parseLifetime(v)
	if err != nil {
		e.fail("AUTHD_AUDIT_RETENTION", "want a duration such as 90d or 720h, or 0 to keep every row, got %q", v)
		return 90 * 24 * time.Hour
	}
	return d
}

// hostPrefix is AUTHD_COOKIE_HOST_PREFIX: on by default when the cookies
// are Secure and have no Domain, the only cookies browsers accept with
// the __Host- prefix; asked for otherwise, it is an error.
func hostPrefix(e *env, cc server.CookieConfig) bool {
	possible := cc.Secure && cc.Domain == ""
	on := e.boolean("AUTHD_COOKIE_HOST_PREFIX", possible)
	switch {
	case on && !cc.Secure:
		e.fail("AUTHD_COOKIE_HOST_PREFIX", "true requires AUTHD_COOKIE_SECURE=true (browsers drop __Host- cookies without Secure)")
	case on && cc.Domain != "":
		e.fail("AUTHD_COOKIE_HOST_PREFIX", "true cannot go with AUTHD_COOKIE_DOMAIN (browsers drop __Host- cookies with a Domain)")
	}
	return on && possible
}

// allowedOrigins is AUTHD_ALLOWED_ORIGINS: comma-separated origins such
// as https://app.example.com.
func allowedOrigins(e *env) []string {
	v := e.getenv("AUTHD_ALLOWED_ORIGINS")
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		o, err := server.ParseOrigin(item)
		if err != nil {
			e.fail("AUTHD_ALLOWED_ORIGINS", "%v", err)
			continue
		}
		out = append(out, o)
	}
	return out
}

// secretSource says where the HMAC secret comes from, so that a reload can
// read a JWT_SECRET_FILE again.
type secretSource struct {
	name   string // the variable it came from, for messages; "" for none
	value  string // the variable's value, or
	file   string // the file to read
	base64 bool
}

// jwtSecret finds the HMAC secret: JWT_SECRET or JWT_SECRET_FILE, else
// PGRST_JWT_SECRET (so that one env file serves PostgREST and authd), each
// with its *_IS_BASE64. None at all is allowed when asymmetric keys sign.
// It returns false when it reported a problem, so the caller does not
// report the same variable again as "not set".
func jwtSecret(e *env) (secretSource, bool) {
	switch {
	case e.getenv("JWT_SECRET") != "" && e.getenv("JWT_SECRET_FILE") != "":
		e.fail("JWT_SECRET", "JWT_SECRET and JWT_SECRET_FILE are both set: use one")
		return secretSource{}, false
	case e.getenv("JWT_SECRET") != "":
		return secretSource{name: "JWT_SECRET", value: e.getenv("JWT_SECRET"), base64: e.boolean("JWT_SECRET_IS_BASE64", false)}, true
	case e.getenv("JWT_SECRET_FILE") != "":
		return secretSource{name: "JWT_SECRET_FILE", file: e.getenv("JWT_SECRET_FILE"), base64: e.boolean("JWT_SECRET_IS_BASE64", false)}, true
	case e.getenv("PGRST_JWT_SECRET") != "":
		return secretSource{name: "PGRST_JWT_SECRET", value: e.getenv("PGRST_JWT_SECRET"), base64: e.boolean("PGRST_JWT_SECRET_IS_BASE64", false)}, true
	}
	return secretSource{}, true
}

// load reads the secret. Its value never appears in errors.
func (s secretSource) load() ([]byte, error) {
	if s.name == "" {
		return nil, nil
	}
	raw := s.value
	if s.file != "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		// One trailing newline is the file's, not the secret's (as in
		// PostgREST's @filename).
		raw = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	secret := []byte(raw)
	if s.base64 {
		dec, err := decodeBase64Secret(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: marked base64 (*_IS_BASE64=true) but the value is not base64", s.name)
		}
		secret = dec
	}
	if len(secret) < token.MinSecretLen {
		return nil, fmt.Errorf("%s: must be at least %d bytes (PostgREST refuses shorter ones too), got %d", s.name, token.MinSecretLen, len(secret))
	}
	return secret, nil
}

// keyState is what the last reading of the keys found, for the next
// reload to start from.
type keyState struct {
	secret []byte
	dir    *token.KeyDir
}

// keySet reads the secret and the key directory into a key set, as at
// start-up: any problem, one broken or unprotected key file included, is
// an error.
func (c config) keySet() (*token.KeySet, keyState, error) {
	secret, err := c.Secret.load()
	if err != nil {
		return nil, keyState{}, err
	}
	st := keyState{secret: secret}
	var (
		keys       []*token.Key
		signingKID string
	)
	if c.SigningKeysDir != "" {
		d, problems, err := token.ReadKeyDir(c.SigningKeysDir, nil)
		if err == nil {
			err = errors.Join(problems...)
		}
		if err != nil {
			return nil, keyState{}, fmt.Errorf("AUTHD_SIGNING_KEYS_DIR: %w", err)
		}
		st.dir, keys, signingKID = d, d.Keys(), d.SigningKID()
	}
	ks, err := token.NewKeySet(secret, keys, signingKID)
	if err != nil {
		return nil, keyState{}, fmt.Errorf("keys: %w", err)
	}
	return ks, st, nil
}

// reloadKeySet reads the keys again after prev. Each problem is returned
// for the log and costs only the file that has it: a broken, unreadable
// or unprotected file keeps the key it held at the last reading, if any,
// and adds none, while a removed file's key is dropped whatever else is
// wrong, down to a set that verifies nothing. A nil set means keep the
// one in use (the key directory could not be listed at all).
func (c config) reloadKeySet(prev keyState) (*token.KeySet, keyState, []error) {
	var problems []error
	st := prev
	secret, err := c.Secret.load()
	switch {
	case err == nil:
		st.secret = secret
	case errors.Is(err, fs.ErrNotExist):
		st.secret = nil
		problems = append(problems, fmt.Errorf("%w: the HMAC secret is no longer trusted", err))
	default:
		problems = append(problems, fmt.Errorf("%w: the HMAC secret read before stays", err))
	}
	var (
		keys       []*token.Key
		signingKID string
	)
	if c.SigningKeysDir != "" {
		d, dirProblems, err := token.ReadKeyDir(c.SigningKeysDir, prev.dir)
		if err != nil {
			return nil, prev, append(problems, fmt.Errorf("AUTHD_SIGNING_KEYS_DIR: %w", err))
		}
		for _, p := range dirProblems {
			problems = append(problems, fmt.Errorf("AUTHD_SIGNING_KEYS_DIR: %w", p))
		}
		st.dir, keys, signingKID = d, d.Keys(), d.SigningKID()
	}
	ks, err := token.NewKeySet(st.secret, keys, signingKID)
	switch {
	case errors.Is(err, token.ErrNoKeys):
		return token.NoKeys(), st, append(problems, errors.New("no key left: every token is refused and logins fail until a key or secret is added"))
	case err != nil:
		return nil, prev, append(problems, fmt.Errorf("keys: %w", err))
	}
	return ks, st, problems
}

// decodeBase64Secret decodes as PostgREST does: URL-safe characters are
// accepted, padding is optional.
func decodeBase64Secret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	s = strings.NewReplacer("-", "+", "_", "/").Replace(s)
	s = strings.TrimRight(s, "=.")
	return base64.RawStdEncoding.DecodeString(s)
}

// accessTTL is AUTHD_ACCESS_TTL, else PGRST_APP_SETTINGS_JWT_EXP (seconds,
// as the SuperStack compose file sets it), else one hour.
func accessTTL(e *env) time.Duration {
	const def = time.Hour
	if e.getenv("AUTHD_ACCESS_TTL") == "" {
		if v := e.getenv("PGRST_APP_SETTINGS_JWT_EXP"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				e.fail("PGRST_APP_SETTINGS_JWT_EXP", "want a positive number of seconds, got %q", v)
				return def
			}
			return time.Duration(n) * time.Second
		}
	}
	d := e.duration("AUTHD_ACCESS_TTL", def)
	if d == 0 {
		e.fail("AUTHD_ACCESS_TTL", "must be positive")
	}
	return d
}

// bcryptCost is AUTHD_BCRYPT_COST: 10 by default, 4 to 31 as bcrypt allows.
func bcryptCost(e *env) int {
	const def = 10
	v := e.getenv("AUTHD_BCRYPT_COST")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 4 || n > 31 {
		e.fail("AUTHD_BCRYPT_COST", "want a whole number from 4 to 31, got %q", v)
		return def
	}
	return n
}

// trustedProxies is AUTHD_TRUSTED_PROXIES: by default the loopback
// addresses, a gateway on authd's own host or in its pod.
func trustedProxies(e *env) []netip.Prefix {
	p, err := server.ParseTrustedProxies(e.str("AUTHD_TRUSTED_PROXIES", server.DefaultTrustedProxies))
	if err != nil {
		e.fail("AUTHD_TRUSTED_PROXIES", "%v", err)
	}
	return p
}

// passwordMinLength is AUTHD_PASSWORD_MIN_LENGTH: the shortest password
// user add, user passwd, sign-up and /rpc/change_password accept, in characters.
func passwordMinLength(e *env) int {
	n := e.count("AUTHD_PASSWORD_MIN_LENGTH", identity.DefaultPasswordMinLength)
	if n < 1 || n > identity.MaxPasswordMinLength {
		e.fail("AUTHD_PASSWORD_MIN_LENGTH", "want a whole number from 1 to %d, got %q", identity.MaxPasswordMinLength, e.getenv("AUTHD_PASSWORD_MIN_LENGTH"))
		return identity.DefaultPasswordMinLength
	}
	return n
}

// knownVars are the AUTHD_* variables that authd, its scripts and its tests
// read. Any other in the environment is likely a typo, which would
// otherwise be ignored in silence.
func knownVars() []string {
	return []string{
		// serve and nats-callout
		"AUTHD_ADDR", "AUTHD_METRICS_ADDR", "AUTHD_ACCESS_TTL", "AUTHD_REFRESH_TTL", "AUTHD_REFRESH_REUSE_GRACE",
		"AUTHD_SESSION_LIFETIME",
		"AUTHD_SIGNING_KEYS_DIR", "AUTHD_JWT_ISS", "AUTHD_JWT_AUD", "AUTHD_JWT_ROLE_PATH",
		"AUTHD_BCRYPT_COST", "AUTHD_BCRYPT_SLOTS", "AUTHD_BCRYPT_NICE", "AUTHD_LOGIN_QUEUE", "AUTHD_LOGIN_QUEUE_WAIT",
		"AUTHD_LOGIN_SHED_HOLD",
		"AUTHD_LOGIN_FAILURES_PER_USER", "AUTHD_LOGIN_FAILURES_PER_IP", "AUTHD_LOGINS_PER_IP", "AUTHD_TRUSTED_PROXIES", "AUTHD_APIKEY_TOKEN_TTL", "AUTHD_CACHE_RECHECK",
		"AUTHD_DB_POOLER", "AUTHD_DB_DIRECT_URL",
		"AUTHD_COOKIE_SECURE", "AUTHD_COOKIE_SAMESITE", "AUTHD_REFRESH_COOKIE_SAMESITE", "AUTHD_COOKIE_DOMAIN",
		"AUTHD_COOKIE_HOST_PREFIX", "AUTHD_ALLOWED_ORIGINS",
		"AUTHD_LOG_LEVEL", "AUTHD_LOG_FORMAT", "AUTHD_SHUTDOWN_GRACE",
		"AUTHD_STATEMENT_TIMEOUT", "AUTHD_PURGE_INTERVAL", "AUTHD_AUDIT_RETENTION", "AUTHD_DB_WAIT",
		"AUTHD_SIGNUP_ROLE", "AUTHD_SIGNUP_PER_IP", "AUTHD_RESET_PER_IP", "AUTHD_RESET_TTL",
		"AUTHD_RESET_PER_USER", "AUTHD_RESET_LINK_BASE", "AUTHD_RESET_WEBHOOK_URL", "AUTHD_RESET_WEBHOOK_SECRET",
		"AUTHD_RESET_WEBHOOK_SECRET_FILE", "AUTHD_SMTP_URL", "AUTHD_SMTP_PASSWORD", "AUTHD_SMTP_PASSWORD_FILE", "AUTHD_SMTP_FROM",
		"AUTHD_MFA_PENDING_TTL",
		// user add, user passwd, user role and apikey create
		"AUTHD_AUTHENTICATOR_ROLE", "AUTHD_PASSWORD_MIN_LENGTH",
		// nats-callout
		"AUTHD_NATS_URL", "AUTHD_NATS_CREDS", "AUTHD_NATS_NKEY_SEED_FILE", "AUTHD_NATS_USER",
		"AUTHD_NATS_PASSWORD", "AUTHD_NATS_PASSWORD_FILE", "AUTHD_NATS_ACCOUNT", "AUTHD_NATS_HEALTH_ADDR",
		"AUTHD_NATS_ISSUER_SEED_FILE", "AUTHD_NATS_XKEY_SEED_FILE",
		"AUTHD_NATS_WORKLOAD_ISSUER", "AUTHD_NATS_WORKLOAD_JWKS_URL", "AUTHD_NATS_WORKLOAD_AUDIENCE",
		"AUTHD_NATS_WORKLOAD_PERMISSIONS", "AUTHD_NATS_WORKLOAD_SA_DIR",
		// the public keys nats-server's configuration reads, often from
		// the same env file
		"AUTHD_NATS_ISSUER", "AUTHD_NATS_XKEY",
		// scripts/localdb.sh and the tests
		"AUTHD_DB_NAME", "AUTHD_DEV_PRIVATE_PG", "AUTHD_DEV_PG_PORT", "AUTHD_TEST_DATABASE_URL", "AUTHD_TEST_DB_PREFIX",
	}
}

// unknownVars names the AUTHD_* variables of environ (KEY=value pairs)
// that authd does not know, each with the closest known name when one is
// near enough to be the intended one.
func unknownVars(environ []string) []string {
	known := knownVars()
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "AUTHD_") || slices.Contains(known, name) || serviceLink(name) {
			continue
		}
		best, bestDist := "", 4 // suggest only a name at most 3 edits away
		for _, k := range known {
			if d := editDistance(name, k); d < bestDist {
				best, bestDist = k, d
			}
		}
		if best != "" {
			name += " (did you mean " + best + "?)"
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// serviceLink reports whether name is one of the variables Kubernetes puts
// into every pod for a Service named authd (AUTHD_SERVICE_HOST,
// AUTHD_PORT_3001_TCP, …, unless enableServiceLinks is false): not a typo
// of the operator's.
func serviceLink(name string) bool {
	return strings.HasPrefix(name, "AUTHD_SERVICE_") || name == "AUTHD_PORT" || strings.HasPrefix(name, "AUTHD_PORT_")
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
