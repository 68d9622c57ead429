package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// refreshTTL is AUTHD_REFRESH_TTL's default in seconds: the statement's
// third argument.
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
		rows, _ := conns[w].Query(ctx, sql, cur[w], next, float64(refreshTTL))
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
