package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// -growth, instead of the scenarios: refresh at a fixed rate with each of
// -growth-tokens refresh tokens stored, the rows inserted with COPY
// (sessions of four tokens: three spent by rotation, one live, as real
// chains look) and analysed before each window, beside the plan of the
// refresh statement (captured on the wire, as for the ceiling).

type growthRow struct {
	before, after        int64 // refresh tokens stored at the window's ends
	sessions             int64
	insert               time.Duration
	lat                  loadtest.Latencies
	elapsed              time.Duration
	dropped              atomic.Int64
	cpu                  cpuDelta
	plan                 string
	relSize, idxHashSize string
}

func countTokens(ctx context.Context, pool *pgxpool.Pool) (tokens, sessions int64, err error) {
	err = pool.QueryRow(ctx, "select (select count(*) from auth.refresh_token), (select count(*) from auth.session)").Scan(&tokens, &sessions)
	return tokens, sessions, err
}

// insertChains stores n more refresh tokens with COPY, in batches.
func insertChains(ctx context.Context, pool *pgxpool.Pool, users []string, n int64) error {
	const perSession, batch = 4, 200_000
	for done := int64(0); done < n; {
		k := min(batch, n-done)
		ids := make([]uuid.UUID, (k+perSession-1)/perSession)
		sessions := make([][]any, len(ids))
		for i := range ids {
			ids[i] = uuid.New()
			sessions[i] = []any{ids[i], users[i%len(users)]}
		}
		now := time.Now()
		expires := now.Add(30 * 24 * time.Hour)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username"}, pgx.CopyFromRows(sessions)); err != nil {
				return err
			}
			j := int64(0)
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "refresh_token"}, []string{"token_hash", "session_id", "expires_at", "revoked_at", "revoked_reason"}, pgx.CopyFromFunc(func() ([]any, error) {
				if j == k {
					return nil, nil
				}
				_, hash, err := token.NewRefresh()
				sid, live := ids[j/perSession], j%perSession == perSession-1 || j == k-1
				j++
				if live {
					return []any{hash, sid, expires, nil, nil}, err
				}
				return []any{hash, sid, expires, now, "rotated"}, err
			}))
			return err
		})
		if err != nil {
			return fmt.Errorf("insert refresh tokens: %w", err)
		}
		done += k
	}
	if err := settle(ctx, pool); err != nil {
		return err
	}
	// Write the new pages out now rather than in the timed window (needs a
	// superuser or pg_checkpoint; without, the checkpointer does it later).
	_, _ = pool.Exec(ctx, "checkpoint")
	return nil
}

var scanNodeRe = regexp.MustCompile(`(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Bitmap Index Scan)( using \S+)? on \S+( \S+)?`)

// planNodes is the plan of sql (the refresh statement) as its scan nodes:
// "Index Scan using refresh_token_token_hash_key on refresh_token t; ...".
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

// growth is -growth: one server, and refresh at a fixed rate at each
// stored-token count.
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
		// The sessions refresh spends add two tokens each at most.
		const nSessions = 64
		if need := target - have - 2*nSessions; need > 0 {
			h.Logf("growth: inserting %d refresh tokens with COPY (to %d)", need, target)
			t0 := time.Now()
			if err := insertChains(ctx, h.Pool, h.Users, need); err != nil {
				return err
			}
			row.insert = time.Since(t0)
		}
		sessions, err := sessionPool(ctx, c, h.Users, nSessions)
		if err != nil {
			return fmt.Errorf("growth: %w", err)
		}
		// Every session refreshed at once, twice, so that authd's pool
		// opens all its connections (and prepares the statement on each)
		// before the window rather than in it.
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
		if err := h.Pool.QueryRow(ctx, `select pg_size_pretty(pg_table_size('auth.refresh_token')), pg_size_pretty(pg_relation_size('auth.refresh_token_token_hash_key'))`).Scan(&row.relSize, &row.idxHashSize); err != nil {
			row.relSize, row.idxHashSize = "?", "?"
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
