package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The disk probe. Every refresh waits for PostgreSQL to flush its commit
// to disk, so a refresh's p99 can be no better than the disk's: on a VM
// whose virtual disk stalls every flush for a few hundred milliseconds
// now and then, one stall of 200 ms holds 40 of the storm's refreshes
// (paced at 200 a second), 2 % of a 10 s window.
// So the storm's and the flood's windows time, beside their requests, a
// durable write of their own (8 kB and fdatasync, as a commit's WAL
// write) on the filesystem of PostgreSQL's WAL, and report the longest:
// a refresh p99 above it is authd's or PostgreSQL's, one at it is the
// disk's.

// slowFlush is what the report counts as a stalled flush.
const slowFlush = 10 * time.Millisecond

// flushEvery is the pause between the probe's flushes: often enough to
// see every stall longer than it, rarely enough (50 a second) to add
// little to the commits it measures.
const flushEvery = 20 * time.Millisecond

// flushes is what the probe saw in one window; n is 0 without a probe.
type flushes struct {
	n, slow int // flushes timed; of them, longer than slowFlush
	max     time.Duration
}

func (f flushes) String() string {
	if f.n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms (%d over %s)", float64(f.max)/float64(time.Millisecond), f.slow, slowFlush)
}

func (f *flushes) add(d time.Duration) {
	f.n++
	f.max = max(f.max, d)
	if d > slowFlush {
		f.slow++
	}
}

// diskProbe times durable writes to a file in dir; a zero diskProbe (dir
// "") times nothing, and why says why.
type diskProbe struct {
	dir, why string
	// sync is the flush timed: flushData, or a test's.
	sync func(*os.File) error
}

// start has the probe write and flush in dir until the function it
// returns is called; that returns what it saw. A failed write or flush
// ends the probe, not the window: its own figures stand.
func (p *diskProbe) start() (stop func() (flushes, error)) {
	if p.dir == "" {
		return func() (flushes, error) { return flushes{}, nil }
	}
	file, err := os.CreateTemp(p.dir, "flush-probe-")
	if err != nil {
		return func() (flushes, error) { return flushes{}, fmt.Errorf("disk probe: %w", err) }
	}
	var (
		seen     flushes
		probeErr error
		wg       sync.WaitGroup
	)
	done := make(chan struct{})
	wg.Go(func() {
		page := make([]byte, 8192)
		for i := int64(0); ; i++ {
			t0 := time.Now()
			if _, probeErr = file.WriteAt(page, (i%64)*int64(len(page))); probeErr != nil {
				return
			}
			if probeErr = p.sync(file); probeErr != nil {
				return
			}
			seen.add(time.Since(t0))
			select {
			case <-done:
				return
			case <-time.After(flushEvery):
			}
		}
	})
	return func() (flushes, error) {
		close(done)
		wg.Wait()
		if err := errors.Join(probeErr, file.Close(), os.Remove(file.Name())); err != nil {
			return seen, fmt.Errorf("disk probe: %w", err)
		}
		return seen, nil
	}
}

// newDiskProbe finds where to probe: dir, if it is on the filesystem of
// the WAL of the PostgreSQL server behind pool and that server runs on
// this machine (one of its backends is a local postgres process whose
// working directory is the server's data directory). Anything else, or
// not being allowed to look, is no probe, with the reason.
func newDiskProbe(ctx context.Context, pool *pgxpool.Pool, dir string) *diskProbe {
	none := func(why string) *diskProbe { return &diskProbe{why: why} }
	var pid int
	var data string
	if err := pool.QueryRow(ctx, `select pg_backend_pid(), current_setting('data_directory')`).Scan(&pid, &data); err != nil {
		return none(fmt.Sprintf("PostgreSQL's data directory is not ours to read (%v)", err))
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return none(fmt.Sprintf("PostgreSQL's data directory %s is not on this machine, or not ours to read", data))
	}
	if real, err := filepath.EvalSymlinks(data); err != nil || real != cwd {
		return none(fmt.Sprintf("PostgreSQL's data directory %s is not on this machine", data))
	}
	wal := filepath.Join(cwd, "pg_wal")
	same, err := sameFilesystem(dir, wal)
	if err != nil {
		return none(fmt.Sprintf("PostgreSQL's WAL %s is not ours to read (%v)", wal, err))
	}
	if !same {
		return none(fmt.Sprintf("%s is not on the filesystem of PostgreSQL's WAL %s", dir, wal))
	}
	return &diskProbe{dir: dir, why: wal, sync: flushData}
}

// note is the report's line on the probe.
func (p *diskProbe) note() string {
	if p.dir == "" {
		return "disk flush: not timed: " + p.why
	}
	return fmt.Sprintf("disk flush: the longest of the bench's own durable writes (8 kB and fdatasync, one every %s) in %s, on the filesystem of PostgreSQL's WAL (%s), and how many took over %s; every refresh waits for such a flush, its commit's", flushEvery, p.dir, p.why, slowFlush)
}
