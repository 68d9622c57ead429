package main

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// The refresh statement as authd sends it on the wire (refreshStatement)
// is run here twice: alone with pgx, for the most refresh can do with
// this database; and under EXPLAIN as -growth stores more tokens.

// refreshTTL is AUTHD_REFRESH_TTL's default in seconds: the statement's
// third argument.
const refreshTTL = 30 * 24 * 3600

// ceilings runs the refresh statement alone on -concurrency connections,
// each rotating its own session's chain, right after refresh over HTTP;
// then without waiting for the commit's WAL flush (synchronous_commit=off,
// which authd does not do), to show what durability costs.
func (rn *runner) ceilings(ctx context.Context, a *algSetup, overHTTP *result) error {
	sql, err := rn.refreshStatement(ctx, a)
	if err != nil {
		return err
	}
	rn.rep.httpRefresh = overHTTP
	for _, async := range []bool{false, true} {
		name := fmt.Sprintf("rotate statement alone (pgx, %d connections)", rn.o.concurrency)
		if async {
			name = fmt.Sprintf("rotate statement alone, synchronous_commit=off (pgx, %d connections)", rn.o.concurrency)
		}
		rn.h.Logf("%s: %s", name, rn.o.duration)
		r, err := rn.dbCeiling(ctx, name, sql, async)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rn.rep.ceilings = append(rn.rep.ceilings, r)
	}
	return nil
}

func (rn *runner) dbCeiling(ctx context.Context, name, sql string, async bool) (*result, error) {
	const app = "authd-bench-ceiling"
	u, err := loadtest.PgURL(rn.h.DBURL, func(u *url.URL, q url.Values) {
		q.Set("application_name", app)
		q.Set("pool_max_conns", strconv.Itoa(rn.o.concurrency))
		if async {
			q.Set("synchronous_commit", "off") // pgx sends unknown parameters as settings
		}
	})
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	plain, err := insertSessions(ctx, rn.h.Pool, rn.h.Users, int64(rn.o.concurrency), 1)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var conns []*pgxpool.Conn
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	probe := &cpuProbe{serverPID: -1, pool: rn.h.Pool, dbName: rn.h.DBName, app: app}
	r, err := runScenario(ctx, name, rn.o, probe, func(ctx context.Context, w int) (func(context.Context) error, error) {
		conn, err := pool.Acquire(ctx) // each worker keeps its connection
		if err != nil {
			return nil, err
		}
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		cur := token.HashRefresh(plain[w])
		rotate := func(ctx context.Context) error {
			_, next, err := token.NewRefresh()
			if err != nil {
				return err
			}
			rows, _ := conn.Query(ctx, sql, cur, next, float64(refreshTTL))
			if n, err := pgx.CollectRows(rows, func(pgx.CollectableRow) (int, error) { return 1, nil }); err != nil || len(n) != 1 {
				return fmt.Errorf("rotate: %d rows, want 1 (%v)", len(n), err)
			}
			cur = next
			return nil
		}
		return rotate, rotate(ctx) // warm: prepared once per connection, as in authd
	})
	if r != nil {
		r.noServer = true
	}
	return r, err
}

// growthRow is one size of -growth.
type growthRow struct {
	before, after, sessions int64 // refresh tokens stored at the window's ends
	insert, elapsed         time.Duration
	lat                     loadtest.Latencies
	dropped                 atomic.Int64
	cpu                     cpuDelta
	plan, relSize, idxSize  string
}

func countTokens(ctx context.Context, pool *pgxpool.Pool) (tokens, sessions int64, err error) {
	err = pool.QueryRow(ctx, "select (select count(*) from auth.refresh_token), (select count(*) from auth.session)").Scan(&tokens, &sessions)
	return tokens, sessions, err
}

var scanNodeRe = regexp.MustCompile(`(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Bitmap Index Scan)( using \S+)? on \S+( \S+)?`)

