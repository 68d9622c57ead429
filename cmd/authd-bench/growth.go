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
// third argument. The fourth, false, is the happy path (no contested
// family to settle: store.rotate).
const refreshTTL = 30 * 24 * 3600

// ceilings runs the refresh statement alone on -concurrency connections,
// each rotating its own session's chain; then without waiting for the
// commit's WAL flush (synchronous_commit=off, which authd does not do),
// to show what durability costs.
func (rn *runner) ceilings(ctx context.Context, sql string) error {
	for _, async := range []bool{false, true} {
		if err := rn.ceiling(ctx, sql, async); err != nil {
			return err
		}
	}
	return nil
}

func (rn *runner) ceiling(ctx context.Context, sql string, async bool) error {
	const app = "authd-bench-ceiling"
	n := rn.o.concurrency
	name := fmt.Sprintf("rotate statement alone (pgx, %d connections)", n)
	u, _ := loadtest.PgURL(rn.h.DBURL, func(u *url.URL, q url.Values) {
		q.Set("application_name", app)
		q.Set("pool_max_conns", strconv.Itoa(n))
		if async {
			name = fmt.Sprintf("rotate statement alone, synchronous_commit=off (pgx, %d connections)", n)
			q.Set("synchronous_commit", "off") // pgx sends unknown parameters as settings
		}
	})
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return err
	}
	defer pool.Close()
	plain, err := insertSessions(ctx, rn.h.Pool, rn.h.Users, int64(n), 1)
	if err != nil {
		return err
	}
	// Each worker keeps its connection, so that the statement is prepared
	// once on it, as in authd; the first rotation warms it.
	conns, cur := make([]*pgxpool.Conn, n), make([][]byte, n)
	rotate := func(ctx context.Context, w int) error {
		_, next, err := token.NewRefresh()
		if err != nil {
			return err
		}
		rows, _ := conns[w].Query(ctx, sql, cur[w], next, float64(refreshTTL), false)
		if n, err := pgx.CollectRows(rows, func(pgx.CollectableRow) (int, error) { return 1, nil }); err != nil || len(n) != 1 {
			return fmt.Errorf("rotate: %d rows, want 1 (%v)", len(n), err)
		}
		cur[w] = next
		return nil
	}
	for w := range conns {
		if conns[w], err = pool.Acquire(ctx); err != nil {
			return err
		}
		defer conns[w].Release()
		cur[w] = token.HashRefresh(plain[w])
		if err := rotate(ctx, w); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	r, err := rn.closed(ctx, &cpuProbe{pool: rn.h.Pool, db: rn.h.DBName, app: app}, name, rotate)
	rn.rep.ceilings = append(rn.rep.ceilings, r)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// growthRow is one size of -growth.
type growthRow struct {
	tokens, sessions int64 // stored at the window's start
	result
	dropped atomic.Int64
	plan    string
}

var scanNodeRe = regexp.MustCompile(`(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Bitmap Index Scan)( using \S+)? on \S+( \S+)?`)

// growth is -growth: refresh at a fixed rate at each stored-token count.
func (rn *runner) growth(ctx context.Context) error {
	o, h := rn.o, rn.h
	rt, err := rn.startRT(ctx)
	if err != nil {
		return err
	}
	sql, err := rt.refreshStatement(ctx, h.Users[0])
	rt.close()
	if err != nil {
		return fmt.Errorf("capture the refresh statement: %w", err)
	}
	srv, err := h.Start(ctx, "authd-growth", rn.rep.algs[0].env...)
	if err != nil {
		return err
	}
	defer func() {
		if p := srv.LogProblems(); p != "" {
			rn.rep.notes = append(rn.rep.notes, "growth server: "+p)
		}
		_ = srv.Stop()
	}()
	probe := &cpuProbe{pid: srv.PID(), pool: h.Pool, db: h.DBName, app: serverApp}
	c := loadtest.NewClient(srv.Addr, 64)
	defer c.Close()
	count := func(row *growthRow) error {
		return h.Pool.QueryRow(ctx, "select (select count(*) from auth.refresh_token), (select count(*) from auth.session)").Scan(&row.tokens, &row.sessions)
	}
	for _, target := range o.growthTokens {
		row := &growthRow{}
		rn.rep.growth = append(rn.rep.growth, row)
		if err := count(row); err != nil {
			return err
		}
		const nSessions = 64 // their refreshes add two tokens each at most
		if need := target - row.tokens - 2*nSessions; need > 0 {
			h.Logf("growth: inserting %d refresh tokens with COPY (to %d)", need, target)
			if _, err := insertSessions(ctx, h.Pool, h.Users, need, 4); err != nil {
				return err
			}
			// The new pages written now, not in the window (needs a superuser
			// or pg_checkpoint; else the checkpointer does it later).
			_, _ = h.Pool.Exec(ctx, "checkpoint")
		}
		sessions, err := sessionPool(ctx, c, h.Users, nSessions)
		if err != nil {
			return fmt.Errorf("growth: %w", err)
		}
		// Every session refreshed at once, twice, so that authd's pool opens
		// (and prepares on) all its connections before the window.
		var warm result
		for range 2 {
			var wg sync.WaitGroup
			for range nSessions {
				wg.Go(func() { pacedRefresh(c, h.Users[0], sessions, &warm.lat, &row.dropped)(ctx) })
			}
			wg.Wait()
		}
		if _, errs, samples := warm.lat.Get(); errs > 0 || row.dropped.Load() > 0 {
			return fmt.Errorf("growth: warm-up: %q", samples)
		}
		_, h1, _ := token.NewRefresh()
		rows, _ := h.Pool.Query(ctx, "explain (costs off) "+sql, h1, h1, float64(refreshTTL), false)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("growth: explain: %w", err)
		}
		for _, l := range lines {
			if m := scanNodeRe.FindString(l); m != "" {
				row.plan = strings.TrimPrefix(row.plan+"; "+m, "; ")
			}
		}
		if err := count(row); err != nil {
			return err
		}
		h.Logf("growth: %d refresh tokens stored (%d sessions): refresh at %g/s for %s", row.tokens, row.sessions, o.growthRate, o.duration)
		if err := probe.measure(ctx, &row.result, func() error {
			start := time.Now()
			row.dropped.Add(loadtest.Pacer{Rate: o.growthRate, MaxInflight: 256}.Run(ctx, start, o.duration, pacedRefresh(c, h.Users[0], sessions, &row.lat, &row.dropped)))
			row.elapsed = time.Since(start)
			return ctx.Err()
		}); err != nil {
			return err
		}
	}
	return nil
}
