package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// DefaultTrustedProxies is AUTHD_TRUSTED_PROXIES when it is not set: a
// gateway on the same host (or in the same pod) as authd. A gateway on
// another machine or container is trusted only when the operator names
// its addresses, since anyone else on that network could otherwise write
// any client address into X-Forwarded-For.
const DefaultTrustedProxies = "127.0.0.0/8,::1/128"

// ParseTrustedProxies reads AUTHD_TRUSTED_PROXIES: addresses and CIDR
// ranges separated by commas, or "none" to ignore X-Forwarded-For.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "none" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			a = a.Unmap().WithZone("")
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("want IP addresses or CIDR ranges such as 10.0.0.0/8, separated by commas, or none; got %q", f)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address or range in %q (to trust no proxy, say none)", s)
	}
	return out, nil
}

// clientIPExtractor is how echo's RealIP finds the client behind the
// trusted proxies.
func clientIPExtractor(trusted []netip.Prefix) echo.IPExtractor {
	return func(r *http.Request) string { return clientAddr(r, trusted) }
}

// clientAddr is the address logins are throttled by and logs name: the
// TCP peer, unless the peer is a trusted proxy; then X-Forwarded-For is
// read from the right, each entry having been written by the hop to its
// right, and the first entry that is not a trusted proxy is the client.
// Entries left of it were written by the client and are ignored. If every
// hop is trusted, the left-most is the client. An entry that is not an
// address (a proxy that wrote "unknown", say) ends the walk at the trusted
// hop that wrote it: nothing a client wrote is ever taken.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	hop, ok := parseHop(host)
	if !ok {
		return host
	}
	if !isTrusted(hop, trusted) {
		return hop.String()
	}
	// No header: one empty entry, which ends the walk at the peer.
	entries := strings.Split(strings.Join(r.Header.Values(echo.HeaderXForwardedFor), ","), ",")
	for i := len(entries) - 1; i >= 0; i-- {
		next, ok := parseHop(entries[i])
		if !ok {
			break
		}
		hop = next
		if !isTrusted(hop, trusted) {
			break
		}
	}
	return hop.String()
}

// parseHop reads one X-Forwarded-For entry: an address, possibly in
// brackets or with a port, as some proxies write them.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// maxUserAgentLog bounds the User-Agent a security log line carries: it
// is the client's text, and a client could otherwise fill the log.
const maxUserAgentLog = 200

// logUserAgent is the request's User-Agent cut to maxUserAgentLog bytes
// of valid UTF-8, for security log lines.
func logUserAgent(r *http.Request) string {
	ua := r.Header.Get("User-Agent")
	if len(ua) > maxUserAgentLog {
		n := maxUserAgentLog
		for n > 0 && !utf8.RuneStart(ua[n]) { // not in the middle of a character
			n--
		}
		ua = ua[:n]
	}
	return strings.ToValidUTF8(ua, "?")
}
