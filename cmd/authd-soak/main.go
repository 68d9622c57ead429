// Command authd-soak runs mixed traffic against authd for a long time and
// reports, every -interval, what a leak or a slow degradation would show:
// requests, errors and p99 per kind over the interval, authd's VmRSS, its
// goroutines and its database pool (from GET /metrics); at the end a
// summary, and a non-zero exit if any request failed.
//
//	go run ./cmd/authd-soak [-duration 30m] [-interval 1m] [-login-rate 2] [-refresh-rate 200] [-verify-rate 200] [-apikey-rate 200]
//
// Each kind is paced at its own rate (a missed slot is dropped, never made
// up in a burst): login, whose session joins a pool; refresh of a pooled
// session (used by one request at a time, so never a reuse); logout with
// both cookies, at login's rate so the pool keeps its size; GET
// /auth/verify with a session's access cookie, and with an API key. The
// purge runs throughout (AUTHD_PURGE_INTERVAL=-purge-interval).
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

	"github.com/prometheus/procfs"

	"authd/cmd/internal/loadtest"
)

// kinds are the requests the soak sends, in report order.
var kinds = []string{"login", "refresh", "logout", "verify-cookie", "verify-apikey"}

func main() { loadtest.Main("authd-soak", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("authd-soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := loadtest.Config{Name: "authd-soak", Users: 50, Log: stderr}
	cfg.AddFlags(fs)
	duration := fs.Duration("duration", 30*time.Minute, "how long to run the traffic")
	interval := fs.Duration("interval", time.Minute, "how often to print a line")
	purge := fs.Duration("purge-interval", time.Minute, "the server's AUTHD_PURGE_INTERVAL")
	workers := fs.Int("workers", 16, "concurrent requests at most, per kind")
	rates := map[string]*float64{
		"login":         fs.Float64("login-rate", 2, "logins per second (and logouts: the session pool keeps its size)"),
		"refresh":       fs.Float64("refresh-rate", 200, "refreshes per second"),
		"verify-cookie": fs.Float64("verify-rate", 200, "GET /auth/verify with the access cookie, per second"),
		"verify-apikey": fs.Float64("apikey-rate", 200, "GET /auth/verify with an API key, per second"),
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	rates["logout"] = rates["login"]
	switch {
	case fs.NArg() != 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case *duration <= 0 || *interval <= 0 || *workers < 1:
		return errors.New("-duration, -interval and -workers must be positive")
	case *rates["login"] <= 0:
		return errors.New("-login-rate must be positive: the other kinds use its sessions")
	case *rates["refresh"] < 0 || *rates["verify-cookie"] < 0 || *rates["verify-apikey"] < 0:
		return errors.New("rates must not be negative")
	}

	h, err := loadtest.Setup(ctx, cfg, "AUTHD_PURGE_INTERVAL="+purge.String())
	if err != nil {
		return err
	}
	defer h.Close()
	s := &soak{h: h, sessions: make(chan loadtest.Session, 100_000), stats: map[string]*kindStats{}}
	if s.apiKey, err = h.APIKey(ctx); err != nil {
		return err
	}
	srv, err := h.Start(ctx, "authd")
	if err != nil {
		return err
	}
	defer srv.Stop()
	h.Logf("authd serving on %s (pid %d); %s of traffic, a line every %s", srv.Addr, srv.PID(), *duration, *interval)
	s.c, s.pid = loadtest.NewClient(srv.Addr, *workers*len(kinds)), srv.PID()
	defer s.c.Close()
	head, perSecond := []string{"elapsed", "requests", "errors"}, []string{}
	for _, k := range kinds {
		s.stats[k] = &kindStats{}
		head, perSecond = append(head, k+" p99"), append(perSecond, fmt.Sprintf("%s %g", k, *rates[k]))
	}
	// A session per user (at most 50) first, for refresh and verify.
	for _, u := range h.Users[:min(50, len(h.Users))] {
		if err := s.login(ctx, u); err != nil {
			return fmt.Errorf("first logins: %w", err)
		}
	}

	fmt.Fprintf(stdout, "## authd-soak\n\n- %s, a line every %s; rates per second: %s; %d users; AUTHD_PURGE_INTERVAL=%s\n", *duration, *interval, strings.Join(perSecond, ", "), len(h.Users), *purge)
	fmt.Fprintf(stdout, "- p99 per kind over each interval (client side); RSS is authd's VmRSS; goroutines and pool (acquired+idle connections) from GET /metrics\n\n")
	row := loadtest.Table(stdout, append(head, "RSS", "goroutines", "pool")...)
	runCtx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	var wg sync.WaitGroup
	s.start = time.Now()
	for _, k := range kinds {
		// A slot that finds every worker busy, or no free session, is
		// dropped, and so are those missed when more than a second behind.
		p := loadtest.Pacer{Rate: *rates[k], MaxInflight: *workers, MaxLag: time.Second}
		wg.Go(func() { s.skipped.Add(p.Run(ctx, s.start, *duration, func(ctx context.Context) { s.one(ctx, k) })) })
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for runCtx.Err() == nil {
		select {
		case <-runCtx.Done():
		case <-tick.C:
			row(s.interval()...)
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	row(s.interval()...) // the tail since the last line
	s.summary(stdout, time.Since(s.start), srv.LogProblems())
	if s.errors > 0 {
		return fmt.Errorf("%d request(s) failed", s.errors)
	}
	return nil
}

type soak struct {
	h        *loadtest.Harness
	c        *loadtest.Client
	apiKey   string
	pid      int
	start    time.Time
	sessions chan loadtest.Session
	nextUser atomic.Int64
	skipped  atomic.Int64 // slots dropped: all workers busy or no free session
	stats    map[string]*kindStats

	// The whole run's, touched only by the reporting goroutine.
	requests, errors int
	rss              []string
}

// kindStats are one kind's requests: this interval's in cur (its error
// samples cover the run), the whole run's in the rest.
type kindStats struct {
	cur   loadtest.Latencies
	all   []time.Duration
	errs  int
	worst time.Duration // the highest interval p99
}

// one sends one request of kind and records it.
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
		sess, err = s.c.Refresh(ctx, sess.Refresh)
	case "logout":
		err = s.c.Logout(ctx, sess)
	case "verify-cookie":
		err = s.c.Get(ctx, "/auth/verify", "Cookie", "access_token="+sess.Access, s.h.Role)
	case "verify-apikey":
		err = s.c.Get(ctx, "/auth/verify", "X-API-Key", s.apiKey, s.h.Role)
	}
	d := time.Since(t0)
	// A failed refresh may have spent the token: drop the session.
	if sess.Refresh != "" && kind != "logout" && (err == nil || kind != "refresh") {
		s.sessions <- sess
	}
	s.stats[kind].cur.Add(d, err)
}

func (s *soak) login(ctx context.Context, user string) error {
	sess, err := s.c.Login(ctx, user)
	if err == nil {
		select {
		case s.sessions <- sess:
		default: // the pool is full
		}
	}
	return err
}

// interval closes the current interval and returns its row.
func (s *soak) interval() []any {
	cells := []any{time.Since(s.start).Round(time.Second), 0, 0}
	var reqs, errs int
	for _, k := range kinds {
		st := s.stats[k]
		lat, e := st.cur.Take()
		st.all, st.errs = append(st.all, lat...), st.errs+int(e)
		reqs, errs = reqs+len(lat), errs+int(e)
		if len(lat) == 0 {
			cells = append(cells, "–")
			continue
		}
		p99 := loadtest.Percentile(lat, 0.99)
		st.worst = max(st.worst, p99)
		cells = append(cells, loadtest.MS(p99))
	}
	cells[1], cells[2] = reqs, errs
	s.requests, s.errors = s.requests+reqs, s.errors+errs
	rss, gor, pool := "n/a", "n/a", "n/a"
	if p, err := procfs.NewProc(s.pid); err == nil {
		if st, err := p.NewStatus(); err == nil {
			rss = fmt.Sprintf("%.1f MB", float64(st.VmRSS)/(1<<20))
			s.rss = append(s.rss, rss)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if m, err := s.c.Metrics(ctx); err == nil {
		acq, idle := m[`authd_db_pool_connections{state="acquired"}`], m[`authd_db_pool_connections{state="idle"}`]
		gor, pool = fmt.Sprintf("%.0f", m["go_goroutines"]), fmt.Sprintf("%.0f (%.0f busy)", acq+idle, acq)
	}
	return append(cells, rss, gor, pool)
}

func (s *soak) summary(w io.Writer, elapsed time.Duration, serverLog string) {
	fmt.Fprintf(w, "\n### Summary\n\n- %s: %d requests (%.0f/s), %d errors; %d slots dropped (every worker busy or no free session)\n\n",
		elapsed.Round(time.Second), s.requests, float64(s.requests)/elapsed.Seconds(), s.errors, s.skipped.Load())
	row := loadtest.Table(w, "kind", "requests", "errors", "p50", "p99", "max", "worst interval p99")
	for _, k := range kinds {
		st := s.stats[k]
		row(k, len(st.all), st.errs, loadtest.PMS(st.all, 0.5), loadtest.PMS(st.all, 0.99), loadtest.PMS(st.all, 1), loadtest.MS(st.worst))
	}
	fmt.Fprintf(w, "\n- authd RSS over time: %s\n", strings.Join(s.rss, ", "))
	if serverLog != "" {
		fmt.Fprintf(w, "- server log: %s\n", serverLog)
	}
	for _, k := range kinds {
		_, _, samples := s.stats[k].cur.Get()
		for _, e := range samples {
			fmt.Fprintf(w, "- %s error: %s\n", k, e)
		}
	}
}
