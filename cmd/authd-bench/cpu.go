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

// cpuProbe reads the CPU used by authd, by the PostgreSQL backends serving
// it (by application_name), by this process and by the whole machine: a
// window's delta over its requests is CPU per request, and "everything
// else" shows when another workload skewed it.
type cpuProbe struct {
	serverPID int // -1: no server
	pool      *pgxpool.Pool
	dbName    string
	app       string
}

// A CPU time of -1 could not be read; a nil db map neither.
type cpuSnap struct {
	server, self, busy, idle time.Duration
	db                       map[int]time.Duration
	at                       time.Time
}

type cpuDelta struct{ server, db, self, busy, idle, wall time.Duration }

// procCPU is pid's CPU time; 0 for no process (-1), -1 if unreadable.
func procCPU(pid int) time.Duration {
	if t, _, err := loadtest.ProcCPU(pid); err == nil || pid < 0 {
		return t
	}
	return -1
}

func sub(a, b time.Duration) time.Duration {
	if a < 0 || b < 0 {
		return -1
	}
	return a - b
}

func (p *cpuProbe) snapshot(ctx context.Context) (cpuSnap, error) {
	s := cpuSnap{server: procCPU(p.serverPID), self: procCPU(os.Getpid()), db: map[int]time.Duration{}, at: time.Now()}
	var err error
	if s.busy, s.idle, err = loadtest.MachineCPU(); err != nil {
		s.busy, s.idle = -1, -1
	}
	rows, _ := p.pool.Query(ctx, `select pid from pg_stat_activity where datname = $1 and application_name = $2`, p.dbName, p.app)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return s, fmt.Errorf("list the server's database backends: %w", err)
	}
	for _, pid := range pids {
		// On another host or in another container these pids mean nothing here.
		if t, comm, err := loadtest.ProcCPU(int(pid)); err == nil && comm == "postgres" {
			s.db[int(pid)] = t
		} else {
			s.db = nil
			break
		}
	}
	return s, nil
}

// sub is the CPU used since before. A backend that appeared in between
// counts in full (connection start-up is part of the load); one that ended
// is lost, which pgxpool's hour-long connection lifetime makes unlikely.
func (s cpuSnap) sub(before cpuSnap) cpuDelta {
	d := cpuDelta{server: sub(s.server, before.server), self: sub(s.self, before.self), busy: sub(s.busy, before.busy),
		idle: sub(s.idle, before.idle), wall: s.at.Sub(before.at), db: -1}
	if s.db != nil && before.db != nil {
		d.db = 0
		for pid, t := range s.db {
			d.db += t - before.db[pid]
		}
	}
	return d
}

// other is what everything else on the machine took, -1 if unknown.
func (d cpuDelta) other() time.Duration {
	if min(d.busy, d.server, d.db, d.self) < 0 {
		return -1
	}
	return max(d.busy-d.server-d.db-d.self, 0) // ticks: may round below 0
}

// measure runs f between two snapshots and gives its result name and CPU.
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
