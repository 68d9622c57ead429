package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RefreshPath is authd's refresh endpoint, which is also the Path of the
// refresh_token cookie: a browser sends that cookie there and nowhere
// else.
const RefreshPath = "/rpc/refresh_token"

// NewClient is an HTTP client for load against one local server: it keeps
// up to idle keep-alive connections (so that a steady load reuses them
// rather than dialling), no proxy, no compression, and hands redirects
// back rather than following them.
func NewClient(idle int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        idle,
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Request is one request Send makes.
type Request struct {
	Method, Path string
	Body         []byte // sent as JSON; nil for none
	// Header and Value are one more header, such as a Cookie or an
	// X-API-Key; none when Header is "".
	Header, Value string
	Want          int // the status that counts as success
}

// Send sends r to the server at base and returns the answer's header if
// its status is r.Want. The body is read to the end and closed, so that
// the connection is reused; on any other status up to 2 KiB of it go in
// the error, which names the path but never a credential.
func Send(ctx context.Context, client *http.Client, base string, r Request) (http.Header, error) {
	var rd io.Reader
	if r.Body != nil {
		rd = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, base+r.Path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
	}
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.Header != "" {
		req.Header.Set(r.Header, r.Value)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != r.Want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", r.Method, r.Path, resp.StatusCode, r.Want, bytes.TrimSpace(msg))
	}
	return resp.Header, nil
}

// SessionCookies returns the session cookies an answer of authd set, each
// only with the Path a browser would send it on: the refresh token for
// RefreshPath and the access token for "/". Either is "" if missing.
func SessionCookies(h http.Header) (refresh, access string) {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		switch {
		case c.Name == "refresh_token" && c.Path == RefreshPath && c.Value != "":
			refresh = c.Value
		case c.Name == "access_token" && c.Path == "/" && c.Value != "":
			access = c.Value
		}
	}
	return refresh, access
}

// ScrapeMetrics reads authd's GET /metrics: the server's own view
// (goroutines, pool connections, logins shed) beside what the client
// measured.
func ScrapeMetrics(ctx context.Context, client *http.Client, base string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics reads a Prometheus text exposition into series → value,
// each series written as in the exposition ("name" or "name{labels}"),
// which is all a report needs to look values up and subtract them.
// Comments and lines without a number are skipped.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}
