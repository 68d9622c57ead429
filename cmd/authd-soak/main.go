// Command authd-soak runs mixed traffic against authd for a long time and
// reports, every -interval, what a leak or a slow degradation would show:
// requests, errors and p99 latency per kind of request over the interval,
// authd's resident memory (VmRSS in /proc/<pid>/status), its goroutines
// (go_goroutines from GET /metrics) and its database pool
// (authd_db_pool_connections). At the end it prints a summary and exits
// non-zero if any request failed.
//
//	go run ./cmd/authd-soak [-duration 30m] [-interval 1m] [-login-rate 2] [-refresh-rate 200] [-verify-rate 200] [-apikey-rate 200]
//
// Everything it touches is its own and on 127.0.0.1, as authd-bench does:
// a throwaway database (authd_soak_<random>) and role on the server at
// -admin-url (default $AUTHD_TEST_DATABASE_URL, else the local server), an
// authd binary built into a temporary directory, and a server on a free
// loopback port, all removed at exit (on error and Ctrl-C too).
//
// The traffic, each kind paced at its own rate (a missed slot is dropped,
// never made up in a burst):
//
//   - login: POST /rpc/login as one of -users users (bcrypt cost 10); the
//     new session joins a pool of live sessions;
//   - refresh: POST /rpc/refresh_token with a pooled session's refresh
//     cookie, which it then replaces with the rotated one (a session is
//     used by one request at a time, so no refresh is a reuse);
//   - logout: POST /rpc/logout with both cookies of a pooled session, as a
//     browser sends them; paced like login, so the pool keeps its size;
//   - verify-cookie: GET /auth/verify with a pooled session's access_token
//     cookie;
//   - verify-apikey: GET /auth/verify with an X-API-Key made with
//     `authd apikey create` for a plan too generous to trip.
//
// The server runs with AUTHD_PURGE_INTERVAL=-purge-interval (default 1m),
// so the background purge runs throughout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
)

const (
	bcryptCost   = 10
	soakPassword = "authd-soak-password"
	soakPlan     = "authd-soak"
	soakPlanRPM  = 100_000_000
)

// kinds are the requests the soak sends, in report order.
var kinds = []string{"login", "refresh", "logout", "verify-cookie", "verify-apikey"}

func main() { loadtest.Main("authd-soak", run) }

