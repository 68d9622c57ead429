package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// Database round trips per request are counted exactly, not timed: a
// second authd talks to PostgreSQL through pgProxy, which decodes the
// frontend messages it forwards and counts Sync and Query (each ends in a
// ReadyForQuery the client waits for), with pgxpool's liveness pings
// ("-- ping") apart. The timed servers connect directly, so the proxy
// costs them nothing. (pg_stat_database.xact_commit is no use: a busy
// backend flushes its counters at most once a second.)

// wireCounts are what the proxy has seen so far.
type wireCounts struct {
	syncs, queries, pings, parses, executes int64
	sql                                     []string // each statement executed, by its text
}

// pgProxy forwards TCP connections to PostgreSQL and counts the
// frontend's protocol messages on the way.
type pgProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	counts wireCounts
}

func startProxy(target string) (*pgProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pgProxy{ln: ln, target: target}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
	return p, nil
}

func (p *pgProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *pgProxy) snapshot() wireCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.sql = slices.Clone(c.sql)
	return c
}

func (p *pgProxy) serve(client net.Conn) {
	defer client.Close()
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	defer upstream.Close()
	p.mu.Lock()
	p.conns = append(p.conns, client, upstream)
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(client, upstream)
		_ = client.Close()
	}()
	// Every byte the client sends is forwarded as it is read; pgproto3's
	// backend half decodes the same bytes. The URL through the proxy says
	// sslmode=disable, so the start-up message comes first and in clear.
	r := io.TeeReader(client, upstream)
	be := pgproto3.NewBackend(r, nil)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	prepared := map[string]string{} // statement name → SQL, per connection
	for bad := 0; bad < 3; {
		msg, err := be.Receive()
		var opErr *net.OpError
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &opErr):
			return
		case err != nil:
			bad++ // a SASL answer, which decodes only with the auth state: skipped
			continue
		}
		bad = 0
		p.mu.Lock()
		switch m := msg.(type) {
		case *pgproto3.Sync:
			p.counts.syncs++
		case *pgproto3.Query:
			p.counts.queries++
			if strings.HasPrefix(m.String, "-- ping") {
				p.counts.pings++
			} else {
				p.counts.sql = append(p.counts.sql, m.String)
			}
		case *pgproto3.Parse:
			p.counts.parses++
			prepared[m.Name] = m.Query
		case *pgproto3.Bind:
			p.counts.sql = append(p.counts.sql, prepared[m.PreparedStatement])
		case *pgproto3.Execute:
			p.counts.executes++
		}
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r) // out of step: forward the rest uncounted
}

// rtRow is one row of the round-trip table.
type rtRow struct {
	name                             string
	n                                int
	window                           time.Duration
	total                            int64 // round trips in the window
	roundTrips, statements, prepares float64
	pings                            int64
	sql                              []string // the statements executed in the window
}

// rtServer is an authd whose database connections go through a pgProxy.
type rtServer struct {
	px  *pgProxy
	srv *loadtest.Server
	c   *loadtest.Client
}

