// Command authd-soak runs mixed traffic against authd for a long time and
// reports, every -interval, what a leak or a slow degradation would show:
// requests, errors and p99 latency per kind of request over the interval,
// authd's resident memory (VmRSS), its goroutines (go_goroutines from GET
// /metrics) and its database pool (authd_db_pool_connections). At the end
// it prints a summary and exits non-zero if any request failed.
//
//	go run ./cmd/authd-soak [-duration 30m] [-interval 1m] [-login-rate 2] [-refresh-rate 200] [-verify-rate 200] [-apikey-rate 200]
//
// The harness (cmd/internal/loadtest) gives it, as it gives authd-bench, a
// throwaway database and role on -admin-url, an authd built from this
// checkout and a server on a free loopback port, all removed at exit.
//
// The traffic, each kind paced at its own rate (a missed slot is dropped,
// never made up in a burst): login as one of -users users, whose session
// joins a pool; refresh of a pooled session, which takes the rotated
// cookies (a session is used by one request at a time, so no refresh is a
// reuse); logout of a pooled session with both cookies, as a browser
// sends them, paced like login so the pool keeps its size; verify-cookie,
// GET /auth/verify with a pooled session's access cookie; verify-apikey,
// the same with an X-API-Key of a plan too generous to trip. The server
// runs with AUTHD_PURGE_INTERVAL=-purge-interval, so the purge runs
// throughout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"authd/cmd/internal/loadtest"
)

// kinds are the requests the soak sends, in report order.
var kinds = []string{"login", "refresh", "logout", "verify-cookie", "verify-apikey"}

func main() { loadtest.Main("authd-soak", run) }

type options struct {
	duration, interval, purge time.Duration
	rates                     map[string]float64
	users, workers            int
	harness                   loadtest.Config
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("authd-soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{rates: map[string]float64{}, harness: loadtest.Config{Name: "authd-soak"}}
	fs.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to run the traffic")
	fs.DurationVar(&o.interval, "interval", time.Minute, "how often to print a line")
	fs.DurationVar(&o.purge, "purge-interval", time.Minute, "the server's AUTHD_PURGE_INTERVAL")
	login := fs.Float64("login-rate", 2, "logins per second (and logouts: the session pool keeps its size)")
	refresh := fs.Float64("refresh-rate", 200, "refreshes per second")
	verify := fs.Float64("verify-rate", 200, "GET /auth/verify with the access cookie, per second")
	apikey := fs.Float64("apikey-rate", 200, "GET /auth/verify with an API key, per second")
	fs.IntVar(&o.users, "users", 50, "users to create; logins cycle through them")
	fs.IntVar(&o.workers, "workers", 16, "concurrent requests at most, per kind")
	o.harness.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.rates["login"], o.rates["logout"] = *login, *login
	o.rates["refresh"], o.rates["verify-cookie"], o.rates["verify-apikey"] = *refresh, *verify, *apikey
	switch {
	case o.duration <= 0 || o.interval <= 0:
		return nil, errors.New("-duration and -interval must be positive")
	case o.users < 1 || o.workers < 1:
		return nil, errors.New("-users and -workers must be at least 1")
	case *login <= 0:
		return nil, errors.New("-login-rate must be positive: the other kinds use its sessions")
	case *refresh < 0 || *verify < 0 || *apikey < 0:
		return nil, errors.New("rates must not be negative")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "authd-soak: "+format+"\n", a...) }
	o.harness.Logf = logf
	h, err := loadtest.Setup(ctx, o.harness)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.Seed(ctx, o.users, "AUTHD_PURGE_INTERVAL="+o.purge.String()); err != nil {
		return err
	}
	apiKey, err := h.APIKey(ctx)
	if err != nil {
		return err
	}
	srv, err := h.Start(ctx, "authd")
	if err != nil {
		return err
	}
	h.Defer(func() {
		if err := srv.Stop(); err != nil {
			logf("stop authd: %v", err)
		}
	})
	logf("authd serving on %s (pid %d); %s of traffic, a line every %s", srv.Addr, srv.PID(), o.duration, o.interval)

	s := &soak{o: o, h: h, apiKey: apiKey, client: loadtest.NewClient(srv.Addr, o.workers*len(kinds)),
		sessions: make(chan loadtest.Session, 100_000), stats: map[string]*kindStats{}}
	defer s.client.Close()
	for _, k := range kinds {
		s.stats[k] = &kindStats{}
	}
	// A session per user (at most 50) before the clock starts, so refresh
	// and verify have sessions to use from the first second.
	for _, u := range h.Users[:min(50, len(h.Users))] {
		if err := s.login(ctx, u); err != nil {
			return fmt.Errorf("first logins: %w", err)
		}
	}

	fmt.Fprintf(stdout, "## authd-soak\n\n- %s, a line every %s; rates per second: login %g, refresh %g, logout %g, verify-cookie %g, verify-apikey %g; %d users; AUTHD_PURGE_INTERVAL=%s\n",
		o.duration, o.interval, o.rates["login"], o.rates["refresh"], o.rates["logout"], o.rates["verify-cookie"], o.rates["verify-apikey"], o.users, o.purge)
	fmt.Fprintf(stdout, "- p99 per kind over each interval (client side); RSS is authd's VmRSS; goroutines and pool from GET /metrics (pool: acquired+idle connections)\n\n")
	fmt.Fprintf(stdout, "| elapsed | requests | errors | %s p99 | RSS | goroutines | pool |\n", strings.Join(kinds, " p99 | "))
	fmt.Fprintln(stdout, "|---:|---:|---:|"+strings.Repeat("---:|", len(kinds))+"---:|---:|---:|")

	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	for _, k := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A slot that finds every worker busy, or no free session, is
			// dropped, and so are the slots missed when more than a second
			// behind.
			p := loadtest.Pacer{Rate: o.rates[k], MaxInflight: o.workers, MaxLag: time.Second}
			s.skipped.Add(p.Run(runCtx, time.Now(), 0, func(ctx context.Context) { s.one(ctx, k) }))
		}()
	}
	sum := &summary{}
	start := time.Now()
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-runCtx.Done():
			done = true
		case <-tick.C:
			fmt.Fprintln(stdout, s.interval(time.Since(start), srv.PID(), sum))
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.pending() > 0 || time.Since(start)-sum.lastAt > o.interval/10 {
		fmt.Fprintln(stdout, s.interval(time.Since(start), srv.PID(), sum)) // the tail since the last line
	}
	s.writeSummary(stdout, time.Since(start), sum)
	if p := srv.LogProblems(); p != "" {
		fmt.Fprintf(stdout, "- server log: %s\n", p)
	}
	if sum.errors > 0 {
		return fmt.Errorf("%d request(s) failed", sum.errors)
	}
	return nil
}

