package main

import (
	"authd/store"
	"authd/token"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// secret32 is a valid raw secret: exactly the 32-byte minimum.
const secret32 = "0123456789abcdef0123456789abcdef"

// withSecret returns env plus a valid JWT_SECRET, unless env sets one of
// the secret variables itself.
func withSecret(env map[string]string) map[string]string {
	out := map[string]string{"JWT_SECRET": secret32}
	if _, ok := env["PGRST_JWT_SECRET"]; ok {
		delete(out, "JWT_SECRET")
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(getenv(map[string]string{"JWT_SECRET": secret32}))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"Addr", c.Addr, ":3001"},
		{"AccessTTL", c.AccessTTL, time.Hour},
		{"RefreshTTL", c.RefreshTTL, 720 * time.Hour},
		{"SessionLifetime", c.SessionLifetime, 720 * time.Hour},
		{"ReuseGrace", c.ReuseGrace, 10 * time.Second},
		{"BcryptCost", c.BcryptCost, 10},
		{"Cookie.SameSite", c.Cookie.SameSite, http.SameSiteLaxMode},
		{"Cookie.RefreshSameSite", c.Cookie.RefreshSameSite, http.SameSiteStrictMode},
		{"Cookie.Secure", c.Cookie.Secure, true},
		{"Cookie.Domain", c.Cookie.Domain, ""},
		{"Cookie.HostPrefix", c.Cookie.HostPrefix, true},
		{"AllowedOrigins", c.AllowedOrigins, []string(nil)},
		{"JWTAudience", c.JWTAudience, ""},
		{"AuthenticatorRole", c.AuthenticatorRole, "authenticator"},
		{"LogLevel", c.LogLevel, "info"},
		{"ShutdownGracePeriod", c.ShutdownGracePeriod, 10 * time.Second},
		{"LoginFailuresPerUser", c.LoginFailuresPerUser, 10},
		{"LoginFailuresPerIP", c.LoginFailuresPerIP, 60},
		{"APIKeyTokenTTL", c.APIKeyTokenTTL, 5 * time.Minute},
		{"LoginQueueWait", c.LoginQueueWait, 2 * time.Second},
		{"LoginShedHold", c.LoginShedHold, time.Second},
		{"BcryptSlots", c.BcryptSlots, 0},
		{"LoginQueue", c.LoginQueue, 0},
		{"BcryptNice", c.BcryptNice, 10},
		{"DatabaseURL", c.DatabaseURL, ""},
		{"DatabaseURLFile", c.DatabaseURLFile, ""},
		{"FixedProcs", c.FixedProcs, false},
		{"AuditRetention", c.AuditRetention, 90 * 24 * time.Hour},
		{"TrustedProxies", fmt.Sprint(c.TrustedProxies), "[127.0.0.0/8 ::1/128]"},
		{"JWTSecret", string(mustSecret(t, c)), secret32},
		{"SignupRole", c.SignupRole, ""}, // sign-up off
		{"SignupsPerIP", c.SignupsPerIP, 10},
		{"PasswordMinLength", c.PasswordMinLength, 8},
		{"ResetsPerUser", c.ResetsPerUser, 3},
		{"ResetDelivery", c.ResetDelivery, resetDelivery{}}, // pg_notify only
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestConfigValues(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"JWT_SECRET":                    secret32,
		"DATABASE_URL":                  "postgres://authd@db/app",
		"AUTHD_ADDR":                    "127.0.0.1:9000",
		"AUTHD_JWT_AUD":                 "my-api",
		"AUTHD_ACCESS_TTL":              "15m",
		"AUTHD_REFRESH_TTL":             "168h",
		"AUTHD_REFRESH_REUSE_GRACE":     "0s",
		"AUTHD_SESSION_LIFETIME":        "12h",
		"AUTHD_BCRYPT_COST":             "12",
		"AUTHD_COOKIE_SECURE":           "true",
		"AUTHD_COOKIE_SAMESITE":         "strict",
		"AUTHD_REFRESH_COOKIE_SAMESITE": "NONE",
		"AUTHD_COOKIE_DOMAIN":           "example.com",
		"AUTHD_AUTHENTICATOR_ROLE":      "pgrst",
		"AUTHD_LOG_LEVEL":               "debug",
		"AUTHD_SHUTDOWN_GRACE":          "30s",
		"AUTHD_BCRYPT_SLOTS":            "3",
		"AUTHD_LOGIN_QUEUE":             "50",
		"AUTHD_LOGIN_SHED_HOLD":         "0",
		"AUTHD_BCRYPT_NICE":             "0",
		"AUTHD_TRUSTED_PROXIES":         "10.0.0.0/8, 192.168.1.7",
		"AUTHD_ALLOWED_ORIGINS":         "https://app.example.com, HTTPS://Admin.Example.com:443,http://localhost:8080",
		"AUTHD_SIGNUP_ROLE":             "web_user",
		"AUTHD_SIGNUP_PER_IP":           "0",
		"AUTHD_PASSWORD_MIN_LENGTH":     "12",
		"AUTHD_AUDIT_RETENTION":         "30d12h",
		"AUTHD_DB_POOLER":               "transaction",
		"AUTHD_DB_DIRECT_URL":           "postgres://authd@db-primary/app",
	}
	c, err := loadConfig(getenv(env))
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"DatabaseURL", c.DatabaseURL, "postgres://authd@db/app"},
		{"Addr", c.Addr, "127.0.0.1:9000"},
		{"JWTAudience", c.JWTAudience, "my-api"},
		{"AccessTTL", c.AccessTTL, 15 * time.Minute},
		{"RefreshTTL", c.RefreshTTL, 168 * time.Hour},
		{"ReuseGrace", c.ReuseGrace, time.Duration(0)},
		{"SessionLifetime", c.SessionLifetime, 12 * time.Hour},
		{"BcryptCost", c.BcryptCost, 12},
		{"Cookie.Secure", c.Cookie.Secure, true},
		{"Cookie.SameSite", c.Cookie.SameSite, http.SameSiteStrictMode},
		{"LoginShedHold", c.LoginShedHold, time.Duration(0)},
		{"Cookie.RefreshSameSite", c.Cookie.RefreshSameSite, http.SameSiteNoneMode},
		{"Cookie.Domain", c.Cookie.Domain, "example.com"},
		{"Cookie.HostPrefix", c.Cookie.HostPrefix, false}, // a Domain rules it out
		{"AllowedOrigins", c.AllowedOrigins, []string{"https://app.example.com", "https://admin.example.com", "http://localhost:8080"}},
		{"AuthenticatorRole", c.AuthenticatorRole, "pgrst"},
		{"LogLevel", c.LogLevel, "debug"},
		{"ShutdownGracePeriod", c.ShutdownGracePeriod, 30 * time.Second},
		{"BcryptSlots", c.BcryptSlots, 3},
		{"LoginQueue", c.LoginQueue, 50},
		{"BcryptNice", c.BcryptNice, 0},
		{"TrustedProxies", fmt.Sprint(c.TrustedProxies), "[10.0.0.0/8 192.168.1.7/32]"},
		{"SignupRole", c.SignupRole, "web_user"},
		{"SignupsPerIP", c.SignupsPerIP, 0}, // no limit
		{"PasswordMinLength", c.PasswordMinLength, 12},
		{"AuditRetention", c.AuditRetention, 30*24*time.Hour + 12*time.Hour},
		{"DBPath", c.DBPath, dbPath{Pooler: store.PoolerTransaction, DirectURL: "postgres://authd@db-primary/app"}},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestAdminConfig: user add and apikey create read AUTHD_AUTHENTICATOR_ROLE
// as serve's configuration does, with no JWT secret needed.
func TestAdminConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "authenticator"},
		{map[string]string{"AUTHD_AUTHENTICATOR_ROLE": "pgrst"}, "pgrst"},
	} {
		a := loadAdminConfig(getenv(tt.env))
		if a.AuthenticatorRole != tt.want {
			t.Errorf("loadAdminConfig(%v).AuthenticatorRole: got %q, want %q", tt.env, a.AuthenticatorRole, tt.want)
		}
		c, err := loadConfig(getenv(withSecret(tt.env)))
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		if c.adminConfig != a {
			t.Errorf("loadConfig(%v).adminConfig: got %+v, want %+v", tt.env, c.adminConfig, a)
		}
	}
}

