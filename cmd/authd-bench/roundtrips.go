package main

import (
	"cmp"
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

// pgProxy forwards connections to PostgreSQL and counts the frontend's
// round trips and the statements it runs.
type pgProxy struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	trips int64
	sql   []string // each statement executed
}

func startProxy(target string) (*pgProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pgProxy{ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c, target) })
		}
	})
	return p, nil
}

// close waits for the connections to end: stop authd first.
func (p *pgProxy) close() {
	_ = p.ln.Close()
	p.wg.Wait()
}

func (p *pgProxy) serve(client net.Conn, target string) {
	defer client.Close()
	upstream, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer upstream.Close()
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
			p.trips++
		case *pgproto3.Query:
			if !strings.HasPrefix(m.String, "-- ping") {
				p.trips++
				p.sql = append(p.sql, m.String)
			}
		case *pgproto3.Parse:
			prepared[m.Name] = m.Query
		case *pgproto3.Bind:
			p.sql = append(p.sql, prepared[m.PreparedStatement])
		}
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r) // out of step: forward the rest uncounted
}

// rtRow is one row of the round-trip table.
type rtRow struct {
	name  string
	n     int64
	trips int64
	sql   []string
}

// rtServer is an authd whose database connections go through a pgProxy.
type rtServer struct {
	px  *pgProxy
	srv *loadtest.Server
	c   *loadtest.Client
}

func (rn *runner) startRT(ctx context.Context) (*rtServer, error) {
	u, err := url.Parse(rn.h.DBURL)
	if err != nil || u.Hostname() == "" || strings.HasPrefix(u.Hostname(), "/") || u.Query().Get("host") != "" {
		return nil, errors.New("-admin-url does not name a TCP host and port")
	}
	px, err := startProxy(net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "5432")))
	if err != nil {
		return nil, err
	}
	rtURL, _ := loadtest.PgURL(rn.h.DBURL, func(u *url.URL, q url.Values) {
		u.Host = px.ln.Addr().String()
		q.Set("sslmode", "disable") // the proxy must see plain protocol
		q.Set("application_name", "authd-bench-roundtrips")
	})
	srv, err := rn.h.Start(ctx, "authd-roundtrips", append(slices.Clone(rn.rep.algs[0].env), "DATABASE_URL="+rtURL)...)
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

// measure runs f (which returns how many requests it made) after a
// pause that lets a background write (an API key's last_used_at) land on
// its side of the window, and counts what it sent to PostgreSQL.
func (rt *rtServer) measure(name string, f func() (int64, error)) (rtRow, error) {
	time.Sleep(100 * time.Millisecond)
	rt.px.mu.Lock()
	trips, stmts := rt.px.trips, len(rt.px.sql)
	rt.px.mu.Unlock()
	n, err := f()
	time.Sleep(100 * time.Millisecond)
	rt.px.mu.Lock()
	defer rt.px.mu.Unlock()
	return rtRow{name: name, n: n, trips: rt.px.trips - trips, sql: slices.Clone(rt.px.sql[stmts:])}, err
}

// serial sends warm requests (pgx prepares once per connection), then n
// counted ones, one at a time.
func (rt *rtServer) serial(name string, warm, n int, op func(i int) error) (rtRow, error) {
	for i := range warm {
		if err := op(i); err != nil {
			return rtRow{}, fmt.Errorf("%s (warm-up): %w", name, err)
		}
	}
	return rt.measure(name, func() (int64, error) {
		for i := range n {
			if err := op(warm + i); err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
		}
		return int64(n), nil
	})
}

// refreshStatement is the one statement a refresh runs, as authd sends
// it: so this program holds no copy of it.
func (rt *rtServer) refreshStatement(ctx context.Context, user string) (string, error) {
	s, err := rt.c.Login(ctx, user)
	if err != nil {
		return "", err
	}
	row, err := rt.serial("refresh", 2, 3, func(int) error { s, err = rt.c.Refresh(ctx, s.Refresh); return err })
	if err != nil {
		return "", err
	}
	if len(row.sql) != 3 || row.sql[0] != row.sql[1] || row.sql[1] != row.sql[2] || row.trips != 3 {
		return "", fmt.Errorf("3 refreshes made %d round trips with %d statements; want one statement each", row.trips, len(row.sql))
	}
	return row.sql[0], nil
}

