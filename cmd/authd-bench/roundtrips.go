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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// Round trips are counted, not timed: a second authd talks to PostgreSQL
// through pgProxy, which decodes what it forwards and counts Sync and
// Query (each ends in a ReadyForQuery the client waits for), leaving out
// what no request waits for: pgxpool's "-- ping"s, statement preparation
// (once per pooled connection) and the audit writer's COPY batches. The
// timed servers connect directly. (pg_stat_database
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
	bound := false                  // a statement executed since the last Sync
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
			if bound { // else it only prepared a statement (see above)
				p.trips++
			}
			bound = false
		case *pgproto3.Query:
			if !strings.HasPrefix(m.String, "-- ping") && !strings.HasPrefix(strings.ToLower(m.String), "copy ") {
				p.trips++
				p.sql = append(p.sql, m.String)
			}
		case *pgproto3.Parse:
			prepared[m.Name] = m.Query
		case *pgproto3.Bind:
			bound = true
			p.sql = append(p.sql, prepared[m.PreparedStatement])
		}
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r) // out of step: forward the rest uncounted
}

// rtRow is one row of the round-trip table.
type rtRow struct {
	name     string
	n, trips int64
	sql      []string
}

// count runs f (which returns how many requests it made) after a pause
// that lets a background write (an API key's last_used_at) land on its
// side of the window, and counts what it sent to PostgreSQL.
func (p *pgProxy) count(name string, f func() (int64, error)) (rtRow, error) {
	time.Sleep(100 * time.Millisecond)
	p.mu.Lock()
	trips, stmts := p.trips, len(p.sql)
	p.mu.Unlock()
	n, err := f()
	time.Sleep(100 * time.Millisecond)
	p.mu.Lock()
	defer p.mu.Unlock()
	return rtRow{name: name, n: n, trips: p.trips - trips, sql: slices.Clone(p.sql[stmts:])}, err
}

// countRoundTrips fills the round-trip table from a primary-algorithm
// server whose connections go through a pgProxy, and returns refresh's
// statement as authd sent it (this program holds no copy of it).
func (rn *runner) countRoundTrips(ctx context.Context) (string, error) {
	o, h := rn.o, rn.h
	u, err := url.Parse(h.DBURL)
	if err != nil || u.Hostname() == "" || strings.HasPrefix(u.Hostname(), "/") || u.Query().Get("host") != "" {
		return "", errors.New("-admin-url does not name a TCP host and port")
	}
	px, err := startProxy(net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "5432")))
	if err != nil {
		return "", err
	}
	defer func() { _ = px.ln.Close(); px.wg.Wait() }() // waits for the connections: after authd stops
	rtURL, _ := loadtest.PgURL(h.DBURL, func(u *url.URL, q url.Values) {
		u.Host = px.ln.Addr().String()
		q.Set("sslmode", "disable") // the proxy must see plain protocol
		q.Set("application_name", "authd-bench-roundtrips")
	})
	srv, err := h.Start(ctx, "authd-roundtrips", append(slices.Clone(rn.algs[0].env), "DATABASE_URL="+rtURL)...)
	if err != nil {
		return "", err
	}
	defer srv.Stop()
	c := loadtest.NewClient(srv.Addr, 2*o.concurrency)
	defer c.Close()
	var s loadtest.Session
	logouts, err := insertSessions(ctx, h.Pool, h.Users, 53)
	if err != nil {
		return "", err
	}
	gets := rn.gets(rn.access)
	// Requests one at a time, after warm ones (pgx prepares once per
	// connection).
	type op struct {
		name    string
		warm, n int
		do      func(i int) error
	}
	ops := []op{
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
			g := gets[1]
			g.value = "Bearer " + rn.algs[0].tokens[i%len(rn.algs[0].tokens)]
			return g.do(ctx, c)
		}},
	}
	for _, g := range []get{gets[0], gets[2], gets[3]} { // bare, verify-jwt, verify-cookie
		ops = append(ops, op{g.name, 3, 200, func(int) error { return g.do(ctx, c) }})
	}
	for _, r := range ops {
		do := func(from, to int) (int64, error) {
			for i := from; i < to; i++ {
				if err := r.do(i); err != nil {
					return 0, fmt.Errorf("%s: %w", r.name, err)
				}
			}
			return int64(to - from), nil
		}
		if _, err := do(0, r.warm); err != nil {
			return "", err
		}
		row, err := px.count(r.name, func() (int64, error) { return do(r.warm, r.warm+r.n) })
		if err != nil {
			return "", err
		}
		rn.roundTrips = append(rn.roundTrips, row)
	}
	// authd re-reads a cached API key and writes last_used_at once a
	// second at most, in the background: counted from every client at full
	// speed, after a request that puts the key in the cache.
	apikey := func(ctx context.Context, _ int) error { return gets[4].do(ctx, c) }
	if err := apikey(ctx, 0); err != nil {
		return "", fmt.Errorf("verify-apikey: %w", err)
	}
	d := min(o.duration, 2*time.Second)
	row, err := px.count(fmt.Sprintf("verify-apikey, %d clients for %s", o.concurrency, d), func() (int64, error) {
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
	rn.roundTrips = append(rn.roundTrips, row)
	if r := rn.roundTrips[1]; len(r.sql) == int(r.n) && len(slices.Compact(slices.Clone(r.sql))) == 1 {
		return r.sql[0], nil
	}
	return "", errors.New("refresh did not run one and the same statement per request")
}

// refreshTTL is AUTHD_REFRESH_TTL's default in seconds: the statement's
// third argument (store.rotateSQL, the happy path).
const refreshTTL = 30 * 24 * 3600

// ceiling runs the refresh statement alone on -concurrency connections,
// each rotating its own chain; async (synchronous_commit=off, which authd
// does not do) shows what the commit's WAL flush costs.
func (rn *runner) ceiling(ctx context.Context, sql string, async bool) error {
	const app = "authd-bench-ceiling"
	n := rn.o.concurrency
	name := fmt.Sprintf("rotate statement alone (pgx, %d connections)", n)
	u, _ := loadtest.PgURL(rn.h.DBURL, func(u *url.URL, q url.Values) {
		q.Set("application_name", app)
		if async {
			name = strings.Replace(name, " (", ", synchronous_commit=off (", 1)
			q.Set("synchronous_commit", "off") // pgx sends unknown parameters as settings
		}
	})
	plain, err := insertSessions(ctx, rn.h.Pool, rn.h.Users, n)
	if err != nil {
		return err
	}
	// Each worker keeps its connection, so that the statement is prepared
	// once on it, as in authd; the first rotation warms it.
	conns, cur := make([]*pgx.Conn, n), make([][]byte, n)
	rotate := func(ctx context.Context, w int) error {
		_, next, _ := token.NewRefresh() // crypto/rand does not fail
		if tag, err := conns[w].Exec(ctx, sql, cur[w], next, float64(refreshTTL)); err != nil || tag.RowsAffected() != 1 {
			return fmt.Errorf("rotate: %q, %v; want 1 row", tag, err)
		}
		cur[w] = next
		return nil
	}
	for w := range conns {
		if conns[w], err = pgx.Connect(ctx, u); err != nil {
			return err
		}
		defer conns[w].Close(context.Background())
		cur[w] = token.HashRefresh(plain[w])
		if err := rotate(ctx, w); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if _, err := rn.closed(ctx, &cpuProbe{pool: rn.h.Pool, db: rn.h.DBName, app: app}, name, n, rotate); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