type soak struct {
	o              *options
	h              *loadtest.Harness
	client         *loadtest.Client
	apiKey         string
	sessions       chan loadtest.Session
	nextUser       atomic.Int64
	skipped        atomic.Int64 // slots dropped: all workers busy or no free session
	stats          map[string]*kindStats
	scrapeFailures int
}

// kindStats are one kind's requests: the current interval's in cur (its
// error samples cover the run), the whole run's in the rest, which only
// the reporting goroutine touches.
type kindStats struct {
	cur          loadtest.Latencies
	all          []time.Duration
	allErrs      int64
	intervalP99s []time.Duration
}

// one sends one request of kind and records it; a request cut short by the
// end of the run is not counted.
func (s *soak) one(ctx context.Context, kind string) {
	var sess loadtest.Session
	if kind != "login" && kind != "verify-apikey" {
		select {
		case sess = <-s.sessions:
		default:
			s.skipped.Add(1)
			return
		}
	}
	t0 := time.Now()
	var err error
	switch kind {
	case "login":
		err = s.login(ctx, s.h.Users[int(s.nextUser.Add(1)-1)%len(s.h.Users)])
	case "refresh":
		sess, err = s.client.Refresh(ctx, sess.Refresh)
	case "logout":
		err = s.client.Logout(ctx, sess)
	case "verify-cookie":
		err = s.client.Get(ctx, "/auth/verify", "Cookie", "access_token="+sess.Access, s.h.Role)
	case "verify-apikey":
		err = s.client.Get(ctx, "/auth/verify", "X-API-Key", s.apiKey, s.h.Role)
	}
	d := time.Since(t0)
	// A failed refresh may have spent the token: drop the session.
	if sess.Refresh != "" && kind != "logout" && (err == nil || kind != "refresh") {
		s.sessions <- sess
	}
	if ctx.Err() != nil && err != nil {
		return
	}
	s.stats[kind].cur.Add(d, err)
}

