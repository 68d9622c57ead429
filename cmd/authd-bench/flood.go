package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"authd/cmd/internal/loadtest"
)

// The hostile flood: floodClients clients post logins as fast as they are
// answered, ignoring Retry-After, from this machine, while floodRefreshers
// refresh closed-loop; first the refreshers alone. The flood is a process
// of its own (this program again, floodChild), as an attacker's would be:
// in this one, its goroutines would queue the measured refreshes behind
// them in Go's scheduler. Unlike the polite storm,
// nearly every login is shed at the door, so the window measures what a
// shed costs authd and how much refresh keeps of its quiet throughput.
//
// The flood comes first from this machine's one address, as a single
// attacker's would: past the address's share of logins
// (AUTHD_LOGINS_PER_IP) they are answered 429 at the door, with no
// compare, and authd holds its refusals (AUTHD_LOGIN_SHED_HOLD), one a
// second per connection. Then each login claims an address of its own
// in X-Forwarded-For (authd believes loopback peers, as it does a gateway
// on the same host), as a flood spread over a botnet's addresses would:
// nothing is held, and the flood alone window measures what a shed costs.
const (
	floodClients    = 64
	floodRefreshers = 4
)

// floodWindow is one window of the flood scenario.
type floodWindow struct {
	name    string
	refresh result          // refresh's latencies and the window's CPU
	logins  [4]atomic.Int64 // answered 204, 503, 429, anything else
	// client is the flood process's CPU.
	client time.Duration
	// notBcrypt is authd's CPU but its bcrypt compares'; -1 if unknown.
	notBcrypt time.Duration
	// held is how many refusals authd held (authd_login_shed_held_total);
	// -1 if unknown.
	held int64
	// disk is what the disk probe saw beside the window.
	disk flushes
}

// flood runs the quiet window and the flood window on the server at addr.
func (rn *runner) flood(ctx context.Context, addr string, probe *cpuProbe) error {
	o, h := rn.o, rn.h
	c := loadtest.NewClient(addr, 2*floodRefreshers)
	defer c.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sessions := make([]loadtest.Session, floodRefreshers)
	for w := range sessions {
		if sessions[w], err = c.Login(ctx, h.Users[w%len(h.Users)]); err != nil {
			return fmt.Errorf("flood: log in: %w", err)
		}
	}
	h.Logf("flood: %d refresh clients, %s alone, then beside %d clients posting logins without back-off, then the flood alone", floodRefreshers, o.duration, floodClients)
	for i, win := range []struct {
		name   string
		spread bool // a new address for each login
	}{{"quiet", false}, {"flood", false}, {"flood, many addresses", true}, {"flood alone, many addresses", true}} {
		name := win.name
		w := &floodWindow{name: name}
		rn.floods[i] = w
		w.notBcrypt, w.held = -1, -1
		before, merr := c.Metrics(ctx)
		stopProbe := rn.disk.start()
		err := probe.measure(ctx, &w.refresh, func() error {
			var child *exec.Cmd
			var out bytes.Buffer
			if name != "quiet" {
				child = exec.CommandContext(ctx, self)
				child.Env = append(os.Environ(), fmt.Sprint(floodEnv, "=", addr, " ", o.duration, " ", strings.Join(h.Users, ","), " ", win.spread))
				child.Stdout, child.Stderr = &out, os.Stderr
				if err := child.Start(); err != nil {
					return fmt.Errorf("start the flood: %w", err)
				}
			}
			refreshers := floodRefreshers
			if strings.HasPrefix(name, "flood alone") {
				refreshers = 0 // the child's window is the whole window
			}
			err := closedLoop(ctx, &w.refresh, refreshers, o.duration, func(ctx context.Context, k int) (err error) {
				sessions[k], err = c.Refresh(ctx, sessions[k].Refresh)
				return err
			})
			if child == nil {
				return err
			}
			if werr := child.Wait(); werr != nil {
				return errors.Join(err, fmt.Errorf("the flood: %w", werr))
			}
			w.client = child.ProcessState.UserTime() + child.ProcessState.SystemTime()
			var n [4]int64
			if _, serr := fmt.Sscan(out.String(), &n[0], &n[1], &n[2], &n[3]); serr != nil {
				return errors.Join(err, fmt.Errorf("the flood's counts %q: %w", out.String(), serr))
			}
			for k := range n {
				w.logins[k].Store(n[k])
			}
			return err
		})
		disk, perr := stopProbe()
		w.disk = disk
		if err := errors.Join(err, perr); err != nil {
			return fmt.Errorf("flood: %w", err)
		}
		// authd's CPU but bcrypt's: an authd from before the counter
		// has none, and its figure stays unknown.
		const bcryptCPU = "authd_bcrypt_cpu_seconds_total"
		const held = "authd_login_shed_held_total"
		if after, err := c.Metrics(ctx); err == nil && merr == nil {
			if b, ok := after[bcryptCPU]; ok && w.refresh.cpu[0] >= 0 {
				w.notBcrypt = w.refresh.cpu[0] - time.Duration((b-before[bcryptCPU])*float64(time.Second))
			}
			if n, ok := after[held]; ok {
				w.held = int64(n - before[held])
			}
		}
		h.Logf("flood: %s window: authd CPU %s, of which outside bcrypt threads %s; %d refreshes, logins %d 204, %d 503, %d 429", name, w.refresh.cpu[0], w.notBcrypt, w.refresh.n(), w.logins[0].Load(), w.logins[1].Load(), w.logins[2].Load())
	}
	return nil
}