func TestConfigSecret(t *testing.T) {
	t.Parallel()
	// 32 bytes whose standard base64 has '+' and '/' in it.
	raw := bytes.Repeat([]byte{0xfb, 0xff, 0xbf, 0x01}, 8)
	std := base64.StdEncoding.EncodeToString(raw)
	if !strings.ContainsAny(std, "+/") {
		t.Fatalf("test secret %q has no +/ to translate", std)
	}
	url := base64.URLEncoding.EncodeToString(raw)
	rawURL := base64.RawURLEncoding.EncodeToString(raw)
	short := base64.StdEncoding.EncodeToString(raw[:31]) // 44 characters, 31 bytes
	other := "another-secret-of-32-bytes-or-more!!"

	tests := []struct {
		name string
		env  map[string]string
		want []byte
	}{
		{"JWT_SECRET raw", map[string]string{"JWT_SECRET": secret32}, []byte(secret32)},
		{"JWT_SECRET base64", map[string]string{"JWT_SECRET": std, "JWT_SECRET_IS_BASE64": "true"}, raw},
		{"JWT_SECRET base64 url-safe", map[string]string{"JWT_SECRET": url, "JWT_SECRET_IS_BASE64": "true"}, raw},
		{"JWT_SECRET base64 unpadded", map[string]string{"JWT_SECRET": rawURL, "JWT_SECRET_IS_BASE64": "true"}, raw},
		{"JWT_SECRET base64 text used raw", map[string]string{"JWT_SECRET": std}, []byte(std)},
		{"PGRST_JWT_SECRET fallback", map[string]string{"PGRST_JWT_SECRET": other}, []byte(other)},
		{"PGRST_JWT_SECRET base64", map[string]string{"PGRST_JWT_SECRET": std, "PGRST_JWT_SECRET_IS_BASE64": "true"}, raw},
		{"PGRST_JWT_SECRET base64 url-safe", map[string]string{"PGRST_JWT_SECRET": url, "PGRST_JWT_SECRET_IS_BASE64": "true"}, raw},
		{"PGRST_JWT_SECRET base64 unpadded", map[string]string{"PGRST_JWT_SECRET": rawURL, "PGRST_JWT_SECRET_IS_BASE64": "True"}, raw},
		{"JWT_SECRET wins", map[string]string{"JWT_SECRET": secret32, "PGRST_JWT_SECRET": other}, []byte(secret32)},
		{"JWT_SECRET_IS_BASE64 goes with JWT_SECRET",
			map[string]string{"JWT_SECRET": std, "JWT_SECRET_IS_BASE64": "true", "PGRST_JWT_SECRET": other}, raw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(getenv(tt.env))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if got := mustSecret(t, c); !bytes.Equal(got, tt.want) {
				t.Errorf("secret: got %q, want %q", got, tt.want)
			}
		})
	}

	refused := []struct {
		name   string
		env    map[string]string
		names  string // the variable the error must name
		secret string // must not appear in the error
	}{
		{"no secret", map[string]string{}, "JWT_SECRET", ""},
		{"JWT_SECRET of 31 bytes", map[string]string{"JWT_SECRET": secret32[:31]}, "JWT_SECRET", secret32[:31]},
		{"JWT_SECRET base64 of 31 bytes", map[string]string{"JWT_SECRET": short, "JWT_SECRET_IS_BASE64": "true"}, "JWT_SECRET", short},
		{"JWT_SECRET not base64", map[string]string{"JWT_SECRET": "not base64 at all, but 32 bytes long!", "JWT_SECRET_IS_BASE64": "true"},
			"JWT_SECRET", "not base64 at all, but 32 bytes long!"},
		{"PGRST_JWT_SECRET of 31 bytes", map[string]string{"PGRST_JWT_SECRET": secret32[:31]}, "PGRST_JWT_SECRET", secret32[:31]},
		{"PGRST_JWT_SECRET base64 of 31 bytes", map[string]string{"PGRST_JWT_SECRET": short, "PGRST_JWT_SECRET_IS_BASE64": "true"},
			"PGRST_JWT_SECRET", short},
		{"PGRST_JWT_SECRET not base64", map[string]string{"PGRST_JWT_SECRET": "not base64 at all, but 32 bytes long!", "PGRST_JWT_SECRET_IS_BASE64": "true"},
			"PGRST_JWT_SECRET", "not base64 at all, but 32 bytes long!"},
		{"bad JWT_SECRET_IS_BASE64", map[string]string{"JWT_SECRET": secret32, "JWT_SECRET_IS_BASE64": "yes please"}, "JWT_SECRET_IS_BASE64", secret32},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(getenv(tt.env))
			if err == nil {
				t.Fatalf("loadConfig: got no error, want one naming %s", tt.names)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Errorf("error %q does not name %s", err, tt.names)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error %q contains the secret's value", err)
			}
		})
	}
}

func TestConfigAccessTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want time.Duration
	}{
		{"PGRST_APP_SETTINGS_JWT_EXP seconds", map[string]string{"PGRST_APP_SETTINGS_JWT_EXP": "600"}, 10 * time.Minute},
		{"SuperStack's 3600", map[string]string{"PGRST_APP_SETTINGS_JWT_EXP": "3600"}, time.Hour},
		{"AUTHD_ACCESS_TTL wins", map[string]string{"PGRST_APP_SETTINGS_JWT_EXP": "600", "AUTHD_ACCESS_TTL": "5m"}, 5 * time.Minute},
		{"AUTHD_ACCESS_TTL alone", map[string]string{"AUTHD_ACCESS_TTL": "90s"}, 90 * time.Second},
		// A bad PGRST value is not even read when AUTHD_ACCESS_TTL is set.
		{"AUTHD_ACCESS_TTL shadows a bad PGRST value", map[string]string{"PGRST_APP_SETTINGS_JWT_EXP": "soon", "AUTHD_ACCESS_TTL": "5m"}, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(getenv(withSecret(tt.env)))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if c.AccessTTL != tt.want {
				t.Errorf("AccessTTL: got %s, want %s", c.AccessTTL, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value string
		extra       map[string]string
	}{
		{"AUTHD_ACCESS_TTL", "1 hour", nil},
		{"AUTHD_ACCESS_TTL", "3600", nil}, // a number without unit is not a Go duration
		{"AUTHD_ACCESS_TTL", "0s", nil},
		{"AUTHD_ACCESS_TTL", "-5m", nil},
		{"PGRST_APP_SETTINGS_JWT_EXP", "1h", nil},
		{"PGRST_APP_SETTINGS_JWT_EXP", "0", nil},
		{"PGRST_APP_SETTINGS_JWT_EXP", "-60", nil},
		{"AUTHD_REFRESH_TTL", "30d", nil},
		{"AUTHD_REFRESH_TTL", "0", nil},
		{"AUTHD_REFRESH_REUSE_GRACE", "ten seconds", nil},
		{"AUTHD_REFRESH_REUSE_GRACE", "-1s", nil},
		{"AUTHD_SESSION_LIFETIME", "0", nil},
		{"AUTHD_SESSION_LIFETIME", "7d", nil},
		{"AUTHD_SHUTDOWN_GRACE", "soon", nil},
		{"AUTHD_AUDIT_RETENTION", "forever", nil},
		{"AUTHD_AUDIT_RETENTION", "-1d", nil},
		{"AUTHD_BCRYPT_COST", "3", nil},
		{"AUTHD_BCRYPT_COST", "32", nil},
		{"AUTHD_BCRYPT_COST", "ten", nil},
		{"AUTHD_COOKIE_SECURE", "maybe", nil},
		{"AUTHD_COOKIE_SAMESITE", "sideways", nil},
		{"AUTHD_REFRESH_COOKIE_SAMESITE", "loose", nil},
		{"AUTHD_COOKIE_SAMESITE", "None", map[string]string{"AUTHD_COOKIE_SECURE": "false"}},
		{"AUTHD_COOKIE_SAMESITE", "none", map[string]string{"AUTHD_COOKIE_SECURE": "false"}},
		{"AUTHD_REFRESH_COOKIE_SAMESITE", "None", map[string]string{"AUTHD_COOKIE_SECURE": "false"}},
		{"AUTHD_COOKIE_HOST_PREFIX", "maybe", nil},
		{"AUTHD_SIGNUP_PER_IP", "ten", nil},
		{"AUTHD_SIGNUP_PER_IP", "-1", nil},
		{"AUTHD_SIGNUP_ROLE", "authenticator", nil}, // PostgREST's own role
		{"AUTHD_SIGNUP_ROLE", "pgrst", map[string]string{"AUTHD_AUTHENTICATOR_ROLE": "pgrst"}},
		{"AUTHD_PASSWORD_MIN_LENGTH", "0", nil},
		{"AUTHD_COOKIE_HOST_PREFIX", "true", map[string]string{"AUTHD_COOKIE_SECURE": "false"}},
		{"AUTHD_COOKIE_HOST_PREFIX", "true", map[string]string{"AUTHD_COOKIE_DOMAIN": "example.com"}},
		{"AUTHD_ALLOWED_ORIGINS", "app.example.com", nil},
		{"AUTHD_ALLOWED_ORIGINS", "https://app.example.com/", nil},
		{"AUTHD_ALLOWED_ORIGINS", "https://app.example.com/login", nil},
		{"AUTHD_ALLOWED_ORIGINS", "https://*.example.com", nil},
		{"AUTHD_ALLOWED_ORIGINS", "ftp://example.com", nil},
		{"AUTHD_ALLOWED_ORIGINS", "null", nil},
		{"AUTHD_LOG_LEVEL", "verbose", nil},
		{"AUTHD_BCRYPT_NICE", "20", nil},
		{"AUTHD_DB_POOLER", "pgbouncer", nil},
		{"AUTHD_BCRYPT_NICE", "-5", nil}, // raising priority needs privilege
		{"AUTHD_BCRYPT_SLOTS", "two", nil},
		{"AUTHD_LOGIN_QUEUE", "-1", nil},
		{"AUTHD_LOGIN_SHED_HOLD", "-1s", nil},
		{"AUTHD_TRUSTED_PROXIES", "10.0.0.0/33", nil},
		{"AUTHD_TRUSTED_PROXIES", "caddy", nil},
		{"AUTHD_TRUSTED_PROXIES", ",", nil},
		{"AUTHD_RESET_PER_USER", "-1", nil},
		{"AUTHD_RESET_LINK_BASE", "app.example.com", nil},
		{"AUTHD_RESET_WEBHOOK_URL", "http://hooks.example/reset", map[string]string{"AUTHD_RESET_WEBHOOK_SECRET": testWebhookSecret}},
		{"AUTHD_RESET_WEBHOOK_SECRET", "", map[string]string{"AUTHD_RESET_WEBHOOK_URL": "https://hooks.example/reset"}},
		{"AUTHD_RESET_WEBHOOK_SECRET", "hunter2", map[string]string{"AUTHD_RESET_WEBHOOK_URL": "https://hooks.example/reset"}},
		{"AUTHD_SMTP_URL", "smtp://mail.example/x", smtpEnv},
		{"AUTHD_SMTP_URL", "mail.example:587", smtpEnv},
		{"AUTHD_SMTP_FROM", "no reply", smtpEnv},
		{"AUTHD_SMTP_FROM", "", smtpEnv},
		{"AUTHD_RESET_LINK_BASE", "", smtpEnv},
		{"AUTHD_SMTP_PASSWORD", "hunter2", smtpEnv}, // no user in the URL
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			env := withSecret(nil)
			for k, v := range tt.extra {
				env[k] = v
			}
			env[tt.name] = tt.value
			_, err := loadConfig(getenv(env))
			if err == nil {
				t.Fatalf("loadConfig with %s=%q: got no error", tt.name, tt.value)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.name+": ") {
				t.Errorf("error: got %q, want it to start with %q", msg, tt.name+": ")
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("one bad variable gave several errors: %q", msg)
			}
			if strings.Contains(msg, secret32) || strings.Contains(msg, "hunter2") {
				t.Errorf("error %q contains the secret", msg)
			}
		})
	}

	t.Run("SameSite None with Secure", func(t *testing.T) {
		c, err := loadConfig(getenv(withSecret(map[string]string{
			"AUTHD_COOKIE_SECURE":           "true",
			"AUTHD_COOKIE_SAMESITE":         "None",
			"AUTHD_REFRESH_COOKIE_SAMESITE": "none",
		})))
		if err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		if c.Cookie.SameSite != http.SameSiteNoneMode || c.Cookie.RefreshSameSite != http.SameSiteNoneMode {
			t.Errorf("SameSite: got %v/%v, want None/None", c.Cookie.SameSite, c.Cookie.RefreshSameSite)
		}
	})

	t.Run("all reported together", func(t *testing.T) {
		secret := "short-secret-value"
		bad := map[string]string{
			"JWT_SECRET":                    secret,
			"AUTHD_ACCESS_TTL":              "forever",
			"AUTHD_REFRESH_TTL":             "30d",
			"AUTHD_REFRESH_REUSE_GRACE":     "a bit",
			"AUTHD_SHUTDOWN_GRACE":          "soon",
			"AUTHD_BCRYPT_COST":             "99",
			"AUTHD_COOKIE_SECURE":           "perhaps",
			"AUTHD_COOKIE_SAMESITE":         "sideways",
			"AUTHD_REFRESH_COOKIE_SAMESITE": "loose",
			"AUTHD_LOG_LEVEL":               "loud",
		}
		_, err := loadConfig(getenv(bad))
		if err == nil {
			t.Fatal("loadConfig: got no error")
		}
		msg := err.Error()
		lines := strings.Split(msg, "\n")
		if len(lines) != len(bad) {
			t.Errorf("error: got %d lines, want one per bad variable (%d):\n%s", len(lines), len(bad), msg)
		}
		for name, value := range bad {
			if !strings.Contains(msg, name+": ") {
				t.Errorf("error does not name %s:\n%s", name, msg)
			}
			if name != "JWT_SECRET" && !strings.Contains(msg, `"`+value+`"`) {
				t.Errorf("error does not quote the bad value %q of %s:\n%s", value, name, msg)
			}
		}
		if strings.Contains(msg, secret) {
			t.Errorf("error contains the secret's value:\n%s", msg)
		}
	})
}

