package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"authd/cmd/internal/loadtest"
	"authd/store"
)

// result is one row of the main table.
type result struct {
	name     string // "refresh (ES256)"
	scenario string // "refresh"
	requests int64
	errors   int64
	elapsed  time.Duration
	lat      []time.Duration
	cpu      cpuDelta
	notes    []string
	samples  []string // the first few distinct error messages
	noServer bool     // bcrypt, or the statement alone
}

func (r *result) rate() float64 { return float64(r.requests) / max(r.elapsed.Seconds(), 1e-9) }

func (r *result) fail(msg string) {
	r.errors++
	if len(r.samples) < 5 && !slices.Contains(r.samples, msg) {
		r.samples = append(r.samples, msg)
	}
}

// closedLoop runs op on c workers, each calling it again as soon as it
// returns, for d (d = 0: until op returns errStop), and records each call.
func closedLoop(ctx context.Context, c int, d time.Duration, op func(ctx context.Context, worker int) error) (*result, error) {
	outs := make([]result, c) // one per worker: no lock in the timed loop
	start := time.Now()
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			for ctx.Err() == nil && (d == 0 || time.Since(start) < d) {
				t0 := time.Now()
				err := op(ctx, w)
				if errors.Is(err, errStop) || ctx.Err() != nil {
					return
				}
				outs[w].requests++
				outs[w].lat = append(outs[w].lat, time.Since(t0))
				if err != nil {
					outs[w].fail(err.Error())
				}
			}
		})
	}
	wg.Wait()
	r := &result{elapsed: time.Since(start)}
	for _, out := range outs {
		r.requests += out.requests
		r.lat = append(r.lat, out.lat...)
		for _, e := range out.samples {
			r.fail(e)
		}
		r.errors += out.errors - int64(len(out.samples))
	}
	return r, ctx.Err()
}

// iterFunc prepares a worker's iteration, untimed.
type iterFunc func(ctx context.Context, worker int) (func(context.Context) error, error)

// each is an iterFunc that needs no preparing.
func each(op func(ctx context.Context) error) iterFunc {
	return func(context.Context, int) (func(context.Context) error, error) { return op, nil }
}

