package server

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// ParseOrigin returns s, a web origin such as https://app.example.com or
// http://localhost:8080, in the form browsers send in an Origin header:
// lower case, without a default port. Anything else — a path, a query,
// user info, another scheme — is an error: an origin names a site, and a
// looser match would let another one in.
func ParseOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", errors.New("want an origin such as https://app.example.com (scheme, host and port only), got " + s)
	}
	o, ok := originOf(u)
	if !ok || !hostName(u.Hostname()) {
		return "", errors.New("want an http or https origin with a host name or address (no wildcards), got " + s)
	}
	return o, nil
}

// hostName reports whether h is an IP address or a DNS name: letters,
// digits, hyphens and dots only.
func hostName(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	return h != "" && strings.Trim(strings.ToLower(h), "abcdefghijklmnopqrstuvwxyz0123456789-.") == ""
}

// originOf is the origin of u, normalised as ParseOrigin's; false when u
// has no http(s) scheme or no host.
func originOf(u *url.URL) (string, bool) {
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" {
		return "", false
	}
	return scheme + "://" + normalHost(scheme, u.Host), true
}

// normalHost lowercases host and drops the scheme's default port, which
// browsers leave out of Origin.
func normalHost(scheme, host string) string {
	host = strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil &&
		(scheme == "http" && port == "80" || scheme == "https" && port == "443") {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return host
}

// sameSite refuses a request to an endpoint that sets, reads or clears
// the session cookies unless it comes from the site itself or an origin
// the operator allows (Config.AllowedOrigins): any page on the web can
// make a browser post a form, or a no-cors fetch, to authd, and login
// CSRF needs no cookie at all.
func (s *Server) sameSite(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.originAllowed(c.Request()) {
			return errCrossSite()
		}
		return next(c)
	}
}

// originAllowed applies the origin policy (docs/security.md, "Browsers:
// CSRF, cookies and framing"):
//
//   - A browser with Fetch Metadata says where the request comes from:
//     same-origin (or none: the user's own action) passes; same-site
//     (a sibling subdomain) and cross-site pass only from an allowed
//     origin.
//   - Without Fetch Metadata, Origin (else Referer's origin) must be the
//     request's own origin — the scheme the gateway reports in
//     X-Forwarded-Proto and the Host the browser addressed, neither of
//     which a page can set on a request it makes another site's browser
//     send — or an allowed origin.
//   - A request with neither Origin nor Referer nor Fetch Metadata is not
//     a browser's POST (every browser since 2020 sends Origin on one):
//     curl, scripts and servers pass, as they carry no cookies of their
//     own accord.
func (s *Server) originAllowed(r *http.Request) bool {
	fetchSite, ok := single(r.Header, "Sec-Fetch-Site")
	if !ok {
		return false
	}
	origin, ok := single(r.Header, "Origin")
	if !ok {
		return false
	}
	switch fetchSite {
	case "same-origin", "none":
		return true
	case "":
	default: // same-site, cross-site, or a value this code does not know
		o, err := ParseOrigin(origin)
		return err == nil && slices.Contains(s.cfg.AllowedOrigins, o)
	}
	if origin == "" {
		ref, ok := single(r.Header, "Referer")
		if !ok {
			return false
		}
		if ref == "" {
			return true
		}
		origin = ref
	}
	// "null" (a sandboxed frame, a file, a page that sends no referrer)
	// does not parse, and never passes.
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	o, ok := originOf(u)
	return ok && (o == ownOrigin(r) || slices.Contains(s.cfg.AllowedOrigins, o))
}

// ownOrigin is the origin the browser addressed: the scheme the gateway
// reports (X-Forwarded-Proto; else the connection's) and the Host header,
// which the gateways in deploy/ pass on unchanged.
func ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); p != "" {
		scheme = strings.ToLower(strings.TrimSpace(p))
	}
	if r.Host == "" {
		return ""
	}
	return scheme + "://" + normalHost(scheme, r.Host)
}

// single is the one value of the header name ("" when absent); false when
// it is sent more than once, which no browser does.
func single(h http.Header, name string) (string, bool) {
	switch vs := h.Values(name); len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	return "", false
}
