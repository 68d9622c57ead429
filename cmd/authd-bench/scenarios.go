package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/procfs"

	"authd/cmd/internal/loadtest"
	"authd/store"
)

// result is one measured window: a row of the main table.
type result struct {
	name    string
	lat     loadtest.Latencies
	elapsed time.Duration
	cpu     [3]time.Duration // authd's, its PostgreSQL backends', this process's; -1 if unknown
}

func (r *result) n() int64 { lat, _, _ := r.lat.Get(); return int64(len(lat)) }

func (r *result) rate() float64 { return float64(r.n()) / max(r.elapsed.Seconds(), 1e-9) }

// machineCPU is the machine's CPU time by state, all CPUs (/proc/stat).
func machineCPU() (cpuTimes, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return cpuTimes{}, err
	}
	st, err := fs.Stat()
	return cpuTimes(st.CPUTotal), err
}

type cpuTimes procfs.CPUStat

// idle is the time no task ran, waiting for I/O included.
func (c cpuTimes) idle() float64 { return c.Idle + c.Iowait }

// all is every state's time: the CPUs' wall time (guest time is in user).
func (c cpuTimes) all() float64 {
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal + c.idle()
}

// errStop ends a worker's loop without counting the iteration.
var errStop = errors.New("stop")

// closedLoop runs op on n workers, each calling it again as soon as it
// returns, for d, recording each call in r.
func closedLoop(ctx context.Context, r *result, n int, d time.Duration, op func(ctx context.Context, w int) error) error {
	start := time.Now()
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for ctx.Err() == nil && time.Since(start) < d {
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

// cpuProbe reads from /proc the CPU used by authd (pid; 0 for none), by
// the PostgreSQL backends of database db whose application_name is app
// ("" for none) and by this process.
type cpuProbe struct {
	pid     int
	pool    *pgxpool.Pool
	db, app string
}

// procCPU is pid's CPU time (all threads, in 10 ms ticks), -1 if
// unreadable, and its command name.
func procCPU(pid int) (time.Duration, string) {
	if p, err := procfs.NewProc(pid); err == nil {
		if st, err := p.Stat(); err == nil {
			return time.Duration(st.CPUTime() * float64(time.Second)), st.Comm
		}
	}
	return -1, ""
}

// snapshot is authd's and this process's CPU, and each backend's.
func (p *cpuProbe) snapshot(ctx context.Context) (own [2]time.Duration, db map[int32]time.Duration, err error) {
	own[0], _ = procCPU(p.pid)
	own[1], _ = procCPU(os.Getpid())
	if p.app == "" {
		return own, nil, nil
	}
	rows, _ := p.pool.Query(ctx, `select pid from pg_stat_activity where datname = $1 and application_name = $2`, p.db, p.app)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return own, nil, fmt.Errorf("list the server's database backends: %w", err)
	}
	db = map[int32]time.Duration{}
	for _, pid := range pids {
		// On another host or in another container these pids mean nothing here.
		t, comm := procCPU(int(pid))
		if comm != "postgres" {
			return own, nil, nil
		}
		db[pid] = t
	}
	return own, db, nil
}

// measure runs f between two snapshots and records in r its CPU. A backend
// that appeared in between counts in full (connection start-up is part of
// the load); one that ended is lost, which pgxpool's hour-long connection
// lifetime makes unlikely.
func (p *cpuProbe) measure(ctx context.Context, r *result, f func() error) error {
	own0, db0, err := p.snapshot(ctx)
	if err == nil {
		err = f()
	}
	if err != nil {
		return err
	}
	own1, db1, err := p.snapshot(ctx)
	r.cpu = [3]time.Duration{-1, -1, -1}
	for i, k := range []int{0, 2} {
		if own0[i] >= 0 && own1[i] >= 0 {
			r.cpu[k] = own1[i] - own0[i]
		}
	}
	if db0 != nil && db1 != nil {
		r.cpu[1] = 0
		for pid, t := range db1 {
			r.cpu[1] += t - db0[pid]
		}
	}
	return err
}

// closed measures op on n workers for -duration as a main table row.
func (rn *runner) closed(ctx context.Context, probe *cpuProbe, name string, n int, op func(ctx context.Context, w int) error) (*result, error) {
	rn.h.Logf("%s: %s, %d clients", name, rn.o.duration, n)
	r := &result{name: name}
	rn.results = append(rn.results, r)
	return r, probe.measure(ctx, r, func() error { return closedLoop(ctx, r, n, rn.o.duration, op) })
}

// get is a GET scenario; role is the X-Auth-Role a 200 must carry.
type get struct{ name, path, header, value, role string }

func (g get) do(ctx context.Context, c *loadtest.Client) error {
	return c.Get(ctx, g.path, g.header, g.value, g.role)
}

// gets are the GET scenarios in report order; verify-fresh's value is set
// per request.
func (rn *runner) gets(access string) []get {
	role := rn.h.Role
	return []get{
		{"bare", "/healthz", "", "", ""},
		{"verify-fresh", "/auth/verify", "Authorization", "", role},
		{"verify-jwt", "/auth/verify", "Authorization", "Bearer " + access, role},
		{"verify-cookie", "/auth/verify", "Cookie", "access_token=" + access, role},
		{"verify-apikey", "/auth/verify", "X-API-Key", rn.apiKey, role},
	}
}

// loginWarmup is how long logins run untimed before the login row, for a
// row of duration d: a second, or d if shorter.
func loginWarmup(d time.Duration) time.Duration { return min(d, time.Second) }

// perAlg run on every algorithm's server, the rest on the primary's.
var perAlg = []string{"refresh", "verify-fresh", "verify-jwt"}

// runAlg runs the scenarios on a server signing with a.
func (rn *runner) runAlg(ctx context.Context, a *alg) (err error) {
	o, h := rn.o, rn.h
	// Before the server starts, so that nothing competes for the CPU.
	h.Logf("%s: signing %d access tokens for verify-fresh", a.alg, o.verifyTokens)
	if err := a.mint(h.Role, o.verifyTokens, min(max(o.duration/10, 20*time.Millisecond), time.Second)); err != nil {
		return fmt.Errorf("%s: in-process sign/verify: %w", a.alg, err)
	}
	srv, err := h.Start(ctx, "authd-"+a.alg, a.env...)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nthe %s server's log ends:\n%s", err, a.alg, srv.LogTail())
		}
		if p := srv.LogProblems(); p != "" {
			rn.notes = append(rn.notes, a.alg+" server: "+p)
		}
		_ = srv.Stop()
	}()
	h.Logf("%s: authd serving on %s (pid %d)", a.alg, srv.Addr, srv.PID())
	probe := &cpuProbe{pid: srv.PID(), pool: h.Pool, db: h.DBName, app: serverApp}
	c := loadtest.NewClient(srv.Addr, 2*o.concurrency)
	defer c.Close()
	run := func(s string, op func(ctx context.Context, w int) error) (*result, error) {
		if slices.Contains(perAlg, s) {
			s += " (" + a.alg + ")"
		}
		return rn.closed(ctx, probe, s, o.concurrency, op)
	}
	user := func(i int64) string { return h.Users[int(i)%len(h.Users)] }
	var next atomic.Int64

	if a.primary {
		login := func(ctx context.Context, _ int) error { _, err := c.Login(ctx, user(next.Add(1))); return err }
		// What login could reach here if bcrypt were all it did, measured
		// before the login row and after it: a VM's speed drifts by a few
		// percent from one window to the next, so logins are set against
		// the mean of the two. Compares in this process, on every CPU.
		n := runtime.GOMAXPROCS(0)
		ceiling := func(when string) (*result, error) {
			return rn.closed(ctx, &cpuProbe{}, fmt.Sprintf("bcrypt ceiling %s login (cost %d, %d goroutines)", when, loadtest.BcryptCost, n), n, func(context.Context, int) error {
				if !store.CheckPassword(h.Hash, loadtest.Password) {
					return errors.New("bcrypt compare failed")
				}
				return nil
			})
		}
		before, err := ceiling("before")
		if err != nil {
			return err
		}
		// The server has just started: its pool opens connections and
		// prepares statements, PostgreSQL analyses the new tables. The
		// row is the steady state, as the other rows are (their sessions
		// are logged in untimed), so logins run untimed first.
		h.Logf("login: warming up for %s, untimed", loginWarmup(o.duration))
		if err := closedLoop(ctx, &result{}, o.concurrency, loginWarmup(o.duration), login); err != nil {
			return err
		}
		m0, merr := c.Metrics(ctx)
		cpu0, cerr := machineCPU()
		logins, err := run("login", login)
		if err != nil {
			return err
		}
		cpu1, cerr1 := machineCPU()
		m1, merr1 := c.Metrics(ctx)
		if rn.bcrypt, err = ceiling("after"); err != nil {
			return err
		}
		mean := (before.rate() + rn.bcrypt.rate()) / 2
		note := fmt.Sprintf("login: %.1f/s, %.1f %% of the bcrypt ceiling of %.1f/s, the mean of %.1f/s measured before and %.1f/s after", logins.rate(), 100*logins.rate()/mean, mean, before.rate(), rn.bcrypt.rate())
		// Drift-free: how the CPUs' time went in the login row itself —
		// to compares (authd's counter), to nothing, to the hypervisor.
		var shares []string
		procStat := cerr == nil && cerr1 == nil
		wall := float64(runtime.NumCPU()) * logins.elapsed.Seconds()
		if procStat {
			wall = cpu1.all() - cpu0.all()
		}
		const bcryptCPU = "authd_bcrypt_cpu_seconds_total"
		if b1, ok := m1[bcryptCPU]; ok && merr == nil && merr1 == nil {
			shares = append(shares, fmt.Sprintf("compares had %.1f %%", 100*(b1-m0[bcryptCPU])/wall))
		}
		if procStat {
			shares = append(shares, fmt.Sprintf("%.1f %% was idle", 100*(cpu1.idle()-cpu0.idle())/wall), fmt.Sprintf("%.1f %% stolen by the hypervisor", 100*(cpu1.Steal-cpu0.Steal)/wall))
		}
		if len(shares) > 0 {
			note += fmt.Sprintf("; of the %d CPUs' time in the login row, %s", runtime.NumCPU(), strings.Join(shares, ", "))
		}
		rn.notes = append(rn.notes, note)
		// The same beside busy neighbours: CPU-bound processes at nice 0
		// in this session, so in authd's scheduling group.
		if err := withNeighbours(busyNeighbours, func() error {
			_, err := run(fmt.Sprintf("login beside %d busy processes (yes)", busyNeighbours), login)
			return err
		}); err != nil {
			return err
		}
	}

	sessions := make([]loadtest.Session, o.concurrency) // one per worker, logged in untimed
	for w := range sessions {
		if sessions[w], err = c.Login(ctx, user(int64(w))); err != nil {
			return err
		}
	}
	if a.refresh, err = run("refresh", func(ctx context.Context, w int) (err error) {
		sessions[w], err = c.Refresh(ctx, sessions[w].Refresh) // a failure fails the run
		return err
	}); err != nil {
		return err
	}
	if a.primary {
		// Logout spends one pre-created session per request: three times
		// refresh's rate is plenty for its one UPDATE, and COPY is cheap.
		n := int64(math.Ceil(max(3*a.refresh.rate(), 5000) * o.duration.Seconds()))
		h.Logf("logout: creating %d sessions", n)
		tokens, err := insertSessions(ctx, h.Pool, h.Users, int(n))
		if err != nil {
			return err
		}
		next.Store(0)
		if _, err := run("logout", func(ctx context.Context, _ int) error {
			if i := next.Add(1) - 1; i < n {
				return c.Logout(ctx, loadtest.Session{Refresh: tokens[i]})
			}
			return errStop // the row says how many it managed
		}); err != nil {
			return err
		}
		if rn.apiKey, err = h.APIKey(ctx); err != nil {
			return err
		}
	}
	s, err := c.Login(ctx, h.Users[0])
	if err == nil {
		_, err = a.iss.Verify(s.Access) // signed with a's key: only that key verifies it here
	}
	if err != nil {
		return fmt.Errorf("an access token from the %s server: %w", a.alg, err)
	}
	for _, g := range rn.gets(s.Access) {
		if !a.primary && !slices.Contains(perAlg, g.name) {
			continue
		}
		next.Store(0)
		r, err := run(g.name, func(ctx context.Context, _ int) error {
			v := g
			if v.name == "verify-fresh" {
				v.value = "Bearer " + a.tokens[(next.Add(1)-1)%int64(len(a.tokens))]
			}
			return v.do(ctx, c)
		})
		if err != nil {
			return err
		}
		if g.name == "verify-fresh" && r.n() > int64(len(a.tokens)) {
			rn.notes = append(rn.notes, fmt.Sprintf("%s: %d requests presented one of %d tokens again, which authd may have answered from its cache: raise -verify-tokens", r.name, r.n()-int64(len(a.tokens)), len(a.tokens)))
		}
	}
	if !a.primary {
		return nil
	}
	rn.access = s.Access
	if err := rn.storm(ctx, srv.Addr); err != nil {
		return err
	}
	return rn.flood(ctx, srv.Addr, probe)
}

