package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"authd/identity"
	"authd/server"
)

func withTrustedProxies(t testing.TB, proxies string) option {
	p := mustTrust(t, proxies)
	return func(c *server.Config, _ *identity.Config, _ *envOpts) { c.TrustedProxies = p }
}

// logEntries are the JSON log lines of logs whose msg is msg.
func logEntries(t testing.TB, logs *syncBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestClientAddressFromTrustedProxies: the client address authd logs and
// throttles by is the right-most X-Forwarded-For entry that is not a
// trusted proxy; the test client, on loopback, plays the gateway.
func TestClientAddressFromTrustedProxies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name, trusted string
		xff           []string // header lines
		want          string
	}{
		{"no header: the peer", server.DefaultTrustedProxies, nil, "127.0.0.1"},
		{"one hop", server.DefaultTrustedProxies, []string{"203.0.113.5"}, "203.0.113.5"},
		{"what the client wrote is skipped", server.DefaultTrustedProxies, []string{"6.6.6.6, 203.0.113.5"}, "203.0.113.5"},
		// A machine on the internal network is no proxy unless named: it
		// cannot pass an address of its choice on.
		{"private peer not trusted by default", server.DefaultTrustedProxies, []string{"203.0.113.5, 10.1.2.3"}, "10.1.2.3"},
		{"named proxies are walked", "127.0.0.1, 10.0.0.0/8", []string{"6.6.6.6, 203.0.113.5", "10.1.2.3"}, "203.0.113.5"},
		{"every hop trusted: the left-most", "127.0.0.1,10.0.0.0/8", []string{"10.0.0.2, 10.0.0.1"}, "10.0.0.2"},
		{"not an address: the proxy that wrote it", "127.0.0.1,10.0.0.0/8", []string{"6.6.6.6, unknown, 10.0.0.1"}, "10.0.0.1"},
		{"brackets and ports", server.DefaultTrustedProxies, []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv4 with a port", server.DefaultTrustedProxies, []string{"203.0.113.5:5555"}, "203.0.113.5"},
		{"none: the header is ignored", "none", []string{"203.0.113.5"}, "127.0.0.1"},
		{"peer not trusted: the header is ignored", "192.0.2.0/24", []string{"203.0.113.5"}, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _, _, _, logs := e.newServer(withTrustedProxies(t, tc.trusted))
			h := http.Header{}
			for _, v := range tc.xff {
				h.Add("X-Forwarded-For", v)
			}
			wantStatus(t, do(t, nil, http.MethodGet, srv.URL+"/healthz", h, ""), http.StatusOK)
			lines := logEntries(t, logs, "request")
			if len(lines) != 1 || lines[0]["remote_ip"] != tc.want {
				t.Errorf("X-Forwarded-For %q behind %s: logged %v, want remote_ip %s", tc.xff, tc.trusted, lines, tc.want)
			}
		})
	}
}

// TestForwardedForFromUntrustedPeerDoesNotResetThrottle: a client that is
// not a trusted proxy cannot escape the per-client limit by writing a new
// address into X-Forwarded-For on each try, even from a private address.
func TestForwardedForFromUntrustedPeerDoesNotResetThrottle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLoginLimits(0, 2), withTrustedProxies(t, "none"))
	for _, ip := range []string{"10.9.9.1", "10.9.9.2"} {
		wantStatus(t, loginFrom(e, ip, testUser, "guess"), http.StatusUnauthorized)
	}
	wantThrottled(t, loginFrom(e, "10.9.9.3", testUser, "guess"))
}

func TestParseTrustedProxies(t *testing.T) {
	for _, bad := range []string{"", " , ", "10.0.0.0/33", "proxy.local", "10.0.0.1-10.0.0.9"} {
		if _, err := server.ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) = nil error", bad)
		}
	}
	got, err := server.ParseTrustedProxies(" 10.1.2.3/8 ,::ffff:192.0.2.1, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(got); s != "[10.0.0.0/8 192.0.2.1/32 fd00::/8]" {
		t.Errorf("got %s", s)
	}
	if got, err := server.ParseTrustedProxies("none"); err != nil || got != nil {
		t.Errorf(`ParseTrustedProxies("none") = %v, %v; want nil, nil`, got, err)
	}
}