func (rn *runner) startRT(ctx context.Context, a *algSetup) (*rtServer, error) {
	u, err := url.Parse(rn.h.DBURL)
	if err != nil {
		return nil, err
	}
	if u.Hostname() == "" || strings.HasPrefix(u.Hostname(), "/") || u.Query().Get("host") != "" {
		return nil, errors.New("-admin-url does not name a TCP host and port")
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	px, err := startProxy(net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, err
	}
	rtURL, err := loadtest.PgURL(rn.h.DBURL, func(u *url.URL, q url.Values) {
		u.Host = px.ln.Addr().String()
		q.Set("sslmode", "disable") // the proxy must see plain protocol
		q.Set("application_name", "authd-bench-roundtrips")
	})
	if err != nil {
		px.close()
		return nil, err
	}
	srv, err := rn.h.Start(ctx, "authd-roundtrips", append(slices.Clone(a.env), "DATABASE_URL="+rtURL)...)
	if err != nil {
		px.close()
		return nil, err
	}
	return &rtServer{px: px, srv: srv, c: loadtest.NewClient(srv.Addr, 2*rn.o.concurrency)}, nil
}

func (rt *rtServer) close() {
	rt.c.Close()
	_ = rt.srv.Stop()
	rt.px.close()
}

// settleTime lets authd's background writes (an API key's last_used_at)
// land on the side of a snapshot they belong to.
const settleTime = 100 * time.Millisecond

// measure sends warm requests, then n counted ones, each after the last
// has been answered (paced evenly over spread if it is positive), and
// returns the row: after the warm-up (pgx prepares each statement once
// per connection) the counts per request are exact.
func (rt *rtServer) measure(name string, warm, n int, spread time.Duration, op func(i int) error) (rtRow, error) {
	for i := range warm {
		if err := op(i); err != nil {
			return rtRow{}, fmt.Errorf("%s (warm-up): %w", name, err)
		}
	}
	if spread > 0 {
		time.Sleep(settleTime)
	}
	before, from := rt.px.snapshot(), time.Now()
	for i := range n {
		time.Sleep(time.Until(from.Add(spread * time.Duration(i) / time.Duration(n))))
		if err := op(warm + i); err != nil {
			return rtRow{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	time.Sleep(time.Until(from.Add(spread)))
	to := time.Now()
	if spread > 0 {
		time.Sleep(settleTime)
	}
	return rtRowOf(name, n, before, rt.px.snapshot(), to.Sub(from)), nil
}

func rtRowOf(name string, n int, a, b wireCounts, window time.Duration) rtRow {
	rt := b.syncs + b.queries - b.pings - (a.syncs + a.queries - a.pings)
	k := float64(n)
	return rtRow{name: name, n: n, window: window, total: rt, roundTrips: float64(rt) / k,
		statements: float64(b.executes+b.queries-b.pings-(a.executes+a.queries-a.pings)) / k,
		prepares:   float64(b.parses-a.parses) / k, pings: b.pings - a.pings, sql: b.sql[len(a.sql):]}
}

// refreshStatement is the SQL of the one statement a refresh runs, as
// authd sends it on the wire: what "the statement alone" and -growth's
// EXPLAIN run, with no copy of it in this program.
func (rn *runner) refreshStatement(ctx context.Context, a *algSetup) (string, error) {
	rt, err := rn.startRT(ctx, a)
	if err != nil {
		return "", fmt.Errorf("capture the refresh statement: %w", err)
	}
	defer rt.close()
	s, err := rt.c.Login(ctx, rn.h.Users[0])
	if err != nil {
		return "", err
	}
	row, err := rt.measure("refresh", 2, 3, 0, func(int) error { s, err = rt.c.Refresh(ctx, s.Refresh); return err })
	if err != nil {
		return "", err
	}
	if len(row.sql) != 3 || row.sql[0] != row.sql[1] || row.sql[1] != row.sql[2] || row.total != 3 {
		return "", fmt.Errorf("3 refreshes made %d round trips with %d statements; want one statement each", row.total, len(row.sql))
	}
	return row.sql[0], nil
}

// countRoundTrips fills the report's round-trip table on a's server.
func (rn *runner) countRoundTrips(ctx context.Context, a *algSetup) error {
	o, h := rn.o, rn.h
	rt, err := rn.startRT(ctx, a)
	if err != nil {
		rn.rep.rtNote = "skipped: " + err.Error()
		return nil
	}
	defer rt.close()
	c := rt.c
	add := func(row rtRow, err error) error {
		rn.rep.roundTrips = append(rn.rep.roundTrips, row)
		return err
	}
	if o.scenarios["login"] {
		if err := add(rt.measure("login", 2, 5, 0, func(i int) error { _, err := c.Login(ctx, h.Users[i%len(h.Users)]); return err })); err != nil {
			return err
		}
	}
	if o.scenarios["refresh"] {
		s, err := c.Login(ctx, h.Users[0])
		if err != nil {
			return err
		}
		if err := add(rt.measure("refresh", 3, 50, 0, func(int) error { s, err = c.Refresh(ctx, s.Refresh); return err })); err != nil {
			return err
		}
		if err := add(rt.measure("refresh, unknown token (401)", 2, 20, 0, func(int) error {
			plain, _, _ := token.NewRefresh()
			_, _, err := c.Do(ctx, loadtest.Request{Method: http.MethodPost, Path: loadtest.RefreshPath, Header: "Cookie", Value: "refresh_token=" + plain, Want: http.StatusUnauthorized})
			return err
		})); err != nil {
			return err
		}
	}
	if o.scenarios["logout"] {
		tokens, err := createSessions(ctx, h.Pool, h.Users, 53)
		if err != nil {
			return err
		}
		if err := add(rt.measure("logout (refresh cookie)", 3, 50, 0, func(i int) error { return c.Logout(ctx, loadtest.Session{Refresh: tokens[i]}) })); err != nil {
			return err
		}
		// A browser also sends the access cookie, which names the session
		// too. The logins happen before the counted window.
		sessions := make([]loadtest.Session, 7)
		for i := range sessions {
			if sessions[i], err = c.Login(ctx, h.Users[i%len(h.Users)]); err != nil {
				return err
			}
		}
		if err := add(rt.measure("logout (browser: both cookies)", 2, 5, 0, func(i int) error { return c.Logout(ctx, sessions[i]) })); err != nil {
			return err
		}
	}
	gets := rn.gets(rn.access)
	for _, s := range []string{"verify-fresh", "bare", "verify-jwt", "verify-cookie"} {
		g := gets[s]
		if !o.scenarios[s] || (s == "verify-fresh" && len(rn.fresh) == 0) {
			continue
		}
		// A new server: none of verify-fresh's tokens is in its cache.
		if err := add(rt.measure(s, 3, 200, 0, func(i int) error {
			if s == "verify-fresh" {
				g[2] = "Bearer " + rn.fresh[i%len(rn.fresh)]
			}
			return c.Get(ctx, g[0], g[1], g[2], g[3])
		})); err != nil {
			return err
		}
	}
	if !o.scenarios["verify-apikey"] || rn.apiKey == "" {
		return nil
	}
	// authd re-reads a cached key at most once a second and records
	// last_used_at at most once a second, in the background: the first
	// request loads the key; what follows is the steady state, paced, then
	// at full speed from every client.
	g := gets["verify-apikey"]
	get := func(ctx context.Context, _ int) error { return c.Get(ctx, g[0], g[1], g[2], g[3]) }
	if err := add(rt.measure("verify-apikey, steady state: 200 over 1 s", 3, 200, time.Second, func(int) error { return get(ctx, 0) })); err != nil {
		return err
	}
	// One request per client first, so that each dial is out of the window.
	dialled := make([]bool, o.concurrency)
	if r, err := closedLoop(ctx, o.concurrency, 0, func(ctx context.Context, w int) error {
		if dialled[w] {
			return errStop
		}
		dialled[w] = true
		return get(ctx, w)
	}); err != nil || r.errors > 0 {
		return fmt.Errorf("verify-apikey burst: %v %v", err, r.samples)
	}
	time.Sleep(settleTime)
	d := min(o.duration, 2*time.Second)
	before := rt.px.snapshot()
	r, err := closedLoop(ctx, o.concurrency, d, get)
	if err != nil || r.errors > 0 || r.requests == 0 {
		return fmt.Errorf("verify-apikey burst: %d requests, %v %v", r.requests, err, r.samples)
	}
	time.Sleep(settleTime)
	return add(rtRowOf(fmt.Sprintf("verify-apikey, %d clients for %s", o.concurrency, d), int(r.requests), before, rt.px.snapshot(), r.elapsed), nil)
}

var authTableRe = regexp.MustCompile(`\bauth\.[a-z_]+`)

// stmtLabel names a statement by its verb and the auth tables it names:
// "select auth.api_key, auth.plan". Others keep their first words.
func stmtLabel(sql string) string {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return "(empty)"
	}
	var tables []string
	for _, t := range authTableRe.FindAllString(strings.ToLower(sql), -1) {
		if !slices.Contains(tables, t) {
			tables = append(tables, t)
		}
	}
	if len(tables) == 0 {
		s := strings.Join(f, " ")
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return s
	}
	return strings.ToLower(f[0]) + " " + strings.Join(tables, ", ")
}
