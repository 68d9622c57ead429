package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"authd/cmd/internal/loadtest"
)

// The hostile flood: floodClients clients post logins as fast as they are
// answered, ignoring Retry-After, from this machine, while floodRefreshers
// refresh closed-loop; first the refreshers alone. Unlike the polite storm,
// nearly every login is shed at the door, so the window measures what a
// shed costs authd and how much refresh keeps of its quiet throughput.
const (
	floodClients    = 64
	floodRefreshers = 4
)

// floodWindow is one window of the flood scenario.
type floodWindow struct {
	name    string
	refresh result // refresh's latencies and the window's CPU
	logins  [3]atomic.Int64
	// notBcrypt is the CPU of authd's threads but the bcrypt compares'
	// (from schedstat, in ns); -1 if unknown.
	notBcrypt time.Duration
}

// threadCPU is the CPU time of each of pid's threads that is not running
// a bcrypt compare: authd names those threads (identity.bcryptThreadName),
// and an authd from before that ran them at a nice value above 0. A
// thread that ends between two snapshots is lost: in authd, only
// compares' threads end.
func threadCPU(pid int) (map[string]time.Duration, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(dirs) == 0 {
		return nil, fmt.Errorf("threads of %d: %v", pid, err)
	}
	out := map[string]time.Duration{}
	for _, d := range dirs {
		comm, err1 := os.ReadFile(filepath.Join(d, "comm"))
		stat, err2 := os.ReadFile(filepath.Join(d, "stat"))
		sched, err3 := os.ReadFile(filepath.Join(d, "schedstat"))
		if err1 != nil || err2 != nil || err3 != nil {
			continue // ended
		}
		if strings.TrimSpace(string(comm)) == "authd-bcrypt" {
			continue
		}
		// Field 19 is the nice value, counted after the command name.
		rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(rest) > 16 && rest[16] != "0" {
			continue
		}
		f := strings.Fields(string(sched))
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s/schedstat: %w", d, err)
		}
		out[filepath.Base(d)] = time.Duration(ns)
	}
	return out, nil
}

// flood runs the quiet window and the flood window on the server at addr.
func (rn *runner) flood(ctx context.Context, addr string, probe *cpuProbe) error {
	o, h := rn.o, rn.h
	c, flood := loadtest.NewClient(addr, 2*floodRefreshers), loadtest.NewClient(addr, 2*floodClients)
	defer c.Close()
	defer flood.Close()
	sessions := make([]loadtest.Session, floodRefreshers)
	for w := range sessions {
		var err error
		if sessions[w], err = c.Login(ctx, h.Users[w%len(h.Users)]); err != nil {
			return fmt.Errorf("flood: log in: %w", err)
		}
	}
	h.Logf("flood: %d refresh clients, %s alone, then beside %d clients posting logins without back-off", floodRefreshers, o.duration, floodClients)
	for i, name := range []string{"quiet", "flood"} {
		w := &floodWindow{name: name}
		rn.floods[i] = w
		w.notBcrypt = -1
		before, terr := threadCPU(probe.pid)
		err := probe.measure(ctx, &w.refresh, func() error {
			fctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			if name == "flood" {
				var next atomic.Int64
				for range floodClients {
					wg.Go(func() {
						for fctx.Err() == nil {
							req := loadtest.LoginRequest(h.Users[int(next.Add(1))%len(h.Users)])
							req.Want = 0
							status, _, _, err := flood.Do(fctx, req)
							switch {
							case err == nil && status == http.StatusNoContent:
								w.logins[0].Add(1)
							case err == nil && status == http.StatusServiceUnavailable:
								w.logins[1].Add(1)
							case fctx.Err() == nil:
								w.logins[2].Add(1)
							}
						}
					})
				}
			}
			err := closedLoop(ctx, &w.refresh, floodRefreshers, o.duration, func(ctx context.Context, k int) (err error) {
				sessions[k], err = c.Refresh(ctx, sessions[k].Refresh)
				return err
			})
			stop()
			wg.Wait()
			return err
		})
		if err != nil {
			return fmt.Errorf("flood: %w", err)
		}
		if after, err := threadCPU(probe.pid); err == nil && terr == nil {
			w.notBcrypt = 0
			for tid, t := range after {
				w.notBcrypt += t - before[tid]
			}
		}
	}
	return nil
}

// writeFlood reports the flood scenario.
func (rn *runner) writeFlood(w io.Writer) (failed int64) {
	fmt.Fprintf(w, "\n### Hostile login flood\n\n%d clients post logins as fast as they are answered, ignoring Retry-After, for %s, beside %d refresh clients (closed loop); first the refresh clients alone. authd CPU/shed: the CPU of authd's threads other than bcrypt's in the flood window (schedstat), less its refreshes' (at the quiet window's CPU each), over the logins shed; the few logins answered 204 are in it too.\n\n",
		floodClients, rn.o.duration, floodRefreshers)
	row := loadtest.Table(w, "window", "refresh/s", "of quiet", "refresh p50", "refresh p99", "logins 204", "logins 503", "logins other", "authd CPU", "authd CPU/shed", "errors")
	quiet := rn.floods[0]
	for _, win := range rn.floods {
		if win == nil {
			return failed
		}
		lat, errs, samples := win.refresh.lat.Get()
		failed += errs + win.logins[2].Load()
		for _, s := range samples {
			rn.notes = append(rn.notes, "flood "+win.name+": "+s)
		}
		perShed := "–"
		if shed := win.logins[1].Load(); shed > 0 && win.notBcrypt >= 0 && quiet.notBcrypt >= 0 {
			perRefresh := float64(quiet.notBcrypt) / float64(max(quiet.refresh.n(), 1))
			rest := float64(win.notBcrypt) - perRefresh*float64(len(lat))
			perShed = fmt.Sprintf("%.1f µs", max(rest, 0)/float64(shed)/1e3)
		}
		row(win.name, fmt.Sprintf("%.0f", win.refresh.rate()), fmt.Sprintf("%.0f %%", 100*win.refresh.rate()/max(quiet.refresh.rate(), 1e-9)),
			loadtest.PMS(lat, .5), loadtest.PMS(lat, .99), win.logins[0].Load(), win.logins[1].Load(), win.logins[2].Load(),
			fmt.Sprintf("%.2f s", win.refresh.cpu[0].Seconds()), perShed, errs)
	}
	return failed
}
