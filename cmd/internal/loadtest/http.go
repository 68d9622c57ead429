package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RefreshPath is authd's refresh endpoint and its refresh cookie's Path.
const RefreshPath = "/rpc/refresh_token"

// Client sends authd's requests as a browser or gateway would, and checks
// the answers.
type Client struct {
	Base string // http://host:port
	HTTP *http.Client
}

// NewClient keeps up to idle keep-alive connections to addr, so that a
// steady load reuses them rather than dialling.
func NewClient(addr string, idle int) *Client {
	return &Client{Base: "http://" + addr, HTTP: &http.Client{
		Transport: &http.Transport{MaxIdleConns: idle, MaxIdleConnsPerHost: idle, DisableCompression: true},
		Timeout:   30 * time.Second,
	}}
}

// Close closes the idle connections.
func (c *Client) Close() { c.HTTP.CloseIdleConnections() }

// Request is one request Do makes.
type Request struct {
	Method, Path  string
	Body          []byte // sent as JSON; nil for none
	Header, Value string // one more header (a Cookie, an X-API-Key), if Header is set
	Want          int    // the status that counts as success; 0 takes any
}

// Do sends r and returns the status and header. The body is read to the
// end, so the connection is reused; on a status other than r.Want up to
// 2 KiB of it go in the error, which never names a credential.
func (c *Client) Do(ctx context.Context, r Request) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, c.Base+r.Path, bytes.NewReader(r.Body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
	}
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.Header != "" {
		req.Header.Set(r.Header, r.Value)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && r.Want != 0 && resp.StatusCode != r.Want {
		err = fmt.Errorf("%s %s: status %d, want %d: %s", r.Method, r.Path, resp.StatusCode, r.Want, bytes.TrimSpace(body[:min(len(body), 2048)]))
	}
	return resp.StatusCode, resp.Header, body, err
}

// Session is what a browser holds after a login.
type Session struct{ Refresh, Access string }

// LoginRequest is POST /rpc/login as user.
func LoginRequest(user string) Request {
	body, _ := json.Marshal(map[string]string{"user_": user, "pass": Password})
	return Request{Method: http.MethodPost, Path: "/rpc/login", Body: body, Want: http.StatusNoContent}
}

// Login logs user in; a 204 must set both session cookies.
func (c *Client) Login(ctx context.Context, user string) (Session, error) {
	_, h, _, err := c.Do(ctx, LoginRequest(user))
	if err != nil {
		return Session{}, err
	}
	return SessionCookies(h, "login")
}

// Refresh spends a refresh token and returns the rotated session.
func (c *Client) Refresh(ctx context.Context, refresh string) (Session, error) {
	_, h, _, err := c.Do(ctx, Request{Method: http.MethodPost, Path: RefreshPath, Header: "Cookie", Value: "refresh_token=" + refresh, Want: http.StatusNoContent})
	if err != nil {
		return Session{}, err
	}
	return SessionCookies(h, "refresh")
}

// Logout ends s with the cookies of it that are set, as a browser sends them.
func (c *Client) Logout(ctx context.Context, s Session) error {
	var cookies []string
	for _, kv := range [][2]string{{"access_token", s.Access}, {"refresh_token", s.Refresh}} {
		if kv[1] != "" {
			cookies = append(cookies, kv[0]+"="+kv[1])
		}
	}
	_, _, _, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/rpc/logout", Header: "Cookie", Value: strings.Join(cookies, "; "), Want: http.StatusNoContent})
	return err
}

// Get sends GET path with one credential header and wants a 200; with
// role set, one that passes the request on as role with a Bearer token
// for the upstream, as /auth/verify does.
func (c *Client) Get(ctx context.Context, path, header, value, role string) error {
	_, h, _, err := c.Do(ctx, Request{Method: http.MethodGet, Path: path, Header: header, Value: value, Want: http.StatusOK})
	switch {
	case err != nil || role == "":
		return err
	case h.Get("X-Auth-Role") != role:
		return fmt.Errorf("GET %s: X-Auth-Role %q, want %q", path, h.Get("X-Auth-Role"), role)
	case !strings.HasPrefix(h.Get("Authorization"), "Bearer "):
		return fmt.Errorf("GET %s: 200 without a Bearer Authorization for the upstream", path)
	}
	return nil
}

// SessionCookies reads both session cookies of an answer to what, each
// only with the Path a browser sends it on.
func SessionCookies(h http.Header, what string) (Session, error) {
	var s Session
	for _, c := range (&http.Response{Header: h}).Cookies() {
		switch {
		case c.Name == "refresh_token" && c.Path == RefreshPath:
			s.Refresh = c.Value
		case c.Name == "access_token" && c.Path == "/":
			s.Access = c.Value
		}
	}
	if s.Refresh == "" || s.Access == "" {
		return s, fmt.Errorf("%s: 204 without both session cookies", what)
	}
	return s, nil
}

// Metrics reads GET /metrics into series ("name" or "name{labels}", as
// written) → value: enough to look values up and subtract them.
func (c *Client) Metrics(ctx context.Context) (map[string]float64, error) {
	_, _, body, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/metrics", Want: http.StatusOK})
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for sc := bufio.NewScanner(bytes.NewReader(body)); sc.Scan(); {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out[name] = f
			}
		}
	}
	return out, nil
}
