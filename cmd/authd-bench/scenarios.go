package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"authd/cmd/internal/loadtest"
	"authd/store"
)

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
		r, err := rn.closed(ctx, probe, s, op)
		rn.rep.results = append(rn.rep.results, r)
		return r, err
	}
	user := func(i int64) string { return h.Users[int(i)%len(h.Users)] }

	if a.primary {
		var next atomic.Int64
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
		tokens, err := insertSessions(ctx, h.Pool, h.Users, n, 1)
		if err != nil {
			return err
		}
		var next atomic.Int64
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
		err = a.check(s.Access)
	}
	if err != nil {
		return fmt.Errorf("log in for an access token: %w", err)
	}
	for _, g := range rn.gets(s.Access) {
		if !a.primary && !slices.Contains(perAlg, g.name) {
			continue
		}
		var next atomic.Int64
		r, err := run(g.name, func(ctx context.Context, _ int) error {
			if g.name != "verify-fresh" {
				return g.do(ctx, c)
			}
			return c.Get(ctx, g.path, g.header, "Bearer "+a.tokens[(next.Add(1)-1)%int64(len(a.tokens))], g.role)
		})
		if err != nil {
			return err
		}
		switch g.name {
		case "verify-fresh":
			if a.fresh = r; r.n() > int64(len(a.tokens)) {
				r.notes = append(r.notes, fmt.Sprintf("%d requests presented one of %d tokens again, which authd may have answered from its cache: raise -verify-tokens", r.n()-int64(len(a.tokens)), len(a.tokens)))
			}
		case "verify-jwt":
			a.cached = r
		}
	}
	if !a.primary {
		return nil
	}
	rn.access = s.Access
	return rn.storm(ctx, srv.Addr)
}