func (s *soak) login(ctx context.Context, user string) error {
	sess, err := s.client.Login(ctx, user)
	if err == nil {
		select {
		case s.sessions <- sess:
		default: // the pool is full: let this one be
		}
	}
	return err
}

type summary struct {
	requests, errors       int64
	rssMin, rssMax, rssLst uint64
	rssSeries              []string
	goroutinesMax          float64
	lastAt                 time.Duration
}

func (s *soak) pending() int {
	n := 0
	for _, k := range kinds {
		n += s.stats[k].cur.Len()
	}
	return n
}

// interval closes the current interval and formats its line.
func (s *soak) interval(elapsed time.Duration, pid int, sum *summary) string {
	var reqs, errs int64
	cells := ""
	for _, k := range kinds {
		st := s.stats[k]
		lat, e := st.cur.Take()
		st.all, st.allErrs = append(st.all, lat...), st.allErrs+e
		reqs, errs = reqs+int64(len(lat)), errs+e
		if len(lat) == 0 {
			cells += " – |"
			continue
		}
		p99 := loadtest.Percentile(lat, 0.99)
		st.intervalP99s = append(st.intervalP99s, p99)
		cells += " " + loadtest.MS(p99) + " |"
	}
	sum.requests, sum.errors, sum.lastAt = sum.requests+reqs, sum.errors+errs, elapsed
	rss := "n/a"
	if b, err := loadtest.RSS(pid); err == nil {
		if sum.rssMin == 0 {
			sum.rssMin = b
		}
		sum.rssMin, sum.rssMax, sum.rssLst = min(sum.rssMin, b), max(sum.rssMax, b), b
		rss = mb(b)
		sum.rssSeries = append(sum.rssSeries, rss)
	}
	gor, pool := "n/a", "n/a"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if m, err := s.client.Metrics(ctx); err == nil {
		if v, ok := m["go_goroutines"]; ok {
			gor = fmt.Sprintf("%.0f", v)
			sum.goroutinesMax = max(sum.goroutinesMax, v)
		}
		acq, ok1 := m[`authd_db_pool_connections{state="acquired"}`]
		idle, ok2 := m[`authd_db_pool_connections{state="idle"}`]
		if ok1 && ok2 {
			pool = fmt.Sprintf("%.0f (%.0f busy)", acq+idle, acq)
		}
	} else {
		s.scrapeFailures++
	}
	return fmt.Sprintf("| %s | %d | %d |%s %s | %s | %s |", elapsed.Round(time.Second), reqs, errs, cells, rss, gor, pool)
}

func (s *soak) writeSummary(w io.Writer, elapsed time.Duration, sum *summary) {
	fmt.Fprintf(w, "\n### Summary\n\n- %s: %d requests (%.0f/s), %d errors; %d slots dropped (every worker busy or no free session)\n\n",
		elapsed.Round(time.Second), sum.requests, float64(sum.requests)/elapsed.Seconds(), sum.errors, s.skipped.Load())
	fmt.Fprintln(w, "| kind | requests | errors | p50 | p99 | max | worst interval p99 |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, k := range kinds {
		st := s.stats[k]
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s |\n", k, len(st.all), st.allErrs,
			loadtest.MS(loadtest.Percentile(st.all, 0.5)), loadtest.MS(loadtest.Percentile(st.all, 0.99)),
			loadtest.MS(loadtest.Percentile(st.all, 1)), loadtest.MS(loadtest.Percentile(st.intervalP99s, 1)))
	}
	fmt.Fprintln(w)
	if sum.rssMax > 0 {
		fmt.Fprintf(w, "- authd RSS: min %s, max %s, last %s; over time: %s\n", mb(sum.rssMin), mb(sum.rssMax), mb(sum.rssLst), strings.Join(sum.rssSeries, ", "))
	}
	fmt.Fprintf(w, "- goroutines: at most %.0f\n", sum.goroutinesMax)
	if s.scrapeFailures > 0 {
		fmt.Fprintf(w, "- GET /metrics failed %d time(s)\n", s.scrapeFailures)
	}
	for _, k := range kinds {
		for _, e := range s.stats[k].cur.Samples() {
			fmt.Fprintf(w, "- %s error: %s\n", k, e)
		}
	}
}

func mb(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