// rtOp is a request counted one at a time, after warm-up ones.
type rtOp struct {
	name    string
	warm, n int
	op      func(i int) error
}

// countRoundTrips fills the report's round-trip table on the primary
// algorithm's server, and returns the refresh statement.
func (rn *runner) countRoundTrips(ctx context.Context) (string, error) {
	o, h := rn.o, rn.h
	rt, err := rn.startRT(ctx)
	if err != nil {
		return "", err
	}
	defer rt.close()
	c := rt.c
	var s loadtest.Session
	logouts, err := insertSessions(ctx, h.Pool, h.Users, 53, 1)
	if err != nil {
		return "", err
	}
	gets := rn.gets(rn.access)
	rows := []rtOp{
		{"login", 2, 5, func(i int) (err error) { s, err = c.Login(ctx, h.Users[i%len(h.Users)]); return err }},
		{"refresh", 3, 50, func(int) (err error) { s, err = c.Refresh(ctx, s.Refresh); return err }},
		{"refresh, unknown token (401)", 2, 20, func(int) error {
			plain, _, _ := token.NewRefresh()
			_, _, _, err := c.Do(ctx, loadtest.Request{Method: http.MethodPost, Path: loadtest.RefreshPath, Header: "Cookie", Value: "refresh_token=" + plain, Want: http.StatusUnauthorized})
			return err
		}},
		{"logout", 3, 50, func(i int) error { return c.Logout(ctx, loadtest.Session{Refresh: logouts[i]}) }},
		// A new server: none of verify-fresh's tokens is in its cache.
		{"verify-fresh", 3, 200, func(i int) error {
			return c.Get(ctx, gets[1].path, gets[1].header, "Bearer "+rn.rep.algs[0].tokens[i%len(rn.rep.algs[0].tokens)], gets[1].role)
		}},
	}
	for _, g := range []get{gets[0], gets[2], gets[3]} { // bare, verify-jwt, verify-cookie
		rows = append(rows, rtOp{g.name, 3, 200, func(int) error { return g.do(ctx, c) }})
	}
	for _, r := range rows {
		row, err := rt.serial(r.name, r.warm, r.n, r.op)
		if err != nil {
			return "", err
		}
		rn.rep.roundTrips = append(rn.rep.roundTrips, row)
	}
	// authd re-reads a cached API key and writes last_used_at once a
	// second at most, in the background: counted from every client at full
	// speed, after a request that puts the key in the cache.
	apikey := func(ctx context.Context, _ int) error { return gets[4].do(ctx, c) }
	if err := apikey(ctx, 0); err != nil {
		return "", fmt.Errorf("verify-apikey: %w", err)
	}
	d := min(o.duration, 2*time.Second)
	row, err := rt.measure(fmt.Sprintf("verify-apikey, %d clients for %s", o.concurrency, d), func() (int64, error) {
		r := &result{}
		err := closedLoop(ctx, r, o.concurrency, d, apikey)
		if _, errs, samples := r.lat.Get(); err == nil && errs > 0 {
			err = fmt.Errorf("verify-apikey: %d errors: %q", errs, samples)
		}
		return r.n(), err
	})
	if err != nil {
		return "", err
	}
	rn.rep.roundTrips = append(rn.rep.roundTrips, row)
	return rt.refreshStatement(ctx, h.Users[0])
}

var authTableRe = regexp.MustCompile(`\bauth\.[a-z_]+`)

// stmtLabel names a statement by its verb and the auth tables it names:
// "select auth.api_key, auth.plan". Others keep their first words.
func stmtLabel(sql string) string {
	f := strings.Fields(strings.ToLower(sql))
	tables := slices.Compact(slices.Sorted(slices.Values(authTableRe.FindAllString(strings.ToLower(sql), -1))))
	switch {
	case len(f) == 0:
		return "(empty)"
	case len(tables) == 0:
		return strings.Join(f[:min(len(f), 4)], " ")
	}
	return f[0] + " " + strings.Join(tables, ", ")
}