// planNodes is the refresh statement's plan as its scan nodes.
func planNodes(ctx context.Context, pool *pgxpool.Pool, sql string) (string, error) {
	_, h1, _ := token.NewRefresh()
	_, h2, _ := token.NewRefresh()
	rows, _ := pool.Query(ctx, "explain (costs off) "+sql, h1, h2, float64(refreshTTL))
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	var nodes []string
	for _, l := range lines {
		if m := scanNodeRe.FindString(l); m != "" {
			nodes = append(nodes, m)
		}
	}
	return strings.Join(nodes, "; "), err
}

// growth is -growth: refresh at a fixed rate at each stored-token count.
func (rn *runner) growth(ctx context.Context, a *algSetup) error {
	o, h := rn.o, rn.h
	rn.rep.growthAlg = a.alg
	sql, err := rn.refreshStatement(ctx, a)
	if err != nil {
		return err
	}
	srv, err := h.Start(ctx, "authd-growth", a.env...)
	if err != nil {
		return err
	}
	defer func() {
		if p := srv.LogProblems(); p != "" {
			rn.rep.serverLogs = append(rn.rep.serverLogs, "growth server: "+p)
		}
		_ = srv.Stop()
	}()
	probe := &cpuProbe{serverPID: srv.PID(), pool: h.Pool, dbName: h.DBName, app: serverApp}
	c := loadtest.NewClient(srv.Addr, 64)
	defer c.Close()
	for _, target := range o.growthTokens {
		row := &growthRow{}
		rn.rep.growth = append(rn.rep.growth, row)
		have, _, err := countTokens(ctx, h.Pool)
		if err != nil {
			return err
		}
		const nSessions = 64 // their refreshes add two tokens each at most
		if need := target - have - 2*nSessions; need > 0 {
			h.Logf("growth: inserting %d refresh tokens with COPY (to %d)", need, target)
			t0 := time.Now()
			if _, err := insertSessions(ctx, h.Pool, h.Users, need, 4); err != nil {
				return err
			}
			// The new pages written now, not in the window (needs a superuser
			// or pg_checkpoint; else the checkpointer does it later).
			_, _ = h.Pool.Exec(ctx, "checkpoint")
			row.insert = time.Since(t0)
		}
		sessions, err := sessionPool(ctx, c, h.Users, nSessions)
		if err != nil {
			return fmt.Errorf("growth: %w", err)
		}
		// Every session refreshed at once, twice, so that authd's pool opens
		// (and prepares on) all its connections before the window.
		var warm loadtest.Latencies
		for range 2 {
			var wg sync.WaitGroup
			for range nSessions {
				wg.Go(func() { pacedRefresh(c, h.Users[0], sessions, &warm, &row.dropped)(ctx) })
			}
			wg.Wait()
		}
		if warm.Errors() > 0 || row.dropped.Load() > 0 {
			return fmt.Errorf("growth: warm-up: %v", warm.Samples())
		}
		if row.plan, err = planNodes(ctx, h.Pool, sql); err != nil {
			return fmt.Errorf("growth: explain: %w", err)
		}
		if err := h.Pool.QueryRow(ctx, `select pg_size_pretty(pg_table_size('auth.refresh_token')), pg_size_pretty(pg_relation_size('auth.refresh_token_token_hash_key'))`).Scan(&row.relSize, &row.idxSize); err != nil {
			row.relSize, row.idxSize = "?", "?"
		}
		if row.before, row.sessions, err = countTokens(ctx, h.Pool); err != nil {
			return err
		}
		h.Logf("growth: %d refresh tokens stored (%d sessions): refresh at %g/s for %s", row.before, row.sessions, o.growthRate, o.duration)
		r, err := probe.measure(ctx, "", func() (*result, error) {
			start := time.Now()
			row.dropped.Add(loadtest.Pacer{Rate: o.growthRate, MaxInflight: 256}.Run(ctx, start, o.duration, pacedRefresh(c, h.Users[0], sessions, &row.lat, &row.dropped)))
			return &result{elapsed: time.Since(start)}, ctx.Err()
		})
		if err != nil {
			return err
		}
		row.elapsed, row.cpu = r.elapsed, r.cpu
		if row.after, _, err = countTokens(ctx, h.Pool); err != nil {
			return err
		}
	}
	return nil
}
