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

// Round trips are counted, not timed: a second authd talks to PostgreSQL
// through pgProxy, which decodes what it forwards and counts Sync and
// Query (each ends in a ReadyForQuery the client waits for), pgxpool's
// "-- ping"s apart. The timed servers connect directly. (pg_stat_database
// is no use: a busy backend flushes its counters once a second at most.)

type wireCounts struct {
	syncs, queries, pings, parses, executes int64
	sql                                     []string // each statement executed
}

// pgProxy forwards connections to PostgreSQL and counts the frontend's
// protocol messages.
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
	// Forwarded as read, decoded by pgproto3's backend half; sslmode=disable
	// puts the start-up message first and in clear.
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
	total, pings                     int64 // in the window
	roundTrips, statements, prepares float64
	sql                              []string
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

// settleTime lets a background write (an API key's last_used_at) land on
// its side of a snapshot.
const settleTime = 100 * time.Millisecond

// measure sends warm requests (pgx prepares once per connection), then n
// counted ones, one at a time, paced evenly over spread if it is positive.
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

// refreshStatement is the one statement a refresh runs, as authd sends
// it: so this program holds no copy of it.
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
	var s loadtest.Session
	var logouts []string
	var browsers []loadtest.Session
	gets := rn.gets(rn.access)
	fresh := gets["verify-fresh"]
	type measure struct {
		scenario, name string
		warm, n        int
		spread         time.Duration
		setup          func() error // untimed
		op             func(i int) error
	}
	ms := []measure{
		{"login", "login", 2, 5, 0, nil, func(i int) error { _, err := c.Login(ctx, h.Users[i%len(h.Users)]); return err }},
		{"refresh", "refresh", 3, 50, 0, func() (err error) { s, err = c.Login(ctx, h.Users[0]); return err },
			func(int) (err error) { s, err = c.Refresh(ctx, s.Refresh); return err }},
		{"refresh", "refresh, unknown token (401)", 2, 20, 0, nil, func(int) error {
			plain, _, _ := token.NewRefresh()
			_, _, err := c.Do(ctx, loadtest.Request{Method: http.MethodPost, Path: loadtest.RefreshPath, Header: "Cookie", Value: "refresh_token=" + plain, Want: http.StatusUnauthorized})
			return err
		}},
		{"logout", "logout (refresh cookie)", 3, 50, 0, func() (err error) { logouts, err = insertSessions(ctx, h.Pool, h.Users, 53, 1); return err },
			func(i int) error { return c.Logout(ctx, loadtest.Session{Refresh: logouts[i]}) }},
		// A browser also sends the access cookie, which names the session too.
		{"logout", "logout (browser: both cookies)", 2, 5, 0, func() error {
			browsers = make([]loadtest.Session, 7)
			for i := range browsers {
				var err error
				if browsers[i], err = c.Login(ctx, h.Users[i%len(h.Users)]); err != nil {
					return err
				}
			}
			return nil
		}, func(i int) error { return c.Logout(ctx, browsers[i]) }},
		// A new server: none of verify-fresh's tokens is in its cache.
		{"verify-fresh", "verify-fresh", 3, 200, 0, nil, func(i int) error {
			fresh.value = "Bearer " + rn.fresh[i%len(rn.fresh)]
			return fresh.do(ctx, c)
		}},
	}
	for _, g := range []string{"bare", "verify-jwt", "verify-cookie"} {
		ms = append(ms, measure{g, g, 3, 200, 0, nil, func(int) error { return gets[g].do(ctx, c) }})
	}
	// authd re-reads a cached key and writes last_used_at once a second at
	// most, in the background: paced, then from every client at full speed.
	apikey := func(ctx context.Context, _ int) error { return gets["verify-apikey"].do(ctx, c) }
	ms = append(ms, measure{"verify-apikey", "verify-apikey, steady state: 200 over 1 s", 3, 200, time.Second, nil, func(int) error { return apikey(ctx, 0) }})
	for _, m := range ms {
		if !o.scenarios[m.scenario] || (m.scenario == "verify-fresh" && len(rn.fresh) == 0) || (m.scenario == "verify-apikey" && rn.apiKey == "") {
			continue
		}
		if m.setup != nil {
			if err := m.setup(); err != nil {
				return err
			}
		}
		row, err := rt.measure(m.name, m.warm, m.n, m.spread, m.op)
		rn.rep.roundTrips = append(rn.rep.roundTrips, row)
		if err != nil {
			return err
		}
	}
	if !o.scenarios["verify-apikey"] || rn.apiKey == "" {
		return nil
	}
	// One request per client first, so that each dial is out of the window.
	dialled := make([]bool, o.concurrency)
	if r, err := closedLoop(ctx, o.concurrency, 0, func(ctx context.Context, w int) error {
		if dialled[w] {
			return errStop
		}
		dialled[w] = true
		return apikey(ctx, w)
	}); err != nil || r.errors > 0 {
		return fmt.Errorf("verify-apikey burst: %v %v", err, r.samples)
	}
	time.Sleep(settleTime)
	d := min(o.duration, 2*time.Second)
	before := rt.px.snapshot()
	r, err := closedLoop(ctx, o.concurrency, d, apikey)
	if err != nil || r.errors > 0 || r.requests == 0 {
		return fmt.Errorf("verify-apikey burst: %d requests, %v %v", r.requests, err, r.samples)
	}
	time.Sleep(settleTime)
	rn.rep.roundTrips = append(rn.rep.roundTrips, rtRowOf(fmt.Sprintf("verify-apikey, %d clients for %s", o.concurrency, d), int(r.requests), before, rt.px.snapshot(), r.elapsed))
	return nil
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
