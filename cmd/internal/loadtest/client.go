package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RefreshPath is authd's refresh endpoint and its refresh cookie's Path.
const RefreshPath = "/rpc/refresh_token"

// Client sends authd's requests as a browser or gateway would, and checks
// the answers.
type Client struct {
	Base string // http://host:port
	HTTP *http.Client
	// addrs numbers the client addresses Login claims; it starts at a
	// random place in 10/8, so that two clients seldom claim the same.
	addrs atomic.Int64
}

// NewClient keeps up to idle keep-alive connections to addr, so that a
// steady load reuses them rather than dialling.
func NewClient(addr string, idle int) *Client {
	c := &Client{Base: "http://" + addr, HTTP: &http.Client{
		Transport: &http.Transport{MaxIdleConns: idle, MaxIdleConnsPerHost: idle, DisableCompression: true},
		Timeout:   30 * time.Second,
	}}
	c.addrs.Store(rand.Int64N(1 << 24))
	return c
}

// Address is the i-th address of 10/8 (i modulo 2^24).
func Address(i int64) string {
	return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
}

// FromAddress makes r claim addr in X-Forwarded-For, which authd believes
// from a loopback peer (as from a gateway on the same host).
func FromAddress(r *Request, addr string) {
	r.Header, r.Value = "X-Forwarded-For", addr
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

// Login logs user in from an address of its own (FromAddress), as each
// of a deployment's many users is: authd gives one address only so many
// logins a minute (AUTHD_LOGINS_PER_IP), and the clients of a load test
// all share this machine's. A 204 must set both session cookies.
func (c *Client) Login(ctx context.Context, user string) (Session, error) {
	r := LoginRequest(user)
	FromAddress(&r, Address(c.addrs.Add(1)))
	return c.session(ctx, r, "login")
}

// Refresh spends a refresh token and returns the rotated session.
func (c *Client) Refresh(ctx context.Context, refresh string) (Session, error) {
	return c.session(ctx, Request{Method: http.MethodPost, Path: RefreshPath, Header: "Cookie", Value: "refresh_token=" + refresh, Want: http.StatusNoContent}, "refresh")
}

func (c *Client) session(ctx context.Context, r Request, what string) (Session, error) {
	_, h, _, err := c.Do(ctx, r)
	if err != nil {
		return Session{}, err
	}
	return SessionCookies(h, what)
}

// Logout ends s with its refresh cookie, and its access cookie if set.
func (c *Client) Logout(ctx context.Context, s Session) error {
	cookies := "refresh_token=" + s.Refresh
	if s.Access != "" {
		cookies = "access_token=" + s.Access + "; " + cookies
	}
	_, _, _, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/rpc/logout", Header: "Cookie", Value: cookies, Want: http.StatusNoContent})
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
	for _, line := range strings.Split(string(body), "\n") {
		name, v, _ := strings.Cut(line, " ")
		if f, err := strconv.ParseFloat(v, 64); err == nil && !strings.HasPrefix(name, "#") {
			out[name] = f
		}
	}
	return out, nil
}

// Percentile is the nearest-rank p-quantile of lat (1 is the maximum), 0
// for none. lat is left unsorted.
func Percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

// MS writes d in milliseconds, the unit of every latency in the reports.
func MS(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// PMS is MS of lat's p-quantile.
func PMS(lat []time.Duration, p float64) string { return MS(Percentile(lat, p)) }

// Table writes the head of a Markdown table (the first column text, the
// others numbers) and returns the function that writes a row.
func Table(w io.Writer, head ...string) func(cells ...any) {
	fmt.Fprintf(w, "| %s |\n|---|%s\n", strings.Join(head, " | "), strings.Repeat("---:|", len(head)-1))
	return func(cells ...any) {
		s := make([]string, len(cells))
		for i, c := range cells {
			s[i] = fmt.Sprint(c)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(s, " | "))
	}
}

// Latencies records requests' durations and failures from many
// goroutines; the zero value is ready.
type Latencies struct {
	mu      sync.Mutex
	lat     []time.Duration
	errs    int64
	samples []string // the first few distinct error messages, for the whole run
}

// Add records a request; a non-nil err counts as a failure and keeps its
// message if new and there is room.
func (l *Latencies) Add(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lat = append(l.lat, d)
	if err != nil {
		l.errs++
		if msg := err.Error(); len(l.samples) < 5 && !slices.Contains(l.samples, msg) {
			l.samples = append(l.samples, msg)
		}
	}
}

// Get is every duration recorded, failures too, the failures and the
// error samples; read it once the senders are done.
func (l *Latencies) Get() ([]time.Duration, int64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lat, l.errs, slices.Clone(l.samples)
}

// Take returns what was recorded so far and starts over (keeping the
// error samples, which describe the run), while senders go on adding.
func (l *Latencies) Take() ([]time.Duration, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lat, errs := l.lat, l.errs
	l.lat, l.errs = nil, 0
	return lat, errs
}

// Pacer sends requests open loop, each on its own goroutine when its slot
// comes, as independent clients would: a closed loop slows down with the
// server and so hides its latency under load.
type Pacer struct {
	Rate        float64 // calls per second; none unless positive
	MaxInflight int     // a slot that finds this many running is dropped
	// MaxLag, if positive, is how far the schedule may fall behind the
	// clock (the sender starved of CPU) before missed slots are dropped
	// rather than sent at once.
	MaxLag time.Duration
}

// Run calls fn on the schedule from start until start+d or ctx's end and
// returns, once every call has, the slots dropped.
func (p Pacer) Run(ctx context.Context, start time.Time, d time.Duration, fn func(context.Context)) (dropped int64) {
	if p.Rate <= 0 {
		return 0
	}
	every, end := time.Duration(float64(time.Second)/p.Rate), start.Add(d)
	sem := make(chan struct{}, max(p.MaxInflight, 1))
	var wg sync.WaitGroup
	defer wg.Wait()
	for next := start; next.Before(end); next = next.Add(every) {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(next)):
		}
		if ctx.Err() != nil {
			return dropped
		}
		select {
		case sem <- struct{}{}:
			wg.Go(func() {
				defer func() { <-sem }()
				fn(ctx)
			})
		default:
			dropped++
		}
		if now := time.Now(); p.MaxLag > 0 && next.Add(every).Before(now.Add(-p.MaxLag)) {
			next = now.Add(-every) // far behind: drop the missed slots
		}
	}
	return dropped
}