// runScenario prepares each worker's iteration, then runs them all for
// -duration, CPU measured.
func runScenario(ctx context.Context, name string, o *options, probe *cpuProbe, setup iterFunc) (*result, error) {
	iters := make([]func(context.Context) error, o.concurrency)
	for w := range iters {
		var err error
		if iters[w], err = setup(ctx, w); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return probe.measure(ctx, name, func() (*result, error) {
		return closedLoop(ctx, o.concurrency, o.duration, func(ctx context.Context, w int) error { return iters[w](ctx) })
	})
}

// algResult is what the report says about one algorithm.
type algResult struct {
	alg, kid         string
	tokenBytes       int
	signNS, verifyNS float64 // one access token, in this process
	refresh          *result // signs one token per request
	fresh            *result // verify-fresh: verifies one per request
	cached           *result // verify-jwt: from the cache
	pool             string  // where verify-fresh's tokens came from
}

// check makes sure authd signed tok with the algorithm and key it was
// given, and records its size.
func (ar *algResult) check(tok, from string) error {
	if alg, kid, err := tokenHeader(tok); err != nil || alg != ar.alg || kid != ar.kid {
		return fmt.Errorf("%s server: token from %s has alg %q, kid %q (%v); want %q, %q", ar.alg, from, alg, kid, err, ar.alg, ar.kid)
	}
	ar.tokenBytes = len(tok)
	return nil
}

// runAlg runs, on a server signing with a, every scenario (primary) or
// those of -alg-scenarios.
func (rn *runner) runAlg(ctx context.Context, a *algSetup) (err error) {
	o, h := rn.o, rn.h
	ar := &algResult{alg: a.alg, kid: a.kid}
	rn.rep.algs = append(rn.rep.algs, ar)
	has := func(s string) bool { return o.scenarios[s] && (a.primary || o.algScenarios[s]) }
	// Before the server starts, so that nothing competes for the CPU.
	if ar.signNS, ar.verifyNS, err = measureToken(a, h.Role, min(max(o.duration/10, 20*time.Millisecond), time.Second)); err != nil {
		return fmt.Errorf("%s: in-process sign/verify: %w", a.alg, err)
	}
	if !slices.ContainsFunc(allScenarios, has) {
		return nil
	}
	srv, err := h.Start(ctx, "authd-"+a.alg, a.env...)
	if err != nil {
		return err
	}
	defer func() {
		if exited, why := srv.Exited(); err != nil && exited {
			err = fmt.Errorf("%w\nauthd (%s) exited during the run (%v); its log ends:\n%s", err, a.alg, why, srv.LogTail())
		}
		if p := srv.LogProblems(); p != "" {
			rn.rep.serverLogs = append(rn.rep.serverLogs, a.alg+" server: "+p)
		}
		if err := srv.Stop(); err != nil {
			h.Logf("stop authd (%s): %v", a.alg, err)
		}
	}()
	h.Logf("%s: authd serving on %s (pid %d)", a.alg, srv.Addr, srv.PID())
	probe := &cpuProbe{serverPID: srv.PID(), pool: h.Pool, dbName: h.DBName, app: serverApp}
	c := loadtest.NewClient(srv.Addr, 2*o.concurrency)
	defer c.Close()
	run := func(s string, setup iterFunc) (*result, error) {
		name := s
		if o.algScenarios[s] {
			name += " (" + a.alg + ")"
		}
		h.Logf("%s: %s, %d clients", name, o.duration, o.concurrency)
		r, err := runScenario(ctx, name, o, probe, setup)
		if err == nil {
			r.scenario = s
			rn.rep.results = append(rn.rep.results, r)
		}
		return r, err
	}

	if has("login") {
		var next atomic.Int64
		if _, err := run("login", each(func(ctx context.Context) error {
			_, err := c.Login(ctx, h.Users[int(next.Add(1)-1)%len(h.Users)])
			return err
		})); err != nil {
			return err
		}
	}
	if a.primary && o.scenarios["bcrypt"] {
		// What login could reach here if bcrypt were all it did.
		n := runtime.GOMAXPROCS(0)
		h.Logf("bcrypt ceiling: %s, %d goroutines", o.duration, n)
		r, err := probe.measure(ctx, fmt.Sprintf("bcrypt ceiling (cost %d, %d goroutines)", loadtest.BcryptCost, n), func() (*result, error) {
			return closedLoop(ctx, n, o.duration, func(context.Context, int) error {
				if !store.CheckPassword(h.Hash, loadtest.Password) {
					return errors.New("bcrypt compare failed")
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		r.scenario, r.noServer = "bcrypt", true
		rn.rep.results = append(rn.rep.results, r)
	}
	collected := make([][]string, o.concurrency) // refresh's access tokens: verify-fresh's, never verified
	if has("refresh") {
		r, err := run("refresh", func(ctx context.Context, w int) (func(context.Context) error, error) {
			s, err := c.Login(ctx, h.Users[w%len(h.Users)])
			return func(ctx context.Context) (err error) {
				if s.Refresh == "" { // the last refresh failed: a new session
					if s, err = c.Login(ctx, h.Users[w%len(h.Users)]); err != nil {
						return err
					}
				}
				if s, err = c.Refresh(ctx, s.Refresh); err == nil {
					collected[w] = append(collected[w], s.Access)
				}
				return err
			}, err
		})
		if err != nil {
			return err
		}
		if ar.refresh = r; a.primary && o.dbCeiling {
			if err := rn.ceilings(ctx, a, r); err != nil {
				return err
			}
		}
	}
	if has("logout") {
		if err := rn.logout(ctx, run, c); err != nil {
			return err
		}
	}
	access := ""
	if has("verify-jwt") || has("verify-cookie") || (a.primary && o.scenarios["storm"]) {
		s, err := c.Login(ctx, h.Users[0])
		if err != nil {
			return fmt.Errorf("log in for an access token: %w", err)
		}
		if access = s.Access; a.primary {
			rn.access = access
		}
		if err := ar.check(access, "login"); err != nil {
			return err
		}
	}
	if has("verify-apikey") && rn.apiKey == "" {
		h.Logf("creating a plan and an API key with authd apikey create")
		if rn.apiKey, err = h.APIKey(ctx); err != nil {
			return err
		}
	}
	for _, s := range []string{"bare", "verify-fresh", "verify-jwt", "verify-cookie", "verify-apikey"} {
		if !has(s) {
			continue
		}
		g := rn.gets(access)[s]
		var toks []string
		var next, ranOut atomic.Int64
		if s == "verify-fresh" {
			if toks, err = rn.freshTokens(ctx, c, ar, collected); err != nil {
				return err
			}
			if a.primary {
				rn.fresh = toks
			}
		}
		start := time.Now()
		r, err := run(s, each(func(ctx context.Context) error {
			value := g.value
			if toks != nil {
				i := next.Add(1) - 1
				if i == int64(len(toks)) {
					ranOut.Store(int64(time.Since(start)))
				}
				value = "Bearer " + toks[i%int64(len(toks))]
			}
			return c.Get(ctx, g.path, g.header, value, g.role)
		}))
		if err != nil {
			return err
		}
		switch s {
		case "verify-fresh":
			ar.fresh = r
			if reused := r.requests - int64(len(toks)); reused > 0 {
				ar.pool += fmt.Sprintf(": the pool ran out after %s and %d requests (%.1f%%) presented a token again, which authd may have answered from its cache: raise -verify-tokens",
					time.Duration(ranOut.Load()).Round(time.Millisecond), reused, 100*float64(reused)/float64(r.requests))
			} else {
				ar.pool += ", each request with a token of its own"
			}
		case "verify-jwt":
			ar.cached = r
		}
	}
	if a.primary && o.scenarios["storm"] {
		return rn.storm(ctx, srv.Addr, probe)
	}
	return nil
}

// get is a GET scenario; role is the X-Auth-Role a 200 must carry.
type get struct{ path, header, value, role string }

func (g get) do(ctx context.Context, c *loadtest.Client) error {
	return c.Get(ctx, g.path, g.header, g.value, g.role)
}

// gets are the GET scenarios; verify-fresh's value changes every request.
func (rn *runner) gets(access string) map[string]get {
	role := rn.h.Role
	return map[string]get{
		"bare":          {barePath, "", "", ""},
		"verify-fresh":  {verifyPath, "Authorization", "", role},
		"verify-jwt":    {verifyPath, "Authorization", "Bearer " + access, role},
		"verify-cookie": {verifyPath, "Cookie", "access_token=" + access, role},
		"verify-apikey": {verifyPath, "X-API-Key", rn.apiKey, role},
	}
}

// logout spends one pre-created session per request, and checks that the
// sessions revoked are the 204s counted.
func (rn *runner) logout(ctx context.Context, run func(string, iterFunc) (*result, error), c *loadtest.Client) error {
	n := rn.o.logoutSessions
	if n == 0 {
		// One UPDATE against refresh's UPDATE+INSERT: three times refresh's
		// rate is plenty, and COPY makes it cheap.
		rate := 5000.0
		if r := rn.rep.find("refresh"); r != nil {
			rate = max(3*r.rate(), rate)
		}
		n = int(math.Ceil(rate * rn.o.duration.Seconds()))
	}
	rn.h.Logf("logout: creating %d sessions", n)
	tokens, err := insertSessions(ctx, rn.h.Pool, rn.h.Users, int64(n), 1)
	if err != nil {
		return err
	}
	revoked := func() (n int64, err error) {
		err = rn.h.Pool.QueryRow(ctx, "select count(*) from auth.session where revoked_at is not null").Scan(&n)
		return n, err
	}
	before, err := revoked()
	if err != nil {
		return err
	}
	var next atomic.Int64
	r, err := run("logout", each(func(ctx context.Context) error {
		i := next.Add(1) - 1
		if i >= int64(len(tokens)) {
			return errStop
		}
		return c.Logout(ctx, loadtest.Session{Refresh: tokens[i]})
	}))
	if err != nil {
		return err
	}
	if next.Load() > int64(len(tokens)) {
		r.notes = append(r.notes, fmt.Sprintf("the %d pre-created sessions ran out after %s; raise -logout-sessions for a full-length run", n, r.elapsed.Round(time.Millisecond)))
	}
	after, err := revoked()
	if ok := r.requests - r.errors; err == nil && after-before != ok {
		r.fail(fmt.Sprintf("%d logouts answered 204 but %d sessions were revoked", ok, after-before))
	}
	return err
}

// freshTokens is verify-fresh's pool: refresh's access tokens, topped up
// to -verify-tokens by refreshing sessions inserted for it; each checked
// to carry the server's alg and kid, and to be new.
func (rn *runner) freshTokens(ctx context.Context, c *loadtest.Client, ar *algResult, collected [][]string) ([]string, error) {
	toks := slices.Concat(collected...)
	from := fmt.Sprintf("%d from the refresh run", len(toks))
	if need := rn.o.verifyTokens - len(toks); need > 0 {
		rn.h.Logf("verify-fresh (%s): minting %d access tokens", ar.alg, need)
		minted, err := mintTokens(ctx, rn.h, c, need, rn.o.concurrency)
		if err != nil {
			return nil, fmt.Errorf("verify-fresh (%s): %w", ar.alg, err)
		}
		toks = append(toks, minted...)
		from += fmt.Sprintf(", %d minted beforehand", len(minted))
	}
	seen := make(map[string]bool, len(toks))
	for _, t := range toks {
		if seen[t] {
			return nil, fmt.Errorf("verify-fresh (%s): authd handed out the same access token twice", ar.alg)
		}
		seen[t] = true
		if err := ar.check(t, "refresh"); err != nil {
			return nil, err
		}
	}
	ar.pool = fmt.Sprintf("%d distinct tokens (%s)", len(toks), from)
	return toks, nil
}
