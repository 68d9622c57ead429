package main

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"authd/store/storetest"
)

// TestDiskProbe: the probe times each write and flush, counts those over
// slowFlush, keeps the longest, and leaves no file behind; a failed flush
// ends the probe with an error; no probe times nothing.
func TestDiskProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		var calls atomic.Int64
		third := make(chan struct{})
		p := &diskProbe{dir: dir, sync: func(f *os.File) error {
			switch calls.Add(1) {
			case 2:
				time.Sleep(25 * time.Millisecond) // a stall, on the bubble's clock
			case 3:
				close(third)
			}
			return nil
		}}
		stop := p.start()
		<-third
		seen, err := stop()
		if err != nil {
			t.Fatal(err)
		}
		if seen.n < 3 || seen.slow != 1 || seen.max != 25*time.Millisecond {
			t.Errorf("saw %+v, want at least 3 flushes, 1 over %s, the longest 25ms", seen, slowFlush)
		}
		if got, want := seen.String(), "25.0 ms (1 over 10ms)"; got != want {
			t.Errorf("cell %q, want %q", got, want)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("the probe left %v", left)
		}

		broken := errors.New("the disk is gone")
		p.sync = func(*os.File) error { return broken }
		stop = p.start()
		time.Sleep(time.Second)
		if _, err := stop(); !errors.Is(err, broken) {
			t.Errorf("a failed flush: %v, want %v", err, broken)
		}
	})
	none := &diskProbe{why: "no reason"}
	seen, err := none.start()()
	if err != nil || seen.n != 0 || seen.String() != "–" || none.note() != "disk flush: not timed: no reason" {
		t.Errorf("no probe: %+v, %v, %q", seen, err, none.note())
	}
}

// TestDiskProbeFindsTheWAL asks the test server where its WAL is. Run as
// root (as CI is) against a server on this machine, the probe must read
// its data directory: it either probes there (a directory on the WAL's
// filesystem) or says that the directory given is not on it.
func TestDiskProbeFindsTheWAL(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.AdminURL()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	dir := t.TempDir()
	p := newDiskProbe(ctx, pool, dir)
	t.Logf("probe: %s", p.note())
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Hostname()
	local := host == "" || host == "localhost" || host == "127.0.0.1" || host == "::1" || strings.HasPrefix(host, "/")
	if os.Geteuid() != 0 || !local {
		return // not ours to read: any reason stands
	}
	switch {
	case p.dir == dir && filepath.Base(p.why) == "pg_wal":
	case p.dir == "" && strings.HasPrefix(p.why, dir+" is not on the filesystem of PostgreSQL's WAL "):
	default:
		t.Errorf("probe %+v: want %s probed on the WAL's filesystem, or the reason it is not on it", p, dir)
	}
}
