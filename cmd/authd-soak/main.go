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
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"
)

const (
	defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	adminURLEnv     = "AUTHD_TEST_DATABASE_URL"
	bcryptCost      = 10
	soakPassword    = "authd-soak-password"
	refreshPath     = "/rpc/refresh_token"
	soakPlan        = "authd-soak"
	soakPlanRPM     = 100_000_000
)

// kinds are the requests the soak sends, in report order.
var kinds = []string{"login", "refresh", "logout", "verify-cookie", "verify-apikey"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "authd-soak: interrupted; cleaned up")
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "authd-soak: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	duration, interval, purge time.Duration
	rates                     map[string]float64
	users, workers            int
	adminURL, authd, logLevel string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("authd-soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	adminDefault := defaultAdminURL
	if v := os.Getenv(adminURLEnv); v != "" {
		adminDefault = v
	}
	o := &options{rates: map[string]float64{}}
	fs.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to run the traffic")
	fs.DurationVar(&o.interval, "interval", time.Minute, "how often to print a line")
	fs.DurationVar(&o.purge, "purge-interval", time.Minute, "the server's AUTHD_PURGE_INTERVAL")
	login := fs.Float64("login-rate", 2, "logins per second (and logouts: the session pool keeps its size)")
	refresh := fs.Float64("refresh-rate", 200, "refreshes per second")
	verify := fs.Float64("verify-rate", 200, "GET /auth/verify with the access cookie, per second")
	apikey := fs.Float64("apikey-rate", 200, "GET /auth/verify with an API key, per second")
	fs.IntVar(&o.users, "users", 50, "users to create; logins cycle through them")
	fs.IntVar(&o.workers, "workers", 16, "concurrent requests at most, per kind")
	fs.StringVar(&o.adminURL, "admin-url", adminDefault, "superuser postgres:// URL of the server to create the throwaway database on (default from $"+adminURLEnv+")")
	fs.StringVar(&o.authd, "authd", "", "prebuilt authd binary; empty builds ./cmd/authd")
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

	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	tmp, err := os.MkdirTemp("", "authd-soak-")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = os.RemoveAll(tmp) })
	bin := o.authd
	if bin == "" {
		logf("building ./cmd/authd")
		if bin, err = buildAuthd(ctx, tmp); err != nil {
			return err
		}
	}

	suffix := randomHex(6)
	dbName, role := "authd_soak_"+suffix, "authd_soak_role_"+suffix
	dbURL, err := pgURL(o.adminURL, func(u *url.URL, q url.Values) { u.Path = "/" + dbName })
	if err != nil {
		return err
	}
	if err := adminExec(ctx, o.adminURL, "create database "+pgx.Identifier{dbName}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", dbName, err)
	}
	cleanups = append(cleanups, func() {
		if err := adminExec(context.Background(), o.adminURL, "drop database if exists "+pgx.Identifier{dbName}.Sanitize()+" with (force)"); err != nil {
			logf("cleanup: drop database %s: %v", dbName, err)
		}
	})
	if err := adminExec(ctx, o.adminURL, "create role "+pgx.Identifier{role}.Sanitize()+" nologin"); err != nil {
		return fmt.Errorf("create role %s: %w", role, err)
	}
	cleanups = append(cleanups, func() {
		if err := adminExec(context.Background(), o.adminURL, "drop role if exists "+pgx.Identifier{role}.Sanitize()); err != nil {
			logf("cleanup: drop role %s: %v", role, err)
		}
	})
	logf("database %s, role %s", dbName, role)

	secret := make([]byte, 48)
	_, _ = rand.Read(secret)
	env := authdEnv([]string{
		"DATABASE_URL=" + dbURL,
		"JWT_SECRET=" + base64.RawURLEncoding.EncodeToString(secret),
		"AUTHD_BCRYPT_COST=" + strconv.Itoa(bcryptCost),
		"AUTHD_LOG_LEVEL=" + o.logLevel,
		"AUTHD_PURGE_INTERVAL=" + o.purge.String(),
	})
	cmd := exec.CommandContext(ctx, bin, "migrate", "up")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("authd migrate up: %v\n%s", err, out)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, pool.Close)
	hash, err := bcrypt.GenerateFromPassword([]byte(soakPassword), bcryptCost)
	if err != nil {
		return err
	}
	users := make([]string, o.users)
	for i := range users {
		users[i] = fmt.Sprintf("soak_%04d", i+1)
	}
	if _, err := pool.Exec(ctx, `insert into auth.user (username, password_hash, role)
		select u, $2, $3 from unnest($1::text[]) u`, users, string(hash), role); err != nil {
		return fmt.Errorf("create users: %w", err)
	}
	if _, err := pool.Exec(ctx, `insert into auth.plan (name, role, requests_per_minute) values ($1, $2, $3)`, soakPlan, role, soakPlanRPM); err != nil {
		return fmt.Errorf("create plan: %w", err)
	}
	apiKey, err := createAPIKey(ctx, bin, env)
	if err != nil {
		return err
	}

	srv, err := startServer(ctx, bin, env, filepath.Join(tmp, "authd.log"))
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		if err := srv.stop(); err != nil {
			logf("stop authd: %v", err)
		}
	})
	pid := srv.cmd.Process.Pid
	logf("authd serving on %s (pid %d); %s of traffic, a line every %s", srv.addr, pid, o.duration, o.interval)

	s := &soak{o: o, base: "http://" + srv.addr, users: users, role: role, apiKey: apiKey,
		client: newClient(o.workers * len(kinds)), sessions: make(chan *session, 100_000)}
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
	if p := serverLogProblems(srv.logPath); p != "" {
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

type kindStats struct {
	mu           sync.Mutex
	lat          []time.Duration // this interval
	errs         int64           // this interval
	all          []time.Duration // the whole run
	allErrs      int64
	errSamples   []string
	intervalP99s []time.Duration
}

func (k *kindStats) record(d time.Duration, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lat = append(k.lat, d)
	if err != nil {
		k.errs++
		if len(k.errSamples) < 5 {
			k.errSamples = append(k.errSamples, err.Error())
		}
	}
}

// drive sends kind at its rate until ctx ends, at most o.workers at once;
// a slot that finds every worker busy, or no free session, is dropped.
func (s *soak) drive(ctx context.Context, kind string) {
	every := time.Duration(float64(time.Second) / s.o.rates[kind])
	sem := make(chan struct{}, s.o.workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.one(ctx, kind)
			}()
		default:
			s.skipped.Add(1)
		}
		next = next.Add(every)
		if now := time.Now(); next.Before(now.Add(-time.Second)) {
			next = now // far behind: drop the missed slots
		}
		timer.Reset(time.Until(next))
	}
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
	s.stats[kind].record(d, err)
}

func newClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (s *soak) do(ctx context.Context, method, path string, body []byte, header, value string, want int) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if header != "" {
		req.Header.Set(header, value)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(msg))
	}
	return resp, nil
}

// cookies returns the refresh token (for the refresh path) and the access
// token an answer set.
func cookies(resp *http.Response) (refresh, access string) {
	for _, c := range resp.Cookies() {
		switch {
		case c.Name == "refresh_token" && c.Path == refreshPath && c.Value != "":
			refresh = c.Value
		case c.Name == "access_token" && c.Path == "/" && c.Value != "":
			access = c.Value
		}
	}
	return refresh, access
}

func (s *soak) login(ctx context.Context, user string) error {
	body, _ := json.Marshal(map[string]string{"user_": user, "pass": soakPassword})
	resp, err := s.do(ctx, http.MethodPost, "/rpc/login", body, "", "", http.StatusNoContent)
	if err != nil {
		return err
	}
	refresh, access := cookies(resp)
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
	resp, err := s.do(ctx, http.MethodPost, refreshPath, nil, "Cookie", "refresh_token="+tok, http.StatusNoContent)
	if err != nil {
		return "", "", err
	}
	next, access = cookies(resp)
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
	resp, err := s.do(ctx, http.MethodGet, "/auth/verify", nil, header, value, http.StatusOK)
	if err != nil {
		return err
	}
	if got := resp.Header.Get("X-Auth-Role"); got != s.role {
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
		st := s.stats[k]
		st.mu.Lock()
		n += len(st.lat)
		st.mu.Unlock()
	}
	return n
}

