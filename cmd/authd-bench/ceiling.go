package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// refreshTTL is AUTHD_REFRESH_TTL's default in seconds: the refresh
// statement's third argument.
const refreshTTL = 30 * 24 * 3600

// ceilings runs the refresh statement alone, as authd sent it on the wire
// (refreshStatement), with pgx from -concurrency goroutines on as many
// connections, each rotating its own session's token chain as a refresh
// over HTTP does: the most refresh can do with this database, client and
// CPUs, in the window right after refresh over HTTP. Then the same
// without waiting for the commit's WAL flush (synchronous_commit=off),
// which authd does not do: the difference is what durability costs.
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
	o := rn.o
	const app = "authd-bench-ceiling"
	u, err := loadtest.PgURL(rn.h.DBURL, func(u *url.URL, q url.Values) {
		q.Set("application_name", app)
		q.Set("pool_max_conns", strconv.Itoa(o.concurrency))
		if async {
			q.Set("synchronous_commit", "off") // pgx sends unknown parameters as run-time settings
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
	plain, err := createSessions(ctx, rn.h.Pool, rn.h.Users, o.concurrency)
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
	r, err := runScenario(ctx, name, o, probe, func(ctx context.Context, w int) (func(context.Context) error, error) {
		conn, err := pool.Acquire(ctx) // each goroutine keeps its connection
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
			rows, err := conn.Query(ctx, sql, cur, next, float64(refreshTTL))
			if err != nil {
				return err
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("rotate: %d rows, want 1", n)
			}
			cur = next
			return nil
		}
		// Warm: the statement is prepared once per connection, as in authd.
		return rotate, rotate(ctx)
	})
	if r != nil {
		r.noServer = true
	}
	return r, err
}
