package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
)

// cpuProbe reads, from /proc, the CPU used by the authd process (all
// threads), by the PostgreSQL backends serving it (found by
// application_name in pg_stat_activity), by this process and by the whole
// machine, so that a window's delta divided by its requests is CPU per
// request, and "everything else" shows when another workload skewed it.
type cpuProbe struct {
	serverPID int // -1: no server
	pool      *pgxpool.Pool
	dbName    string
	app       string
}

type cpuSnap struct {
	server, self, busy, idle          time.Duration
	db                                map[int]time.Duration
	serverOK, selfOK, dbOK, machineOK bool
	at                                time.Time
}

// cpuDelta is the CPU used over a window; busy minus the three processes
// is what everything else on the machine took.
type cpuDelta struct {
	server, db, self, busy, idle, wall time.Duration
	serverOK, dbOK, selfOK, machineOK  bool
}

func (p *cpuProbe) snapshot(ctx context.Context) (cpuSnap, error) {
	s := cpuSnap{db: map[int]time.Duration{}, dbOK: true, at: time.Now()}
	var err error
	s.server, _, err = loadtest.ProcCPU(p.serverPID)
	s.serverOK = err == nil
	s.self, _, err = loadtest.ProcCPU(os.Getpid())
	s.selfOK = err == nil
	s.busy, s.idle, err = loadtest.MachineCPU()
	s.machineOK = err == nil
	rows, _ := p.pool.Query(ctx, `select pid from pg_stat_activity where datname = $1 and application_name = $2`, p.dbName, p.app)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return s, fmt.Errorf("list the server's database backends: %w", err)
	}
	for _, pid := range pids {
		t, comm, err := loadtest.ProcCPU(int(pid))
		// The database may be on another host or in another container,
		// where these pids mean nothing here.
		if err != nil || comm != "postgres" {
			s.dbOK = false
			break
		}
		s.db[int(pid)] = t
	}
	return s, nil
}

// sub is the CPU used between before and s. A backend that appeared in
// between counts in full (connection start-up is part of the load); one
// that ended in between is lost, which pgxpool's hour-long connection
// lifetime makes unlikely.
func (s cpuSnap) sub(before cpuSnap) cpuDelta {
	d := cpuDelta{
		server: s.server - before.server, self: s.self - before.self,
		busy: s.busy - before.busy, idle: s.idle - before.idle, wall: s.at.Sub(before.at),
		serverOK: s.serverOK && before.serverOK, selfOK: s.selfOK && before.selfOK,
		dbOK: s.dbOK && before.dbOK, machineOK: s.machineOK && before.machineOK,
	}
	for pid, t := range s.db {
		d.db += t - before.db[pid]
	}
	return d
}

// measure runs f between two snapshots and gives its result the CPU
// used and name.
func (p *cpuProbe) measure(ctx context.Context, name string, f func() (*result, error)) (*result, error) {
	before, err := p.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	r, err := f()
	if err != nil {
		return nil, err
	}
	after, err := p.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	r.name, r.cpu = name, after.sub(before)
	return r, nil
}
