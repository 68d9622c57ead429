package main

// The login storm, the refresh statement's database ceiling, and -growth.
//
// Storm (scenario "storm", on the primary server): logins are sent
// open-loop at -storm-factor times the bcrypt ceiling measured in the same
// run (a new request on schedule whatever the answers), so more arrive
// than authd's bcrypt slots can take and the excess must be shed with 503
// after at most AUTHD_LOGIN_QUEUE_WAIT (-login-queue-wait, which the bench
// gives every server). Meanwhile refresh, verify (one Bearer token, as a
// gateway presents it) and GET /healthz are sent at fixed rates, and their
// latency is compared with the same paced clients over a window without
// the flood just before. The server's own view (authd_logins_total and
// authd_bcrypt_wait_seconds from GET /metrics) is read before and after.
//
// Database ceiling (with refresh, on the primary server): the statement a
// refresh runs on its happy path (store.RotateSQL, the statement of store/session.go's
// rotate, the same constant) executed directly with pgx from
// -concurrency goroutines on as many connections, each rotating its own
// session's token chain, as a refresh over HTTP does: what PostgreSQL on
// this machine allows refresh at most, beside what authd reaches.
//
// Growth (-growth, instead of the scenarios): refresh at a fixed rate with
// 1 thousand, 100 thousand and 1 million refresh tokens stored (-growth-tokens),
// the rows inserted with COPY (sessions of four tokens: three spent by
// rotation, one live, as real chains look) and analysed before each window.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
	"authd/store"
	"authd/token"
)

// rotateSQL is the statement authd runs for every refresh.
const rotateSQL = store.RotateSQL

const (
	ceilingAppName = "authd-bench-ceiling"
	refreshTTLSecs = 30 * 24 * 3600 // AUTHD_REFRESH_TTL's default
	// The targets of issue 6 for the storm and refresh over HTTP.
	stormRefreshP99Target = 20 * time.Millisecond
	stormVerifyP99Target  = 5 * time.Millisecond
	refreshRateTarget     = 6000
)

// ---- storm ---------------------------------------------------------------------------

// stormWindow is one window of the storm scenario: the paced clients, and
// in the storm window the flood.
type stormWindow struct {
	name                    string
	elapsed                 time.Duration
	refresh, verify, health loadtest.Latencies
	dropped                 int64 // measuring slots dropped (all in flight)
	cpu                     cpuDelta
	// The flood.
	offered              int64
	ok, shed, other      loadtest.Latencies // by answer: 204, 503, anything else
	loginDropped         int64
	metricsBefore, after map[string]float64
}

type stormResult struct {
	factor                  float64
	ceilingRate             float64 // logins/s
	bcryptMS                float64 // one compare's CPU cost
	loginRate               float64 // offered per second
	refreshRate, verifyRate float64
	healthRate              float64
	queueWait               time.Duration
	quiet, storm            *stormWindow
}

func (sr *stormResult) errors() int64 {
	var n int64
	for _, w := range []*stormWindow{sr.quiet, sr.storm} {
		if w != nil {
			n += w.refresh.Errors() + w.verify.Errors() + w.health.Errors() + int64(w.other.Len())
		}
	}
	return n
}

// loginStatus posts a login and returns the status; the refresh cookie
// must come with a 204.
func (b *bench) loginStatus(ctx context.Context, user string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+"/rpc/login", strings.NewReader(string(loginBody(user))))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	switch resp.StatusCode {
	case http.StatusNoContent:
		if _, err := refreshCookie(resp.Header); err != nil {
			return resp.StatusCode, err
		}
	case http.StatusServiceUnavailable:
		if resp.Header.Get("Retry-After") == "" {
			return resp.StatusCode, errors.New("503 without Retry-After")
		}
	}
	return resp.StatusCode, nil
}