type options struct {
	duration, interval, purge time.Duration
	rates                     map[string]float64
	users, workers            int
	harness                   loadtest.Config // -admin-url, -authd
	logLevel                  string
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
	fs.StringVar(&o.logLevel, "server-log-level", "warn", "AUTHD_LOG_LEVEL of the server")
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
	env := loadtest.AuthdEnv(append([]string{
		"DATABASE_URL=" + h.DBURL,
		"JWT_SECRET=" + loadtest.NewSecret(),
		"AUTHD_BCRYPT_COST=" + strconv.Itoa(bcryptCost),
		"AUTHD_LOG_LEVEL=" + o.logLevel,
		"AUTHD_PURGE_INTERVAL=" + o.purge.String(),
	}, o.harness.ServerEnv...))
	if err := loadtest.Migrate(ctx, h.Bin, env); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, h.DBURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", h.DBName, err)
	}
	h.Defer(pool.Close)
	users := make([]string, o.users)
	for i := range users {
		users[i] = fmt.Sprintf("soak_%04d", i+1)
	}
	if _, err := loadtest.CreateUsers(ctx, pool, users, soakPassword, bcryptCost, h.Role); err != nil {
		return err
	}
	apiKey, err := loadtest.CreateAPIKey(ctx, h.Bin, env, pool, soakPlan, h.Role, soakPlanRPM)
	if err != nil {
		return err
	}

	srv, err := loadtest.StartServer(ctx, h.Bin, env, filepath.Join(h.Tmp, "authd.log"))
	if err != nil {
		return err
	}
	h.Defer(func() {
		if err := srv.Stop(); err != nil {
			logf("stop authd: %v", err)
		}
	})
	pid := srv.PID()
	logf("authd serving on %s (pid %d); %s of traffic, a line every %s", srv.Addr, pid, o.duration, o.interval)

	s := &soak{o: o, base: "http://" + srv.Addr, users: users, role: h.Role, apiKey: apiKey,
		client: loadtest.NewClient(o.workers * len(kinds)), sessions: make(chan *session, 100_000)}
	defer s.client.CloseIdleConnections()
	s.stats = map[string]*kindStats{}
	for _, k := range kinds {
		s.stats[k] = &kindStats{}
	}
	// A session per user (at most 50) before the clock starts, so refresh
	// and verify have sessions to use from the first second.
	for i := range min(50, len(users)) {
		if err := s.login(ctx, users[i]); err != nil {
			return fmt.Errorf("first logins: %w", err)
		}
	}

	fmt.Fprintf(stdout, "## authd-soak\n\n- %s, a line every %s; rates per second: login %g, refresh %g, logout %g, verify-cookie %g, verify-apikey %g; %d users; AUTHD_PURGE_INTERVAL=%s\n",
		o.duration, o.interval, o.rates["login"], o.rates["refresh"], o.rates["logout"], o.rates["verify-cookie"], o.rates["verify-apikey"], o.users, o.purge)
	fmt.Fprintf(stdout, "- p99 per kind over each interval (client side); RSS is authd's VmRSS; goroutines and pool from GET /metrics (pool: acquired+idle connections)\n\n")
	header := "| elapsed | requests | errors |"
	sep := "|---:|---:|---:|"
	for _, k := range kinds {
		header += " " + k + " p99 |"
		sep += "---:|"
	}
	fmt.Fprintln(stdout, header+" RSS | goroutines | pool |")
	fmt.Fprintln(stdout, sep+"---:|---:|---:|")

	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	for _, k := range kinds {
		if o.rates[k] <= 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.drive(runCtx, k)
		}()
	}

	sum := &summary{rssMin: math.MaxInt64}
	start := time.Now()
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	report := func() {
		line := s.interval(time.Since(start), pid, sum)
		fmt.Fprintln(stdout, line)
	}
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-tick.C:
			report()
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.pending() > 0 || time.Since(start)-sum.lastAt > o.interval/10 {
		report() // the tail of the run since the last line
	}
	s.writeSummary(stdout, time.Since(start), sum)
	if p := srv.LogProblems(); p != "" {
		fmt.Fprintf(stdout, "- server log: %s\n", p)
	}
	if sum.errors > 0 {
		return fmt.Errorf("%d request(s) failed", sum.errors)
	}
	if sum.samples == 0 {
		return errors.New("no interval was reported")
	}
	return nil
}

// ---- traffic -------------------------------------------------------------------

type session struct {
	refresh, access string
}

type soak struct {
	o              *options
	base           string
	client         *http.Client
	users          []string
	role, apiKey   string
	sessions       chan *session
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

// drive sends kind at its rate until ctx ends, at most o.workers at once;
// a slot that finds every worker busy, or no free session, is dropped, and
// so are the slots missed when more than a second behind.
func (s *soak) drive(ctx context.Context, kind string) {
	p := loadtest.Pacer{Rate: s.o.rates[kind], MaxInflight: s.o.workers, MaxLag: time.Second}
	s.skipped.Add(p.Run(ctx, time.Now(), 0, func(ctx context.Context) { s.one(ctx, kind) }))
}

// one sends one request of kind and records it; a request cut short by the
// end of the run is not counted.
func (s *soak) one(ctx context.Context, kind string) {
	var sess *session
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
		u := s.users[int(s.nextUser.Add(1)-1)%len(s.users)]
		err = s.login(ctx, u)
	case "refresh":
		var next, access string
		if next, access, err = s.refresh(ctx, sess.refresh); err == nil {
			sess.refresh, sess.access = next, access
		}
	case "logout":
		err = s.logout(ctx, sess)
	case "verify-cookie":
		err = s.verify(ctx, "Cookie", "access_token="+sess.access)
	case "verify-apikey":
		err = s.verify(ctx, "X-API-Key", s.apiKey)
	}
	d := time.Since(t0)
	if sess != nil && kind != "logout" {
		if err == nil || kind != "refresh" {
			s.sessions <- sess
		} // a failed refresh may have spent the token: drop the session
	}
	if ctx.Err() != nil && err != nil {
		return
	}
	s.stats[kind].cur.Add(d, err)
}

