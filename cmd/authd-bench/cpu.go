package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
)

// result is one measured window: a row of a table.
type result struct {
	name    string
	lat     loadtest.Latencies
	elapsed time.Duration
	cpu     cpuUse
	notes   []string
}

func (r *result) n() int64 { lat, _, _ := r.lat.Get(); return int64(len(lat)) }

func (r *result) rate() float64 { return float64(r.n()) / max(r.elapsed.Seconds(), 1e-9) }

// cpuUse is the CPU a window took: authd's, its PostgreSQL backends' and
// this process's; -1 where it is not known (or there is no server).
type cpuUse struct{ server, db, self time.Duration }

// cpuProbe reads the CPU used by authd (pid; 0 for none), by the
// PostgreSQL backends serving it (by application_name app; "" for none)
// and by this process, from /proc.
type cpuProbe struct {
	pid     int
	pool    *pgxpool.Pool
	db, app string
}

type cpuSnap struct {
	server, self time.Duration
	db           map[int32]time.Duration // nil: unreadable
}

func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return -1
	}
	t, _, err := loadtest.ProcCPU(pid)
	if err != nil {
		return -1
	}
	return t
}

func (p *cpuProbe) snapshot(ctx context.Context) (cpuSnap, error) {
	s := cpuSnap{server: procCPU(p.pid), self: procCPU(os.Getpid())}
	if p.app == "" {
		return s, nil
	}
	rows, _ := p.pool.Query(ctx, `select pid from pg_stat_activity where datname = $1 and application_name = $2`, p.db, p.app)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return s, fmt.Errorf("list the server's database backends: %w", err)
	}
	s.db = map[int32]time.Duration{}
	for _, pid := range pids {
		// On another host or in another container these pids mean nothing here.
		t, comm, err := loadtest.ProcCPU(int(pid))
		if err != nil || comm != "postgres" {
			return cpuSnap{server: s.server, self: s.self}, nil
		}
		s.db[pid] = t
	}
	return s, nil
}

// measure runs f between two snapshots and records in r its CPU. A backend
// that appeared in between counts in full (connection start-up is part of
// the load); one that ended is lost, which pgxpool's hour-long connection
// lifetime makes unlikely.
func (p *cpuProbe) measure(ctx context.Context, r *result, f func() error) error {
	before, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	if err := f(); err != nil {
		return err
	}
	after, err := p.snapshot(ctx)
	if err != nil {
		return err
	}
	sub := func(a, b time.Duration) time.Duration {
		if a < 0 || b < 0 {
			return -1
		}
		return a - b
	}
	r.cpu = cpuUse{server: sub(after.server, before.server), self: sub(after.self, before.self), db: -1}
	if after.db != nil && before.db != nil {
		r.cpu.db = 0
		for pid, t := range after.db {
			r.cpu.db += t - before.db[pid]
		}
	}
	return nil
}

// closedLoop runs op on n workers, each calling it again as soon as it
// returns, for d (d = 0: until op returns errStop), and records each call
// in r.
func closedLoop(ctx context.Context, r *result, n int, d time.Duration, op func(ctx context.Context, w int) error) error {
	start := time.Now()
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for ctx.Err() == nil && (d == 0 || time.Since(start) < d) {
				t0 := time.Now()
				err := op(ctx, w)
				if errors.Is(err, errStop) || ctx.Err() != nil {
					return
				}
				r.lat.Add(time.Since(t0), err)
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return ctx.Err()
}

// closed measures op on -concurrency workers for -duration, CPU included.
func (rn *runner) closed(ctx context.Context, probe *cpuProbe, name string, op func(ctx context.Context, w int) error) (*result, error) {
	rn.h.Logf("%s: %s, %d clients", name, rn.o.duration, rn.o.concurrency)
	r := &result{name: name}
	return r, probe.measure(ctx, r, func() error { return closedLoop(ctx, r, rn.o.concurrency, rn.o.duration, op) })
}