// storm runs the quiet window and then the storm window on the server at
// base.
func (rn *runner) storm(ctx context.Context, base string, probe *cpuProbe, access string) error {
	o, logf := rn.o, rn.logf
	ceil := rn.rep.find("bcrypt")
	if ceil == nil || ceil.rate() <= 0 {
		return errors.New("storm: no bcrypt ceiling measured")
	}
	// The ceiling from bcrypt's CPU cost (GOMAXPROCS compares at a time,
	// each this long), which other load on the machine does not lower as
	// it lowers the measured rate; the measured rate if that is missing.
	rate, one := ceil.rate(), float64(loadtest.Percentile(ceil.lat, 0.5))/1e6
	if ceil.cpu.selfOK && ceil.requests > 0 && ceil.cpu.self > 0 {
		one = float64(ceil.cpu.self) / float64(ceil.requests) / 1e6
		rate = max(rate, float64(runtime.GOMAXPROCS(0))/(one/1000))
	}
	sr := &stormResult{
		factor: o.stormFactor, ceilingRate: rate,
		bcryptMS:    one,
		refreshRate: o.stormRefreshRate, verifyRate: o.stormVerifyRate, healthRate: o.stormHealthRate,
		queueWait: o.loginQueueWait,
	}
	sr.loginRate = sr.factor * sr.ceilingRate
	rn.rep.storm = sr

	// Separate clients: the flood keeps hundreds of requests in flight,
	// and its connections must not be the measured clients'.
	flood := &bench{base: base, client: newClient(512)}
	meas := &bench{base: base, client: newClient(64)}
	defer flood.client.CloseIdleConnections()
	defer meas.client.CloseIdleConnections()

	// The sessions refresh spends: one per request in flight at most.
	const nSessions = 64
	sessions := make(chan string, nSessions)
	for i := range nSessions {
		tok, err := meas.login(ctx, rn.users[i%len(rn.users)])
		if err != nil {
			return fmt.Errorf("storm: log in: %w", err)
		}
		sessions <- tok
	}
	verify := getReq{name: "verify", path: verifyPath, header: "Authorization", value: "Bearer " + access, role: rn.role}
	health := getReq{name: "healthz", path: barePath}
	// Warm every measuring connection and authd's verified-token cache.
	for range 8 {
		if err := meas.get(ctx, verify); err != nil {
			return fmt.Errorf("storm: warm-up: %w", err)
		}
	}

	window := func(name string, floodOn bool) (*stormWindow, error) {
		w := &stormWindow{name: name}
		if floodOn {
			var err error
			if w.metricsBefore, err = loadtest.ScrapeMetrics(ctx, meas.client, base); err != nil {
				return nil, err
			}
		}
		before, err := probe.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		start := time.Now().Add(20 * time.Millisecond)
		var wg sync.WaitGroup
		var dropped atomic.Int64
		run := func(rate float64, fn func(context.Context)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dropped.Add(loadtest.Pacer{Rate: rate, MaxInflight: 256}.Run(ctx, start, o.duration, fn))
			}()
		}
		run(sr.refreshRate, func(ctx context.Context) {
			var tok string
			select {
			case tok = <-sessions:
			default:
				dropped.Add(1)
				return
			}
			t0 := time.Now()
			next, _, err := meas.refreshAccess(ctx, tok)
			w.refresh.Add(time.Since(t0), err)
			if err != nil {
				if next, err = meas.login(ctx, rn.users[0]); err != nil {
					return // the pool shrinks by one; counted above
				}
			}
			sessions <- next
		})
		run(sr.verifyRate, func(ctx context.Context) {
			t0 := time.Now()
			err := meas.get(ctx, verify)
			w.verify.Add(time.Since(t0), err)
		})
		run(sr.healthRate, func(ctx context.Context) {
			t0 := time.Now()
			err := meas.get(ctx, health)
			w.health.Add(time.Since(t0), err)
		})
		var loginDropped int64
		if floodOn {
			var next atomic.Int64
			wg.Add(1)
			go func() {
				defer wg.Done()
				loginDropped = loadtest.Pacer{Rate: sr.loginRate, MaxInflight: 4096}.Run(ctx, start, o.duration, func(ctx context.Context) {
					u := rn.users[int(next.Add(1)-1)%len(rn.users)]
					t0 := time.Now()
					status, err := flood.loginStatus(ctx, u)
					d := time.Since(t0)
					switch {
					case err == nil && status == http.StatusNoContent:
						w.ok.Add(d, nil)
					case err == nil && status == http.StatusServiceUnavailable:
						w.shed.Add(d, nil)
					default:
						if err == nil {
							err = fmt.Errorf("POST /rpc/login: status %d", status)
						}
						w.other.Add(d, err)
					}
				})
			}()
		}
		wg.Wait()
		w.elapsed = time.Since(start)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		after, err := probe.snapshot(ctx)
		if err != nil {
			return nil, err
		}
		w.cpu = after.sub(before)
		w.dropped = dropped.Load()
		w.loginDropped = loginDropped
		w.offered = int64(w.ok.Len() + w.shed.Len() + w.other.Len())
		if floodOn {
			if w.after, err = loadtest.ScrapeMetrics(ctx, meas.client, base); err != nil {
				return nil, err
			}
		}
		return w, nil
	}

	logf("storm: quiet window, %s: refresh %g/s, verify %g/s, healthz %g/s", o.duration, sr.refreshRate, sr.verifyRate, sr.healthRate)
	var err error
	if sr.quiet, err = window("quiet", false); err != nil {
		return fmt.Errorf("storm: %w", err)
	}
	logf("storm: login flood at %.0f/s (%g× the bcrypt ceiling of %.1f/s) for %s, same paced clients", sr.loginRate, sr.factor, sr.ceilingRate, o.duration)
	if sr.storm, err = window("storm", true); err != nil {
		return fmt.Errorf("storm: %w", err)
	}
	return nil
}