// The storm: logins sent open-loop at stormFactor × the bcrypt ceiling,
// each from an address of its own (many users at once, as after an
// outage), so that the excess must be shed with 503 within
// AUTHD_LOGIN_QUEUE_WAIT,
// while refresh, verify (one Bearer token, as a gateway presents it) and
// GET /healthz are paced, beside the same paced clients in a quiet window.

// stormWindow is one window: the paced clients, and in the storm the flood.
type stormWindow struct {
	name    string
	elapsed time.Duration
	lat     [6]loadtest.Latencies // refresh, verify, healthz; logins answered 204, 503, anything else
	disk    flushes               // the disk probe's, beside the window
	dropped atomic.Int64          // slots not sent: too many in flight, or no free session
}

func (rn *runner) storm(ctx context.Context, addr string) error {
	o, h, ceil := rn.o, rn.h, rn.bcrypt
	// The ceiling from bcrypt's CPU cost, which other load does not lower
	// as it lowers the measured rate.
	lat, _, _ := ceil.lat.Get()
	rn.ceilingRate, rn.bcryptMS = ceil.rate(), float64(loadtest.Percentile(lat, 0.5))/1e6
	if ceil.cpu[2] > 0 {
		rn.bcryptMS = float64(ceil.cpu[2]) / float64(ceil.n()) / 1e6
		rn.ceilingRate = max(rn.ceilingRate, float64(runtime.GOMAXPROCS(0))/(rn.bcryptMS/1000))
	}
	rn.loginRate = stormFactor * rn.ceilingRate

	// The flood's hundreds of connections are not the measured clients'.
	flood, meas := loadtest.NewClient(addr, 512), loadtest.NewClient(addr, 64)
	defer flood.Close()
	defer meas.Close()
	sessions := make(chan string, 64) // for paced refreshes, each used by one at a time
	for i := range cap(sessions) {
		s, err := meas.Login(ctx, h.Users[i%len(h.Users)])
		if err != nil {
			return fmt.Errorf("storm: log in: %w", err)
		}
		sessions <- s.Refresh
	}
	gets := rn.gets(rn.access)
	verify, health := gets[2], gets[0] // verify-jwt, bare
	for range 8 {                      // warm the measuring connections and the verified-token cache
		if err := verify.do(ctx, meas); err != nil {
			return fmt.Errorf("storm: warm-up: %w", err)
		}
	}
	h.Logf("storm: quiet window, then a login flood at %.0f/s (%g× the bcrypt ceiling of %.1f/s), %s each", rn.loginRate, stormFactor, rn.ceilingRate, o.duration)
	for i, name := range []string{"quiet", "storm"} {
		w := &stormWindow{name: name}
		rn.windows[i] = w
		start := time.Now().Add(20 * time.Millisecond)
		stopProbe := rn.disk.start()
		var wg sync.WaitGroup
		pace := func(rate float64, inflight int, fn func(context.Context)) {
			wg.Go(func() {
				w.dropped.Add(loadtest.Pacer{Rate: rate, MaxInflight: inflight}.Run(ctx, start, o.duration, fn))
			})
		}
		pace(o.stormRates[0], 256, func(ctx context.Context) {
			var tok string
			select {
			case tok = <-sessions:
			default:
				w.dropped.Add(1)
				return
			}
			t0 := time.Now()
			s, err := meas.Refresh(ctx, tok)
			if w.lat[0].Add(time.Since(t0), err); err == nil { // else the pool shrinks by one
				sessions <- s.Refresh
			}
		})
		for k, g := range []get{verify, health} {
			pace(o.stormRates[k+1], 256, func(ctx context.Context) {
				t0 := time.Now()
				err := g.do(ctx, meas)
				w.lat[k+1].Add(time.Since(t0), err)
			})
		}
		var next atomic.Int64
		if name == "storm" {
			pace(rn.loginRate, 4096, func(ctx context.Context) {
				i := next.Add(1)
				req := loadtest.LoginRequest(h.Users[int(i)%len(h.Users)])
				req.Want = 0
				// Many users, each from an address of its own: none is
				// held for ignoring Retry-After (as the flood's are).
				loadtest.FromAddress(&req, loadtest.Address(i))
				t0 := time.Now()
				status, hdr, _, err := flood.Do(ctx, req)
				d := time.Since(t0)
				switch {
				case err == nil && status == http.StatusNoContent:
					_, err = loadtest.SessionCookies(hdr, "login")
					w.lat[3].Add(d, err)
				case err == nil && status == http.StatusServiceUnavailable && hdr.Get("Retry-After") != "":
					w.lat[4].Add(d, nil)
				default:
					w.lat[5].Add(d, errors.Join(err, fmt.Errorf("POST /rpc/login: status %d", status)))
				}
			})
		}
		wg.Wait()
		w.elapsed = time.Since(start)
		disk, err := stopProbe()
		w.disk = disk
		if err := errors.Join(err, ctx.Err()); err != nil {
			return fmt.Errorf("storm: %w", err)
		}
	}
	return nil
}

// busyNeighbours is how many CPU-bound processes the login-beside-
// neighbours row runs: as many as a 2-CPU machine has CPUs.
const busyNeighbours = 2

// withNeighbours runs f while n processes `yes > /dev/null` keep CPUs
// busy, and ends them before it returns.
func withNeighbours(n int, f func() error) (err error) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	for range n {
		cmd := exec.Command("yes")
		cmd.Stdout = null // a file: the child writes to it directly
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start a busy neighbour: %w", err)
		}
		defer func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}()
	}
	return f()
}