// interval closes the current interval and formats its line.
func (s *soak) interval(elapsed time.Duration, pid int, sum *summary) string {
	var reqs, errs int64
	cells := ""
	for _, k := range kinds {
		st := s.stats[k]
		st.mu.Lock()
		lat, e := st.lat, st.errs
		st.lat, st.errs = nil, 0
		st.all = append(st.all, lat...)
		st.allErrs += e
		p99 := percentile(lat, 0.99)
		if len(lat) > 0 {
			st.intervalP99s = append(st.intervalP99s, p99)
		}
		st.mu.Unlock()
		reqs += int64(len(lat))
		errs += e
		if len(lat) == 0 {
			cells += " – |"
		} else {
			cells += " " + ms(p99) + " |"
		}
	}
	sum.requests += reqs
	sum.errors += errs
	sum.samples++
	sum.lastAt = elapsed
	rss := "n/a"
	if kb, err := vmRSS(pid); err == nil {
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
		st.mu.Lock()
		worst := time.Duration(0)
		for _, p := range st.intervalP99s {
			worst = max(worst, p)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s |\n", k, len(st.all), st.allErrs,
			ms(percentile(st.all, 0.5)), ms(percentile(st.all, 0.99)), ms(percentile(st.all, 1)), ms(worst))
		st.mu.Unlock()
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
		for _, e := range s.stats[k].errSamples {
			fmt.Fprintf(w, "- %s error: %s\n", k, e)
		}
	}
}

// scrape reads GET /metrics into series → value, the series written as in
// the exposition ("name" or "name{labels}").
func (s *soak) scrape() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/metrics", nil)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// vmRSS is pid's resident set in kB.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS line")
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// ---- the authd process (as in cmd/authd-bench) --------------------------------------

func buildAuthd(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build authd: %w (or pass -authd)", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", errors.New("build authd: not inside the authd module (run from the repository, or pass -authd)")
	}
	bin := filepath.Join(dir, "authd")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/authd")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build authd: %v\n%s", err, out)
	}
	return bin, nil
}

// authdEnv is this process's environment without any authd, JWT or
// PostgREST setting, plus set.
func authdEnv(set []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AUTHD_") || strings.HasPrefix(k, "JWT_") || strings.HasPrefix(k, "PGRST_") || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, set...)
}

type server struct {
	cmd     *exec.Cmd
	addr    string
	logPath string
	exited  chan struct{}
	waitErr error
}

func startServer(ctx context.Context, bin string, env []string, logPath string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(slices.Clone(env), "AUTHD_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start authd: %w", err)
	}
	s := &server{cmd: cmd, addr: addr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(s.exited)
	}()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := client.Get("http://" + addr + "/healthz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		var why string
		select {
		case <-s.exited:
			why = fmt.Sprintf("authd exited (%v)", s.waitErr)
		case <-ctx.Done():
			why = ctx.Err().Error()
		case <-time.After(50 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
			why = "GET /healthz did not answer 200 within 30s"
		}
		_ = s.stop()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("start authd: %s\n%s", why, b)
	}
}

func (s *server) stop() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("authd did not stop within 15s of SIGTERM; killed")
	}
}

func serverLogProblems(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var n int
	var first string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			if n == 0 {
				first = line
			}
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("authd logged %d warning/error line(s); the first: %s", n, first)
}

// createAPIKey makes a key of soakPlan with the CLI and returns it.
func createAPIKey(ctx context.Context, bin string, env []string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "apikey", "create", "--plan", soakPlan)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("authd apikey create: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if k, ok := strings.CutPrefix(line, "key:"); ok && strings.HasPrefix(strings.TrimSpace(k), "authd_") {
			return strings.TrimSpace(k), nil
		}
	}
	return "", errors.New("authd apikey create: no \"key: authd_…\" line in its output")
}

func pgURL(base string, mutate func(u *url.URL, q url.Values)) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("-admin-url: want a postgres:// URL")
	}
	q := u.Query()
	mutate(u, q)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func adminExec(ctx context.Context, adminURL, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to -admin-url (set %s or -admin-url to a superuser URL): %w", adminURLEnv, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
