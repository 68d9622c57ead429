package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"authd/server"
	"authd/token"
)

// config is authd serve's configuration, read from the environment only.
type config struct {
	DatabaseURL         string
	Addr                string
	JWTSecret           []byte
	JWTAudience         string
	AccessTTL           time.Duration
	RefreshTTL          time.Duration
	ReuseGrace          time.Duration
	BcryptCost          int
	Cookie              server.CookieConfig
	AuthenticatorRole   string
	LogLevel            string
	ShutdownGracePeriod time.Duration
	// Failed logins allowed per minute per username and per client address.
	LoginFailuresPerUser int
	LoginFailuresPerIP   int
	APIKeyTokenTTL       time.Duration
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

// databaseURL is DATABASE_URL; empty means libpq's defaults (PGHOST,
// PGUSER, … or the local socket), which pgx understands.
func databaseURL(getenv func(string) string) string {
	return getenv("DATABASE_URL")
}

// loadConfig reads authd serve's configuration.
func loadConfig(getenv func(string) string) (config, error) {
	e := &env{getenv: getenv}
	c := config{
		DatabaseURL:       databaseURL(getenv),
		Addr:              e.str("AUTHD_ADDR", ":3001"),
		JWTAudience:       e.getenv("AUTHD_JWT_AUD"),
		RefreshTTL:        e.duration("AUTHD_REFRESH_TTL", 30*24*time.Hour),
		ReuseGrace:        e.duration("AUTHD_REFRESH_REUSE_GRACE", 10*time.Second),
		AuthenticatorRole: e.str("AUTHD_AUTHENTICATOR_ROLE", "authenticator"),
		LogLevel:          e.str("AUTHD_LOG_LEVEL", "info"),
		Cookie: server.CookieConfig{
			Secure:          e.boolean("AUTHD_COOKIE_SECURE", false),
			SameSite:        e.sameSite("AUTHD_COOKIE_SAMESITE", http.SameSiteLaxMode),
			RefreshSameSite: e.sameSite("AUTHD_REFRESH_COOKIE_SAMESITE", http.SameSiteStrictMode),
			Domain:          e.getenv("AUTHD_COOKIE_DOMAIN"),
		},
		ShutdownGracePeriod:  e.duration("AUTHD_SHUTDOWN_GRACE", 10*time.Second),
		LoginFailuresPerUser: e.count("AUTHD_LOGIN_FAILURES_PER_USER", 10),
		LoginFailuresPerIP:   e.count("AUTHD_LOGIN_FAILURES_PER_IP", 60),
		APIKeyTokenTTL:       e.duration("AUTHD_APIKEY_TOKEN_TTL", 5*time.Minute),
	}
	if c.APIKeyTokenTTL < time.Minute {
		e.fail("AUTHD_APIKEY_TOKEN_TTL", "must be at least 1m, got %s", c.APIKeyTokenTTL)
	}
	c.JWTSecret = jwtSecret(e)
	c.AccessTTL = accessTTL(e)
	c.BcryptCost = bcryptCost(e)
	if c.RefreshTTL == 0 {
		e.fail("AUTHD_REFRESH_TTL", "must be positive")
	}
	if c.Cookie.SameSite == http.SameSiteNoneMode && !c.Cookie.Secure {
		e.fail("AUTHD_COOKIE_SAMESITE", "None requires AUTHD_COOKIE_SECURE=true (browsers drop such cookies)")
	}
	if c.Cookie.RefreshSameSite == http.SameSiteNoneMode && !c.Cookie.Secure {
		e.fail("AUTHD_REFRESH_COOKIE_SAMESITE", "None requires AUTHD_COOKIE_SECURE=true (browsers drop such cookies)")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		e.fail("AUTHD_LOG_LEVEL", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	return c, errors.Join(e.errs...)
}

// jwtSecret reads JWT_SECRET, else PGRST_JWT_SECRET, so that one env file
// serves PostgREST and authd. The secret's value never appears in errors.
func jwtSecret(e *env) []byte {
	name, b64name := "JWT_SECRET", "JWT_SECRET_IS_BASE64"
	if e.getenv(name) == "" && e.getenv("PGRST_JWT_SECRET") != "" {
		name, b64name = "PGRST_JWT_SECRET", "PGRST_JWT_SECRET_IS_BASE64"
	}
	raw := e.getenv(name)
	if raw == "" {
		e.fail("JWT_SECRET", "not set (nor PGRST_JWT_SECRET); generate one with: openssl rand -base64 32")
		return nil
	}
	secret := []byte(raw)
	if e.boolean(b64name, false) {
		dec, err := decodeBase64Secret(raw)
		if err != nil {
			e.fail(name, "%s=true but the value is not base64", b64name)
			return nil
		}
		secret = dec
	}
	if len(secret) < token.MinSecretLen {
		e.fail(name, "must be at least %d bytes (PostgREST refuses shorter ones too), got %d", token.MinSecretLen, len(secret))
		return nil
	}
	return secret
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
	if e.getenv("AUTHD_ACCESS_TTL") == "" {
		if v := e.getenv("PGRST_APP_SETTINGS_JWT_EXP"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				e.fail("PGRST_APP_SETTINGS_JWT_EXP", "want a positive number of seconds, got %q", v)
				return time.Hour
			}
			return time.Duration(n) * time.Second
		}
	}
	d := e.duration("AUTHD_ACCESS_TTL", time.Hour)
	if d == 0 {
		e.fail("AUTHD_ACCESS_TTL", "must be positive")
	}
	return d
}

// bcryptCost is AUTHD_BCRYPT_COST: 10 by default, 4 to 31 as bcrypt allows.
func bcryptCost(e *env) int {
	v := e.getenv("AUTHD_BCRYPT_COST")
	if v == "" {
		return 10
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 4 || n > 31 {
		e.fail("AUTHD_BCRYPT_COST", "want a whole number from 4 to 31, got %q", v)
		return 10
	}
	return n
}