// writeStorm is the storm's section of the report.
func (rep *report) writeStorm(w io.Writer) {
	sr := rep.storm
	if sr == nil || sr.quiet == nil || sr.storm == nil {
		return
	}
	fmt.Fprintf(w, "\n### Login storm\n\n")
	fmt.Fprintf(w, "Logins sent open-loop at %g× the bcrypt ceiling (%.1f/s: %d CPUs over one compare's CPU cost, measured above; so %.0f/s offered, each on schedule whatever the answers) for %s, while refresh (%g/s), GET /auth/verify with one Bearer token (%g/s, answered from the verified-token cache as a gateway's repeat requests are) and GET /healthz (%g/s) are sent at fixed rates; the same paced clients ran first for %s without the flood. Every server runs with AUTHD_LOGIN_QUEUE_WAIT=%s. Client, authd and PostgreSQL share the machine.\n\n",
		sr.factor, sr.ceilingRate, runtime.GOMAXPROCS(0), sr.loginRate, rep.opts.duration, sr.refreshRate, sr.verifyRate, sr.healthRate, rep.opts.duration, sr.queueWait)
	fmt.Fprintln(w, "| window | logins sent | 204 | 503 shed | other | logins done/s | refresh p50 | refresh p99 | verify p50 | verify p99 | healthz p99 | refresh/verify/healthz answered | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, win := range []*stormWindow{sr.quiet, sr.storm} {
		sent, ok, shed, other, done := "–", "–", "–", "–", "–"
		if win == sr.storm {
			sent = strconv.FormatInt(win.offered, 10)
			ok, shed, other = strconv.Itoa(win.ok.Len()), strconv.Itoa(win.shed.Len()), strconv.Itoa(win.other.Len())
			done = fmt.Sprintf("%.1f", float64(win.ok.Len())/win.elapsed.Seconds())
		}
		errs := win.refresh.Errors() + win.verify.Errors() + win.health.Errors() + int64(win.other.Len())
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d / %d / %d | %d |\n",
			win.name, sent, ok, shed, other, done,
			loadtest.MS(loadtest.Percentile(win.refresh.Durations(), 0.5)), loadtest.MS(loadtest.Percentile(win.refresh.Durations(), 0.99)),
			loadtest.MS(loadtest.Percentile(win.verify.Durations(), 0.5)), loadtest.MS(loadtest.Percentile(win.verify.Durations(), 0.99)),
			loadtest.MS(loadtest.Percentile(win.health.Durations(), 0.99)),
			win.refresh.Len(), win.verify.Len(), win.health.Len(), errs)
	}
	fmt.Fprintln(w)
	st := sr.storm
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	rp99, vp99 := loadtest.Percentile(st.refresh.Durations(), 0.99), loadtest.Percentile(st.verify.Durations(), 0.99)
	fmt.Fprintf(w, "- refresh p99 under the storm: %s (target ≤ %s: %s; %s without it)\n", loadtest.MS(rp99), loadtest.MS(stormRefreshP99Target), verdict(rp99 <= stormRefreshP99Target), loadtest.MS(loadtest.Percentile(sr.quiet.refresh.Durations(), 0.99)))
	fmt.Fprintf(w, "- verify p99 under the storm: %s (target ≤ %s: %s; %s without it)\n", loadtest.MS(vp99), loadtest.MS(stormVerifyP99Target), verdict(vp99 <= stormVerifyP99Target), loadtest.MS(loadtest.Percentile(sr.quiet.verify.Durations(), 0.99)))
	worstOK, worstShed := loadtest.Percentile(st.ok.Durations(), 1), loadtest.Percentile(st.shed.Durations(), 1)
	bound := sr.queueWait + time.Duration(sr.bcryptMS*1e6)
	worst := max(worstOK, worstShed, loadtest.Percentile(st.other.Durations(), 1))
	fmt.Fprintf(w, "- the longest a login waited for its answer: %s (bound: AUTHD_LOGIN_QUEUE_WAIT %s + one bcrypt compare, %.1f ms of CPU = %s: %s). 503s: p50 %s, max %s (%s); 204s: p50 %s, p99 %s, max %s (%s; a login that gets a slot just before the bound then runs its compare on CPUs it shares with everything else)\n",
		loadtest.MS(worst), sr.queueWait, sr.bcryptMS, loadtest.MS(bound), verdict(worst <= bound),
		loadtest.MS(loadtest.Percentile(st.shed.Durations(), 0.5)), loadtest.MS(worstShed), verdict(worstShed <= bound),
		loadtest.MS(loadtest.Percentile(st.ok.Durations(), 0.5)), loadtest.MS(loadtest.Percentile(st.ok.Durations(), 0.99)), loadtest.MS(worstOK), verdict(worstOK <= bound))
	if st.loginDropped > 0 || st.dropped > 0 || sr.quiet.dropped > 0 {
		fmt.Fprintf(w, "- slots not sent because too many requests were in flight: logins %d, measuring clients %d (quiet %d)\n", st.loginDropped, st.dropped, sr.quiet.dropped)
	}
	if m0, m1 := st.metricsBefore, st.after; m0 != nil && m1 != nil {
		d := func(k string) float64 { return m1[k] - m0[k] }
		line := fmt.Sprintf("- authd's own count (GET /metrics, before and after the window): authd_logins_total succeeded +%.0f, shed +%.0f, failed +%.0f, throttled +%.0f",
			d(`authd_logins_total{result="succeeded"}`), d(`authd_logins_total{result="shed"}`), d(`authd_logins_total{result="failed"}`), d(`authd_logins_total{result="throttled"}`))
		if n := d("authd_bcrypt_wait_seconds_count"); n > 0 {
			line += fmt.Sprintf("; authd_bcrypt_wait_seconds: %.0f waits, mean %.0f ms", n, 1000*d("authd_bcrypt_wait_seconds_sum")/n)
			// The first bucket above the bound: a shed login's wait ends a
			// hair past the bound itself, so the bound's own bucket (if it
			// is one) cannot tell an overrun from a timer firing on time.
			bound := sr.queueWait.Seconds() + sr.bcryptMS/1000
			for _, le := range []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5} {
				if le < bound {
					continue
				}
				k := `authd_bcrypt_wait_seconds_bucket{le="` + strconv.FormatFloat(le, 'f', -1, 64) + `"}`
				if b, ok := m1[k]; ok {
					line += fmt.Sprintf(", %.0f longer than %gs (the first histogram bucket above the bound)", n-(b-m0[k]), le)
				}
				break
			}
		}
		fmt.Fprintln(w, line)
		if slots := m1["authd_bcrypt_slots"]; slots > 0 && sr.bcryptMS > 0 {
			fmt.Fprintf(w, "- authd_bcrypt_slots %.0f (AUTHD_BCRYPT_SLOTS; by default all CPUs but one): a login capacity of about %.1f/s at one compare's CPU cost, against the machine's %.1f/s\n",
				slots, slots*1000/sr.bcryptMS, sr.ceilingRate)
		}
	}
	for _, win := range []*stormWindow{sr.quiet, sr.storm} {
		if c := win.cpu; c.machineOK && c.wall > 0 {
			cores := func(d time.Duration) float64 { return d.Seconds() / c.wall.Seconds() }
			fmt.Fprintf(w, "- CPU in the %s window, in cores: authd %.2f, postgres backends %.2f, bench %.2f, everything else %.2f, idle %.2f\n",
				win.name, cores(c.server), cores(c.db), cores(c.self), max(cores(c.busy-c.server-c.db-c.self), 0), cores(c.idle))
		}
	}
	for _, win := range []*stormWindow{sr.quiet, sr.storm} {
		for _, l := range []struct {
			kind string
			l    *loadtest.Latencies
		}{{"refresh", &win.refresh}, {"verify", &win.verify}, {"healthz", &win.health}, {"login", &win.other}} {
			for _, e := range l.l.Samples() {
				fmt.Fprintf(w, "- %s window, %s error: %s\n", win.name, l.kind, e)
			}
		}
	}
}

