package server

import (
	"net/http"
	"time"
)

// Cookie names and paths. SuperStack's clients know these names, and its
// Caddyfile copies access_token into Authorization (such a gateway needs
// HostPrefix off; the gateways in deploy/ ask /auth/verify instead).
const (
	accessCookie  = "access_token"
	refreshCookie = "refresh_token"
	// hostPrefix marks a cookie that browsers accept only with Secure,
	// Path=/ and no Domain, set by this very host: a sibling subdomain
	// cannot plant one (cookie tossing). The refresh cookie cannot carry
	// it: its paths are not /.
	hostPrefix = "__Host-"
)

// refreshPaths are the only paths the refresh cookie is sent to. It is
// set once per path (a cookie's identity is name+domain+path): at
// /rpc/refresh_token, as SuperStack did, and at /rpc/logout, so that a
// browser whose access cookie has already expired can still end its
// session. It never travels to PostgREST or any other route.
var refreshPaths = [...]string{"/rpc/refresh_token", "/rpc/logout"}

// CookieConfig holds the cookie attributes an operator chooses.
type CookieConfig struct {
	// Secure adds the Secure attribute; on for anything served over HTTPS.
	Secure bool
	// SameSite applies to the access cookie (Lax by default, so links into
	// the app from elsewhere arrive logged in).
	SameSite http.SameSite
	// RefreshSameSite applies to the refresh cookie (Strict by default: it
	// is only ever sent by the app's own fetch to /rpc/refresh_token).
	RefreshSameSite http.SameSite
	// Domain, when set, shares the cookies with subdomains.
	Domain string
	// HostPrefix names the access cookie __Host-access_token, and only
	// that name is read back. Browsers take it only with Secure and no
	// Domain.
	HostPrefix bool
}

// accessName is the access cookie's name.
func (cc CookieConfig) accessName() string {
	if cc.HostPrefix {
		return hostPrefix + accessCookie
	}
	return accessCookie
}

func (cc CookieConfig) access(value string, maxAge int) *http.Cookie {
	return cc.cookie(cc.accessName(), value, "/", cc.SameSite, maxAge)
}

func (cc CookieConfig) refresh(value string, maxAge int) []*http.Cookie {
	out := make([]*http.Cookie, 0, len(refreshPaths))
	for _, p := range refreshPaths {
		out = append(out, cc.cookie(refreshCookie, value, p, cc.RefreshSameSite, maxAge))
	}
	return out
}

// cleared returns cookies that delete both tokens, with the same name,
// path and domain they were set with; otherwise the browser keeps them.
func (cc CookieConfig) cleared() []*http.Cookie {
	return append([]*http.Cookie{cc.access("", -1)}, cc.refresh("", -1)...)
}

func (cc CookieConfig) cookie(name, value, path string, sameSite http.SameSite, maxAge int) *http.Cookie {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     path,
		Domain:   cc.Domain,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   cc.Secure,
		SameSite: sameSite,
	}
	if maxAge < 0 {
		c.Expires = time.Unix(0, 0)
	}
	return c
}

// cookieValues are the values of every cookie named name in r. A browser
// sends two when another host under the same parent domain (or a path
// of this one) set a cookie of that name too: the order says nothing
// about which is this site's, so callers never just take the first.
func cookieValues(r *http.Request, name string) []string {
	var out []string
	for _, c := range r.CookiesNamed(name) {
		out = append(out, c.Value)
	}
	return out
}

// oneCookie is the value of the cookie name, "" when there is none, and
// a 401 when there are several.
func oneCookie(r *http.Request, name string) (string, error) {
	vs := cookieValues(r, name)
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", errDuplicateCookie(name)
}

// refreshMaxAge is the refresh cookie's Max-Age for a token that lives
// ttl: whole seconds, rounded down so that the cookie never outlives the
// token (nor the session, which caps the token), and at least 1: for
// net/http a MaxAge of 0 means no Max-Age at all, a cookie kept until the
// browser closes.
func refreshMaxAge(ttl time.Duration) int {
	return max(int(ttl/time.Second), 1)
}