// TestServeBadConfig: serve checks its configuration before it touches the
// database or the network.
func TestServeBadConfig(t *testing.T) {
	t.Parallel()
	secret := "too-short-secret"
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"short secret", map[string]string{"JWT_SECRET": secret}, []string{"JWT_SECRET"}},
		{"bad duration", map[string]string{"JWT_SECRET": secret32, "AUTHD_ACCESS_TTL": "1 hour"}, []string{"AUTHD_ACCESS_TTL"}},
		{"several", map[string]string{"JWT_SECRET": secret, "AUTHD_BCRYPT_COST": "1", "AUTHD_COOKIE_SAMESITE": "None", "AUTHD_COOKIE_SECURE": "false"},
			[]string{"JWT_SECRET", "AUTHD_BCRYPT_COST", "AUTHD_COOKIE_SAMESITE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				// Nothing listens here; serve must not get as far as trying.
				"DATABASE_URL": "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5",
				"AUTHD_ADDR":   "127.0.0.1:0",
			}
			for k, v := range tt.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, []string{"authd", "serve"}, getenv(env), environList(env), strings.NewReader(""), &stdout, &stderr)
			if err == nil {
				t.Fatal("serve with a bad configuration: got no error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w+": ") {
					t.Errorf("error %q does not name %s", msg, w)
				}
			}
			if strings.Contains(msg, "connect") || strings.Contains(msg, "refused") {
				t.Errorf("serve tried the database before checking its configuration: %q", msg)
			}
			if strings.Contains(msg, secret) || strings.Contains(stderr.String(), secret) {
				t.Errorf("the secret's value appears in the error or logs: %q / %q", msg, stderr.String())
			}
			if strings.Contains(stdout.String(), "listening") {
				t.Errorf("serve started listening: %q", stdout.String())
			}
		})
	}
}