// writeFlood reports the flood scenario.
func (rn *runner) writeFlood(w io.Writer) (failed int64) {
	fmt.Fprintf(w, "\n### Hostile login flood\n\n%d clients post logins as fast as they are answered, ignoring Retry-After, for %s, from a process of their own on this machine, beside %d refresh clients (closed loop); first the refresh clients alone, then the flood from this machine's address (past its share of logins, AUTHD_LOGINS_PER_IP, answered 429; authd holds its refusals, AUTHD_LOGIN_SHED_HOLD), then from a new address each login (X-Forwarded-For: never held), last that flood alone. Refusals held: answers authd held for AUTHD_LOGIN_SHED_HOLD (a client's refusals counted as it posts, not as answered). authd CPU/shed, in the flood alone: authd's CPU (/proc, 10 ms ticks) less its bcrypt compares' (authd_bcrypt_cpu_seconds_total; – for an authd without it), over the logins shed (the few logins answered 204 are in it too); DB CPU/shed: its PostgreSQL backends' CPU over the same. Disk flush max: as under the storm.\n\n",
		floodClients, rn.o.duration, floodRefreshers)
	row := loadtest.Table(w, "window", "refresh/s", "of quiet", "refresh p50", "refresh p99", "disk flush max", "logins 204", "logins 503", "logins 429", "refusals held", "logins other", "authd CPU", "authd CPU/shed", "DB CPU/shed", "flood client CPU/login", "errors")
	quiet := rn.floods[0]
	for _, win := range rn.floods {
		if win == nil {
			return failed
		}
		lat, errs, samples := win.refresh.lat.Get()
		failed += errs + win.logins[3].Load()
		for _, s := range samples {
			rn.notes = append(rn.notes, "flood "+win.name+": "+s)
		}
		perShed, dbPerShed := "–", "–"
		if shed := win.logins[1].Load(); shed > 0 && len(lat) == 0 {
			if win.notBcrypt >= 0 {
				perShed = fmt.Sprintf("%.1f µs", float64(win.notBcrypt)/float64(shed)/1e3)
			}
			if win.refresh.cpu[1] >= 0 {
				dbPerShed = fmt.Sprintf("%.1f µs", float64(win.refresh.cpu[1])/float64(shed)/1e3)
			}
		}
		rate, ofQuiet, p50, p99 := "–", "–", "–", "–"
		if len(lat) > 0 {
			rate, ofQuiet = fmt.Sprintf("%.0f", win.refresh.rate()), fmt.Sprintf("%.0f %%", 100*win.refresh.rate()/max(quiet.refresh.rate(), 1e-9))
			p50, p99 = loadtest.PMS(lat, .5), loadtest.PMS(lat, .99)
		}
		held := "–"
		if win.held >= 0 {
			held = strconv.FormatInt(win.held, 10)
		}
		row(win.name, rate, ofQuiet, p50, p99, win.disk, win.logins[0].Load(), win.logins[1].Load(), win.logins[2].Load(), held, win.logins[3].Load(),
			fmt.Sprintf("%.2f s", win.refresh.cpu[0].Seconds()), perShed, dbPerShed, perReq(win.client, win.logins[0].Load()+win.logins[1].Load()+win.logins[2].Load()+win.logins[3].Load()), errs)
	}
	return failed
}

// floodEnv holds the flood child's orders: "addr duration user,user,…
// spread", spread true for a new X-Forwarded-For address each login.
// Set, the program (or its test binary, TestMain) is the flood child.
const floodEnv = "AUTHD_BENCH_FLOOD"

// floodChild is the flood process: floodClients clients posting logins
// without back-off for the duration, then the counts of 204, 503, 429 and
// anything else on stdout.
func floodChild() error {
	var addr, d, users string
	var spread bool
	if _, err := fmt.Sscan(os.Getenv(floodEnv), &addr, &d, &users, &spread); err != nil {
		return fmt.Errorf("%s: %w", floodEnv, err)
	}
	dur, err := time.ParseDuration(d)
	if err != nil {
		return err
	}
	names := strings.Split(users, ",")
	flood := loadtest.NewClient(addr, 2*floodClients)
	defer flood.Close()
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var n [4]atomic.Int64
	// Addresses from a random place in 10/8: not those of an earlier
	// flood, which authd would still hold.
	var next atomic.Int64
	next.Store(rand.Int64N(1 << 24))
	var wg sync.WaitGroup
	for range floodClients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				req := loadtest.LoginRequest(names[int(i)%len(names)])
				req.Want = 0
				if spread {
					loadtest.FromAddress(&req, loadtest.Address(i))
				}
				status, _, _, err := flood.Do(ctx, req)
				switch {
				case err == nil && status == http.StatusNoContent:
					n[0].Add(1)
				case err == nil && status == http.StatusServiceUnavailable:
					n[1].Add(1)
				case err == nil && status == http.StatusTooManyRequests:
					n[2].Add(1)
				case ctx.Err() == nil:
					n[3].Add(1)
				}
			}
		})
	}
	wg.Wait()
	_, err = fmt.Println(n[0].Load(), n[1].Load(), n[2].Load(), n[3].Load())
	return err
}