// ---- the refresh statement alone ---------------------------------------------------------

// dbCeiling runs rotateSQL from o.concurrency goroutines, one connection
// each, for o.duration.
//
// With async, the connections do not wait for the commit's WAL flush
// (synchronous_commit=off): the difference is what durability costs here.
func (rn *runner) dbCeiling(ctx context.Context, async bool) (*result, error) {
	o := rn.o
	u, err := loadtest.PgURL(rn.benchURL, func(u *url.URL, q url.Values) {
		q.Set("application_name", ceilingAppName)
		q.Set("pool_max_conns", strconv.Itoa(o.concurrency))
		q.Set("pool_min_conns", strconv.Itoa(o.concurrency))
		if async {
			q.Set("synchronous_commit", "off") // pgx sends unknown parameters as run-time settings
		}
	})
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	plain, err := createSessions(ctx, rn.pool, rn.users, o.concurrency)
	if err != nil {
		return nil, err
	}
	probe := &cpuProbe{serverPID: -1, pool: rn.pool, dbName: rn.dbName, appName: ceilingAppName}
	name := fmt.Sprintf("rotate statement alone (pgx, %d connections)", o.concurrency)
	if async {
		name = fmt.Sprintf("rotate statement alone, synchronous_commit=off (pgx, %d connections)", o.concurrency)
	}
	var mu sync.Mutex
	var conns []*pgxpool.Conn
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	return runScenario(ctx, name, o, probe, func(ctx context.Context, w int) (func(context.Context) error, error) {
		cur := token.HashRefresh(plain[w])
		conn, err := pool.Acquire(ctx) // each goroutine keeps its connection
		if err != nil {
			return nil, err
		}
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		// Warm: the statement is prepared once per connection, as in authd.
		rotate := func(ctx context.Context) error {
			_, next, err := token.NewRefresh()
			if err != nil {
				return err
			}
			var user, role string
			var sid uuid.UUID
			var exp time.Time
			if err := conn.QueryRow(ctx, rotateSQL, cur, next, float64(refreshTTLSecs)).Scan(&user, &role, &sid, &exp); err != nil {
				return fmt.Errorf("rotate: %w", err)
			}
			cur = next
			return nil
		}
		if err := rotate(ctx); err != nil {
			return nil, err
		}
		return rotate, nil
	})
}