func TestConfigLoginLimits(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(getenv(map[string]string{
		"JWT_SECRET": secret32, "AUTHD_LOGIN_FAILURES_PER_USER": "5", "AUTHD_LOGIN_FAILURES_PER_IP": "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginFailuresPerUser != 5 || c.LoginFailuresPerIP != 0 {
		t.Errorf("got %d per user, %d per IP; want 5 and 0", c.LoginFailuresPerUser, c.LoginFailuresPerIP)
	}
	if c.LoginsPerIP != 60 {
		t.Errorf("AUTHD_LOGINS_PER_IP unset: %d, want the default 60", c.LoginsPerIP)
	}
	c, err = loadConfig(getenv(map[string]string{"JWT_SECRET": secret32, "AUTHD_LOGINS_PER_IP": "0"}))
	if err != nil || c.LoginsPerIP != 0 {
		t.Errorf("AUTHD_LOGINS_PER_IP=0: %d (%v), want 0 (no limit)", c.LoginsPerIP, err)
	}
	_, err = loadConfig(getenv(map[string]string{"JWT_SECRET": secret32, "AUTHD_LOGINS_PER_IP": "many"}))
	if err == nil || !strings.Contains(err.Error(), "AUTHD_LOGINS_PER_IP") {
		t.Errorf("got %v, want an error naming AUTHD_LOGINS_PER_IP", err)
	}
	_, err = loadConfig(getenv(map[string]string{"JWT_SECRET": secret32, "AUTHD_APIKEY_TOKEN_TTL": "10s"}))
	if err == nil || !strings.Contains(err.Error(), "AUTHD_APIKEY_TOKEN_TTL") {
		t.Errorf("got %v, want an error naming AUTHD_APIKEY_TOKEN_TTL", err)
	}
	_, err = loadConfig(getenv(map[string]string{"JWT_SECRET": secret32, "AUTHD_LOGIN_FAILURES_PER_IP": "-1"}))
	if err == nil || !strings.Contains(err.Error(), "AUTHD_LOGIN_FAILURES_PER_IP") {
		t.Errorf("got %v, want an error naming AUTHD_LOGIN_FAILURES_PER_IP", err)
	}
}

func mustSecret(t *testing.T, c config) []byte {
	t.Helper()
	b, err := c.Secret.load()
	if err != nil {
		t.Fatalf("load secret: %v", err)
	}
	return b
}

func TestConfigFromFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secretFile := write("jwt-secret", secret32+"\n")
	urlFile := write("database-url", "postgres://authd@db/app\n")
	c, err := loadConfig(getenv(map[string]string{"JWT_SECRET_FILE": secretFile, "DATABASE_URL_FILE": urlFile}))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(mustSecret(t, c)); got != secret32 {
		t.Errorf("got secret %q, want the file's content without its newline", got)
	}
	if c.DatabaseURL != "postgres://authd@db/app" || c.DatabaseURLFile != urlFile {
		t.Errorf("got DATABASE_URL %q from %q, want postgres://authd@db/app from %q", c.DatabaseURL, c.DatabaseURLFile, urlFile)
	}
	for name, env := range map[string]map[string]string{
		"JWT_SECRET_FILE":        {"JWT_SECRET_FILE": filepath.Join(dir, "missing")},
		"DATABASE_URL_FILE":      {"JWT_SECRET": secret32, "DATABASE_URL_FILE": filepath.Join(dir, "missing")},
		"both JWT_SECRET":        {"JWT_SECRET": secret32, "JWT_SECRET_FILE": secretFile},
		"AUTHD_SIGNING_KEYS_DIR": {"AUTHD_SIGNING_KEYS_DIR": filepath.Join(dir, "missing")},
	} {
		_, err := loadConfig(getenv(env))
		want := strings.TrimPrefix(name, "both ")
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), secret32) {
			t.Errorf("%s: got %v, want an error naming %s without the secret", name, err, want)
		}
	}
	// Asymmetric keys alone are enough: no HMAC secret needed.
	keys := t.TempDir()
	k, err := token.GenerateKey(token.ES256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := k.MarshalPEM()
	if err := os.WriteFile(filepath.Join(keys, k.ID+".pem"), pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = loadConfig(getenv(map[string]string{"AUTHD_SIGNING_KEYS_DIR": keys, "AUTHD_JWT_ISS": "https://auth.example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	ks, _, err := c.keySet()
	if err != nil || ks.SigningKeyID() != k.ID || c.JWTIssuer != "https://auth.example.com" {
		t.Errorf("got signing kid %q (%v), issuer %q", ks.SigningKeyID(), err, c.JWTIssuer)
	}
	// A key directory others may write stops start-up: a key added there
	// would be trusted.
	if err := os.Chmod(keys, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err = loadConfig(getenv(map[string]string{"AUTHD_SIGNING_KEYS_DIR": keys}))
	if err == nil || !strings.Contains(err.Error(), "AUTHD_SIGNING_KEYS_DIR: key directory "+keys+" is writable by group or others") {
		t.Errorf("world-writable key directory: got %v, want a refusal naming it", err)
	}
}

// testWebhookSecret is a valid AUTHD_RESET_WEBHOOK_SECRET.
const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// smtpEnv is a valid SMTP configuration for the tests to spoil.
var smtpEnv = map[string]string{
	"AUTHD_SMTP_URL": "smtp://mail.example", "AUTHD_SMTP_FROM": "no-reply@example.com", "AUTHD_RESET_LINK_BASE": "https://app.example",
}

// TestConfigResetDelivery: the webhook's secret and the SMTP password
// come from files too, the link base from AUTHD_JWT_ISS unless
// AUTHD_RESET_LINK_BASE is set.
func TestConfigResetDelivery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hookFile, smtpFile := filepath.Join(dir, "hook"), filepath.Join(dir, "smtp")
	for path, content := range map[string]string{hookFile: testWebhookSecret + "\n", smtpFile: "mail-secret\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := loadConfig(getenv(withSecret(map[string]string{
		"AUTHD_JWT_ISS":                   "https://app.example",
		"AUTHD_RESET_PER_USER":            "5",
		"AUTHD_RESET_WEBHOOK_URL":         "https://hooks.example/reset",
		"AUTHD_RESET_WEBHOOK_SECRET_FILE": hookFile,
		"AUTHD_SMTP_URL":                  "smtps://mailer@mail.example",
		"AUTHD_SMTP_PASSWORD_FILE":        smtpFile,
		"AUTHD_SMTP_FROM":                 "Example <no-reply@example.com>",
	})))
	if err != nil {
		t.Fatal(err)
	}
	d := c.ResetDelivery
	if c.ResetsPerUser != 5 || d.LinkBase != "https://app.example" {
		t.Errorf("per user %d, link base %q; want 5 and AUTHD_JWT_ISS", c.ResetsPerUser, d.LinkBase)
	}
	if d.Webhook == nil || d.Webhook.URL != "https://hooks.example/reset" || len(d.Webhook.Secret) != 24 {
		t.Errorf("webhook %+v, want the URL and the file's 24-byte key", d.Webhook)
	}
	if s := d.SMTP; s == nil || s.Host != "mail.example" || s.Port != "465" || !s.ImplicitTLS || s.Username != "mailer" ||
		s.Password != "mail-secret" || s.From.Address != "no-reply@example.com" || s.PlainAllowed {
		t.Errorf("smtp %+v, want smtps to mail.example:465 as mailer with the file's password", s)
	}
	c, err = loadConfig(getenv(withSecret(map[string]string{"AUTHD_JWT_ISS": "https://auth.example", "AUTHD_RESET_LINK_BASE": "https://app.example/"})))
	if err != nil || c.ResetDelivery.LinkBase != "https://app.example/" {
		t.Errorf("link base %q (%v), want AUTHD_RESET_LINK_BASE's", c.ResetDelivery.LinkBase, err)
	}
}

// TestReserveProcs: the bcrypt slots are sized for the CPUs Go uses, and
// GOMAXPROCS is raised by the most compares they allow (all CPUs) once
// however often it is called; an operator's GOMAXPROCS (set in the
// environment) is left alone. Not parallel: the servers of parallel tests
// set GOMAXPROCS too.
func TestReserveProcs(t *testing.T) {
	runtime.SetDefaultGOMAXPROCS()
	base := runtime.GOMAXPROCS(0)
	for range 2 {
		if got := reserveProcs(false, 0); got != base {
			t.Errorf("CPUs: got %d, want %d", got, base)
		}
		if got := runtime.GOMAXPROCS(0); got != 2*base {
			t.Errorf("GOMAXPROCS: got %d, want %d + %d", got, base, base)
		}
	}
	if reserveProcs(false, 1); runtime.GOMAXPROCS(0) != base+1 {
		t.Errorf("AUTHD_BCRYPT_SLOTS=1: GOMAXPROCS %d, want %d + 1", runtime.GOMAXPROCS(0), base)
	}
	c, err := loadConfig(getenv(map[string]string{"JWT_SECRET": secret32, "GOMAXPROCS": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.FixedProcs {
		t.Fatal("with GOMAXPROCS set: FixedProcs is false")
	}
	before := runtime.GOMAXPROCS(0)
	if got := reserveProcs(c.FixedProcs, c.BcryptSlots); got != before {
		t.Errorf("with GOMAXPROCS set: got %d CPUs, want %d", got, before)
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("with GOMAXPROCS set, GOMAXPROCS changed from %d to %d", before, got)
	}
}

// Every setting authd knows (the names `authd serve` does not warn about)
// is described in the README or a page of docs/: an operator who reads a
// name in a warning, a compose file or the code finds what it does. A
// name documented with its file form, `NAME(_FILE)`, counts for both.
func TestEverySettingIsDocumented(t *testing.T) {
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, p := range append(pages, "../../README.md") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		text.Write(b)
	}
	docs := text.String()
	for _, name := range knownVars() {
		base, isFile := strings.CutSuffix(name, "_FILE")
		if strings.Contains(docs, "`"+name+"`") || strings.Contains(docs, name+"=") ||
			(isFile && strings.Contains(docs, base+"(_FILE)")) {
			continue
		}
		t.Errorf("%s is a setting authd knows, but neither the README nor docs/ says what it does", name)
	}
}
