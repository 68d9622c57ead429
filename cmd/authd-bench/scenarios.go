package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
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
	notes   []string
}

func (r *result) n() int64 { lat, _, _ := r.lat.Get(); return int64(len(lat)) }

func (r *result) rate() float64 { return float64(r.n()) / max(r.elapsed.Seconds(), 1e-9) }

// errStop ends a worker's loop without counting the iteration.
var errStop = errors.New("stop")

// closedLoop runs op on n workers, each calling it again as soon as it
// returns, for d, and records each call in r.
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

// snapshot is authd's and this process's CPU, and each backend's (nil if
// unknown).
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

// closed measures op on -concurrency workers for -duration, CPU included,
// as a row of the main table.
func (rn *runner) closed(ctx context.Context, probe *cpuProbe, name string, op func(ctx context.Context, w int) error) (*result, error) {
	rn.h.Logf("%s: %s, %d clients", name, rn.o.duration, rn.o.concurrency)
	r := &result{name: name}
	rn.rep.results = append(rn.rep.results, r)
	return r, probe.measure(ctx, r, func() error { return closedLoop(ctx, r, rn.o.concurrency, rn.o.duration, op) })
}

// get is a GET scenario; role is the X-Auth-Role a 200 must carry.
type get struct{ name, path, header, value, role string }

func (g get) do(ctx context.Context, c *loadtest.Client) error {
	return c.Get(ctx, g.path, g.header, g.value, g.role)
}

// gets are the GET scenarios, in report order, with access as the token;
// verify-fresh's value is set per request.
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

// perAlg are the scenarios that run on every algorithm's server; the
// others run on the primary's only.
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
			rn.rep.notes = append(rn.rep.notes, a.alg+" server: "+p)
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
		return rn.closed(ctx, probe, s, op)
	}
	user := func(i int64) string { return h.Users[int(i)%len(h.Users)] }
	var next atomic.Int64

	if a.primary {
		if _, err := run("login", func(ctx context.Context, _ int) error { _, err := c.Login(ctx, user(next.Add(1))); return err }); err != nil {
			return err
		}
		// What login could reach here if bcrypt were all it did.
		n := runtime.GOMAXPROCS(0)
		r := &result{name: fmt.Sprintf("bcrypt ceiling (cost %d, %d goroutines)", loadtest.BcryptCost, n)}
		rn.rep.results, rn.rep.bcrypt = append(rn.rep.results, r), r
		h.Logf("%s: %s", r.name, o.duration)
		if err := (&cpuProbe{}).measure(ctx, r, func() error {
			return closedLoop(ctx, r, n, o.duration, func(context.Context, int) error {
				if !store.CheckPassword(h.Hash, loadtest.Password) {
					return errors.New("bcrypt compare failed")
				}
				return nil
			})
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
		if sessions[w].Refresh == "" { // the last refresh failed
			if sessions[w], err = c.Login(ctx, user(int64(w))); err != nil {
				return err
			}
		}
		sessions[w], err = c.Refresh(ctx, sessions[w].Refresh)
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
			r.notes = append(r.notes, fmt.Sprintf("%d requests presented one of %d tokens again, which authd may have answered from its cache: raise -verify-tokens", r.n()-int64(len(a.tokens)), len(a.tokens)))
		}
	}
	if !a.primary {
		return nil
	}
	rn.access = s.Access
	return rn.storm(ctx, srv.Addr)
}