// writeCeiling compares refresh over HTTP with the statement alone.
func (rep *report) writeCeiling(w io.Writer) {
	if rep.ceiling == nil || rep.httpRefresh == nil {
		return
	}
	c, h := rep.ceiling, rep.httpRefresh
	fmt.Fprintf(w, "\n### Refresh over HTTP vs the statement alone\n\n")
	fmt.Fprintf(w, "The refresh happy path is one statement (store/session.go rotate). Below, the %s row from the table above, and the same statement run with pgx straight against the bench database from %d goroutines, each on its own connection rotating its own token chain, in the window right after it: the most refresh can do here with this database, client and CPUs.\n\n", h.name, rep.opts.concurrency)
	fmt.Fprintln(w, "| | req/s | p50 | p99 | DB CPU/req | authd CPU/req | client CPU/req | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %s over HTTP | %.0f | %s | %s | %s | %s | %s | %d |\n", h.name, h.rate(), loadtest.MS(loadtest.Percentile(h.lat, .5)), loadtest.MS(loadtest.Percentile(h.lat, .99)),
		perReq(h.cpu.db, h.cpu.dbOK, h.requests), perReq(h.cpu.server, h.cpu.serverOK, h.requests), perReq(h.cpu.self, h.cpu.selfOK, h.requests), h.errors)
	for _, c := range []*result{c, rep.ceilingAsync} {
		if c != nil {
			fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | – | %s | %d |\n", c.name, c.rate(), loadtest.MS(loadtest.Percentile(c.lat, .5)), loadtest.MS(loadtest.Percentile(c.lat, .99)),
				perReq(c.cpu.db, c.cpu.dbOK, c.requests), perReq(c.cpu.self, c.cpu.selfOK, c.requests), c.errors)
		}
	}
	fmt.Fprintln(w)
	if a := rep.ceilingAsync; a != nil && c.rate() > 0 {
		fmt.Fprintf(w, "Without waiting for the commit flush the statement runs at %.1f× its durable rate: the rest of the gap to it is the WAL flush each refresh waits for, which authd keeps (a crash must not bring back a spent or revoked token).\n\n", a.rate()/c.rate())
	}
	if c.rate() > 0 {
		verdict := "met"
		if h.rate() < refreshRateTarget {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "refresh over HTTP runs at %.0f%% of the statement's ceiling (%.0f of %.0f per second); target ≥ %d req/s over HTTP: %s\n",
			100*h.rate()/c.rate(), h.rate(), c.rate(), refreshRateTarget, verdict)
		if cc := c.cpu; cc.machineOK && cc.wall > 0 {
			cores := func(d time.Duration) float64 { return d.Seconds() / cc.wall.Seconds() }
			fmt.Fprintf(w, "\n- CPU in the statement's window, in cores: postgres backends %.2f, bench (the pgx client) %.2f, everything else %.2f, idle %.2f\n",
				cores(cc.db), cores(cc.self), max(cores(cc.busy-cc.db-cc.self), 0), cores(cc.idle))
		}
	}
	for _, e := range c.errSamples {
		fmt.Fprintf(w, "- statement error: %s\n", e)
	}
}

// ---- growth ------------------------------------------------------------------------------

type growthRow struct {
	target               int64
	before, after        int64 // refresh tokens stored at the window's ends
	sessions             int64
	insert               time.Duration
	lat                  loadtest.Latencies
	elapsed              time.Duration
	dropped              int64
	cpu                  cpuDelta
	plan                 string
	relSize, idxHashSize string
}

func countTokens(ctx context.Context, pool *pgxpool.Pool) (tokens, sessions int64, err error) {
	err = pool.QueryRow(ctx, "select (select count(*) from auth.refresh_token), (select count(*) from auth.session)").Scan(&tokens, &sessions)
	return
}

// insertChains stores n more refresh tokens with COPY: sessions of four,
// three spent by rotation and the newest live, streamed in batches.
func insertChains(ctx context.Context, pool *pgxpool.Pool, users []string, n int64) error {
	const perSession = 4
	const batch = 200_000 // tokens per transaction
	for done := int64(0); done < n; {
		k := min(batch, n-done)
		nSess := int((k + perSession - 1) / perSession)
		ids := make([]uuid.UUID, nSess)
		for i := range ids {
			ids[i] = uuid.New()
		}
		now := time.Now()
		expires := now.Add(30 * 24 * time.Hour)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			i := 0
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username"}, pgx.CopyFromFunc(func() ([]any, error) {
				if i == nSess {
					return nil, nil
				}
				i++
				return []any{ids[i-1], users[(i-1)%len(users)]}, nil
			})); err != nil {
				return err
			}
			j := int64(0)
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "refresh_token"}, []string{"token_hash", "session_id", "expires_at", "revoked_at", "revoked_reason"}, pgx.CopyFromFunc(func() ([]any, error) {
				if j == k {
					return nil, nil
				}
				_, hash, err := token.NewRefresh()
				if err != nil {
					return nil, err
				}
				sid := ids[j/perSession]
				spent := j%perSession != perSession-1 && j != k-1
				j++
				if spent {
					return []any{hash, sid, expires, now, "rotated"}, nil
				}
				return []any{hash, sid, expires, nil, nil}, nil
			}))
			return err
		})
		if err != nil {
			return fmt.Errorf("insert refresh tokens: %w", err)
		}
		done += k
	}
	if _, err := pool.Exec(ctx, "vacuum (analyze) auth.session, auth.refresh_token"); err != nil {
		return err
	}
	// Write the new pages out now rather than in the timed window (needs
	// a superuser or pg_checkpoint; without, the checkpointer does it on
	// its own schedule).
	_, _ = pool.Exec(ctx, "checkpoint")
	return nil
}

// planNodes is the plan of rotateSQL as its scan nodes: "Index Scan using
// refresh_token_token_hash_key on refresh_token t; ...".
func planNodes(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	_, h1, _ := token.NewRefresh()
	_, h2, _ := token.NewRefresh()
	rows, err := pool.Query(ctx, "explain (costs off) "+rotateSQL, h1, h2, float64(refreshTTLSecs))
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	var nodes []string
	re := regexp.MustCompile(`(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Bitmap Index Scan)( using \S+)? on \S+( \S+)?`)
	for _, l := range lines {
		if m := re.FindString(l); m != "" {
			nodes = append(nodes, m)
		}
	}
	return strings.Join(nodes, "; "), nil
}

// runGrowth is -growth: one server, and refresh at a fixed rate at each
// stored-token count.
func (rn *runner) runGrowth(ctx context.Context, a *algSetup) error {
	o, logf := rn.o, rn.logf
	env := append(slices.Clone(rn.baseEnv), a.env...)
	srv, err := loadtest.StartServer(ctx, rn.bin, loadtest.AuthdEnv(append(env, "DATABASE_URL="+rn.serverDBURL)), rn.tmp+"/authd-growth.log")
	if err != nil {
		return err
	}
	defer func() {
		if p := srv.LogProblems(); p != "" {
			rn.rep.serverLogs = append(rn.rep.serverLogs, "growth server: "+p)
		}
		_ = srv.Stop()
	}()
	probe := &cpuProbe{serverPID: srv.PID(), pool: rn.pool, dbName: rn.dbName, appName: serverAppName}
	b := &bench{base: "http://" + srv.Addr, client: newClient(64)}
	defer b.client.CloseIdleConnections()

	for _, target := range o.growthTokens {
		row := &growthRow{target: target}
		have, _, err := countTokens(ctx, rn.pool)
		if err != nil {
			return err
		}
		// The sessions refresh spends, logged in now; they add two tokens
		// each at most, and the window adds one per refresh.
		const nSessions = 64
		if need := target - have - 2*nSessions; need > 0 {
			logf("growth: inserting %d refresh tokens with COPY (to %d)", need, target)
			t0 := time.Now()
			if err := insertChains(ctx, rn.pool, rn.users, need); err != nil {
				return err
			}
			row.insert = time.Since(t0)
		}
		sessions := make(chan string, nSessions)
		for i := range nSessions {
			tok, err := b.login(ctx, rn.users[i%len(rn.users)])
			if err != nil {
				return fmt.Errorf("growth: log in: %w", err)
			}
			sessions <- tok
		}
		// Warm up: every session refreshed at once, twice, so that authd's
		// pool opens all its connections (and prepares the statement on
		// each) before the window rather than in it.
		for range 2 {
			var wg sync.WaitGroup
			errs := make([]error, nSessions)
			for i := range nSessions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tok := <-sessions
					next, _, err := b.refreshAccess(ctx, tok)
					if err != nil {
						errs[i] = err
						return
					}
					sessions <- next
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("growth: warm-up: %w", err)
			}
		}
		if row.plan, err = planNodes(ctx, rn.pool); err != nil {
			return fmt.Errorf("growth: explain: %w", err)
		}
		if err := rn.pool.QueryRow(ctx, `select pg_size_pretty(pg_table_size('auth.refresh_token')), pg_size_pretty(pg_relation_size('auth.refresh_token_token_hash_key'))`).Scan(&row.relSize, &row.idxHashSize); err != nil {
			row.relSize, row.idxHashSize = "?", "?"
		}
		if row.before, row.sessions, err = countTokens(ctx, rn.pool); err != nil {
			return err
		}
		logf("growth: %d refresh tokens stored (%d sessions): refresh at %g/s for %s", row.before, row.sessions, o.growthRate, o.duration)
		before, err := probe.snapshot(ctx)
		if err != nil {
			return err
		}
		start := time.Now()
		var dropped atomic.Int64
		dropped.Add(loadtest.Pacer{Rate: o.growthRate, MaxInflight: 256}.Run(ctx, start, o.duration, func(ctx context.Context) {
			var tok string
			select {
			case tok = <-sessions:
			default:
				dropped.Add(1)
				return
			}
			t0 := time.Now()
			next, _, err := b.refreshAccess(ctx, tok)
			row.lat.Add(time.Since(t0), err)
			if err == nil {
				sessions <- next
			}
		}))
		row.elapsed = time.Since(start)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		after, err := probe.snapshot(ctx)
		if err != nil {
			return err
		}
		row.cpu, row.dropped = after.sub(before), dropped.Load()
		if row.after, _, err = countTokens(ctx, rn.pool); err != nil {
			return err
		}
		rn.rep.growth = append(rn.rep.growth, row)
	}
	return nil
}

func (rep *report) writeGrowth(w io.Writer) {
	if len(rep.growth) == 0 {
		return
	}
	o := rep.opts
	fmt.Fprintf(w, "## authd-bench -growth\n\n")
	fmt.Fprintf(w, "- %s/%s, %d CPUs, PostgreSQL %s; one authd server (%s), AUTHD_LOG_LEVEL=%s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), rep.pgVersion, rep.growthAlg, o.logLevel)
	fmt.Fprintf(w, "- refresh sent at %g/s (open loop, from a pool of sessions, each used by one request at a time) for %s at each size; the stored tokens are sessions of four inserted with COPY (three spent by rotation, one live), then vacuum (analyze); each window adds its own refreshes' tokens\n\n", o.growthRate, o.duration)
	fmt.Fprintln(w, "| refresh tokens stored | sessions | table / token_hash index | refresh/s | p50 | p90 | p99 | max | authd CPU/req | DB CPU/req | other processes (cores) | errors |")
	fmt.Fprintln(w, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rep.growth {
		n := int64(r.lat.Len())
		other := "n/a"
		if c := r.cpu; c.machineOK && c.wall > 0 {
			other = fmt.Sprintf("%.2f", max((c.busy-c.server-c.db-c.self).Seconds()/c.wall.Seconds(), 0))
		}
		fmt.Fprintf(w, "| %s → %s | %d | %s / %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %d |\n",
			group(r.before), group(r.after), r.sessions, r.relSize, r.idxHashSize, float64(n)/r.elapsed.Seconds(),
			loadtest.MS(loadtest.Percentile(r.lat.Durations(), .5)), loadtest.MS(loadtest.Percentile(r.lat.Durations(), .9)), loadtest.MS(loadtest.Percentile(r.lat.Durations(), .99)), loadtest.MS(loadtest.Percentile(r.lat.Durations(), 1)),
			perReq(r.cpu.server, r.cpu.serverOK, n), perReq(r.cpu.db, r.cpu.dbOK, n), other, r.lat.Errors())
	}
	fmt.Fprintln(w)
	if first, last := rep.growth[0], rep.growth[len(rep.growth)-1]; len(rep.growth) > 1 {
		p0, p1 := loadtest.Percentile(first.lat.Durations(), .99), loadtest.Percentile(last.lat.Durations(), .99)
		m0, m1 := loadtest.Percentile(first.lat.Durations(), .5), loadtest.Percentile(last.lat.Durations(), .5)
		fmt.Fprintf(w, "From %s to %s stored tokens: p50 %s → %s (%.2f×), p99 %s → %s (%.2f×).\n\n",
			group(first.before), group(last.before), loadtest.MS(m0), loadtest.MS(m1), float64(m1)/math.Max(float64(m0), 1), loadtest.MS(p0), loadtest.MS(p1), float64(p1)/math.Max(float64(p0), 1))
	}
	fmt.Fprintln(w, "The refresh statement's plan at each size (EXPLAIN, scan nodes):")
	fmt.Fprintln(w)
	for _, r := range rep.growth {
		fmt.Fprintf(w, "- %s tokens: %s\n", group(r.before), r.plan)
		if r.insert > 0 {
			fmt.Fprintf(w, "  - inserting the rows took %s\n", r.insert.Round(time.Millisecond))
		}
		if r.dropped > 0 {
			fmt.Fprintf(w, "  - %d slots not sent: every session was in flight\n", r.dropped)
		}
		for _, e := range r.lat.Samples() {
			fmt.Fprintf(w, "  - error: %s\n", e)
		}
	}
	for _, l := range rep.serverLogs {
		fmt.Fprintf(w, "- %s\n", l)
	}
}

// group writes n with thin thousands separators: 1 000 000.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