// do sends one request and wants status want; see loadtest.Send.
func (s *soak) do(ctx context.Context, method, path string, body []byte, header, value string, want int) (http.Header, error) {
	return loadtest.Send(ctx, s.client, s.base, loadtest.Request{Method: method, Path: path, Body: body, Header: header, Value: value, Want: want})
}

func (s *soak) login(ctx context.Context, user string) error {
	body, _ := json.Marshal(map[string]string{"user_": user, "pass": soakPassword})
	h, err := s.do(ctx, http.MethodPost, "/rpc/login", body, "", "", http.StatusNoContent)
	if err != nil {
		return err
	}
	refresh, access := loadtest.SessionCookies(h)
	if refresh == "" || access == "" {
		return errors.New("login: 204 without both cookies")
	}
	select {
	case s.sessions <- &session{refresh: refresh, access: access}:
	default: // the pool is full: let this one be
	}
	return nil
}

func (s *soak) refresh(ctx context.Context, tok string) (next, access string, err error) {
	h, err := s.do(ctx, http.MethodPost, loadtest.RefreshPath, nil, "Cookie", "refresh_token="+tok, http.StatusNoContent)
	if err != nil {
		return "", "", err
	}
	next, access = loadtest.SessionCookies(h)
	if next == "" || access == "" {
		return "", "", errors.New("refresh: 204 without both cookies")
	}
	return next, access, nil
}

func (s *soak) logout(ctx context.Context, sess *session) error {
	_, err := s.do(ctx, http.MethodPost, "/rpc/logout", nil, "Cookie", "access_token="+sess.access+"; refresh_token="+sess.refresh, http.StatusNoContent)
	return err
}

func (s *soak) verify(ctx context.Context, header, value string) error {
	h, err := s.do(ctx, http.MethodGet, "/auth/verify", nil, header, value, http.StatusOK)
	if err != nil {
		return err
	}
	if got := h.Get("X-Auth-Role"); got != s.role {
		return fmt.Errorf("GET /auth/verify: X-Auth-Role %q, want %q", got, s.role)
	}
	return nil
}

// ---- reporting -------------------------------------------------------------------

type summary struct {
	requests, errors       int64
	rssMin, rssMax, rssLst int64 // kB
	rssSeries              []string
	goroutinesMax          float64
	samples                int
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
		st.all = append(st.all, lat...)
		st.allErrs += e
		p99 := loadtest.Percentile(lat, 0.99)
		if len(lat) > 0 {
			st.intervalP99s = append(st.intervalP99s, p99)
		}
		reqs += int64(len(lat))
		errs += e
		if len(lat) == 0 {
			cells += " – |"
		} else {
			cells += " " + loadtest.MS(p99) + " |"
		}
	}
	sum.requests += reqs
	sum.errors += errs
	sum.samples++
	sum.lastAt = elapsed
	rss := "n/a"
	if kb, err := loadtest.VmRSS(pid); err == nil {
		sum.rssMin, sum.rssMax, sum.rssLst = min(sum.rssMin, kb), max(sum.rssMax, kb), kb
		rss = mb(kb)
		sum.rssSeries = append(sum.rssSeries, rss)
	}
	gor, pool := "n/a", "n/a"
	if m, err := s.scrape(); err == nil {
		if v, ok := m["go_goroutines"]; ok {
			gor = strconv.FormatFloat(v, 'f', 0, 64)
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
	fmt.Fprintf(w, "\n### Summary\n\n")
	fmt.Fprintf(w, "- %s: %d requests (%.0f/s), %d errors; %d slots dropped (every worker busy or no free session)\n",
		elapsed.Round(time.Second), sum.requests, float64(sum.requests)/elapsed.Seconds(), sum.errors, s.skipped.Load())
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| kind | requests | errors | p50 | p99 | max | worst interval p99 |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, k := range kinds {
		st := s.stats[k]
		worst := time.Duration(0)
		for _, p := range st.intervalP99s {
			worst = max(worst, p)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s |\n", k, len(st.all), st.allErrs,
			loadtest.MS(loadtest.Percentile(st.all, 0.5)), loadtest.MS(loadtest.Percentile(st.all, 0.99)), loadtest.MS(loadtest.Percentile(st.all, 1)), loadtest.MS(worst))
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

// scrape reads GET /metrics, giving it 5 s.
func (s *soak) scrape() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return loadtest.ScrapeMetrics(ctx, s.client, s.base)
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }
