package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"authd/cmd/internal/loadtest"
)

type report struct {
	opts        *options
	pgVersion   string
	results     []*result
	algs        []*algResult // in the order run
	serverLogs  []string
	ceilings    []*result // the refresh statement alone: durable, then synchronous_commit=off
	httpRefresh *result   // the primary server's refresh, beside them
	storm       *stormResult
	roundTrips  []rtRow
	rtNote      string
	growth      []*growthRow
	growthAlg   string
}

func (rep *report) errorCount() int64 {
	var n int64
	for _, r := range slices.Concat(rep.results, rep.ceilings) {
		n += r.errors
	}
	if sr := rep.storm; sr != nil && sr.quiet != nil && sr.storm != nil {
		n += sr.quiet.errors() + sr.storm.errors()
	}
	for _, g := range rep.growth {
		n += g.lat.Errors()
	}
	return n
}

// find returns the first result of a scenario: the primary server's.
func (rep *report) find(scenario string) *result {
	for _, r := range rep.results {
		if r.scenario == scenario {
			return r
		}
	}
	return nil
}

var ms = loadtest.PMS

// perReq is d over n requests in ms; "n/a" when d could not be read.
func perReq(d time.Duration, n int64) string {
	switch {
	case d < 0:
		return "n/a"
	case n == 0:
		return "–"
	}
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(n))
}

// cores is d as a share of the window's wall time.
func (c cpuDelta) cores(d time.Duration) float64 { return max(d.Seconds()/c.wall.Seconds(), 0) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (rep *report) write(w io.Writer) {
	if rep.opts.growth {
		rep.writeGrowth(w)
		return
	}
	o := rep.opts
	fmt.Fprintf(w, "## authd-bench\n\n- %s/%s, %d CPUs (GOMAXPROCS %d), %s, PostgreSQL %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), rep.pgVersion)
	fmt.Fprintf(w, "- %s per scenario, %d keep-alive clients, %d users, bcrypt cost %d, server AUTHD_LOG_LEVEL=%s\n", o.duration, o.concurrency, o.users, loadtest.BcryptCost, o.harness.LogLevel)
	fmt.Fprintln(w, "- CPU/req from /proc (10 ms ticks): authd, its PostgreSQL backends, this bench client, all on this machine")
	var keys []string
	for _, a := range rep.algs {
		if a.kid == "" {
			keys = append(keys, a.alg+" (JWT_SECRET)")
		} else {
			keys = append(keys, fmt.Sprintf("%s (key %s from authd keygen, no JWT_SECRET)", a.alg, a.kid))
		}
	}
	fmt.Fprintf(w, "- signing: %s, each on its own server; rows marked with an algorithm ran on each\n\n", strings.Join(keys, ", "))

	row := loadtest.Table(w, "scenario", "requests", "req/s", "p50", "p99", "server CPU/req", "DB CPU/req", "bench CPU/req", "errors")
	for _, r := range rep.results {
		server, db := "–", "–"
		if !r.noServer {
			server, db = perReq(r.cpu.server, r.requests), perReq(r.cpu.db, r.requests)
		}
		row(r.name, r.requests, fmt.Sprintf("%.0f", r.rate()), ms(r.lat, .5), ms(r.lat, .99), server, db, perReq(r.cpu.self, r.requests), r.errors)
	}
	fmt.Fprintln(w)
	if login, ceil := rep.find("login"), rep.find("bcrypt"); login != nil && ceil != nil && ceil.rate() > 0 {
		fmt.Fprintf(w, "login as %% of bcrypt ceiling: %.1f%% (%.0f of %.0f per second)\n\n", 100*login.rate()/ceil.rate(), login.rate(), ceil.rate())
		// The ratio of CPU per request does not move with other load.
		if login.cpu.server > 0 && ceil.cpu.self > 0 && login.requests > 0 && ceil.requests > 0 {
			l, c := float64(login.cpu.server)/float64(login.requests)/1e6, float64(ceil.cpu.self)/float64(ceil.requests)/1e6
			fmt.Fprintf(w, "by CPU: a compare costs %.2f ms, a login %.2f ms of authd CPU (%.1f%% of bcrypt's efficiency; %d CPUs / %.2f ms = %.1f logins/s)\n\n", c, l, 100*c/l, runtime.NumCPU(), c, float64(runtime.NumCPU())/(c/1e3))
		}
	}
	if bare := rep.find("bare"); bare != nil && bare.rate() > 0 {
		fmt.Fprintf(w, "Verify beside the bare endpoint (GET %s: same middleware, no work; target ≥ 80%% of its throughput):\n\n", barePath)
		for _, v := range rep.results {
			if !slices.Contains(verifyScenarios, v.scenario) {
				continue
			}
			line := fmt.Sprintf("- %s: %.1f%% of bare's throughput (%.0f of %.0f req/s); p50 %s, p99 %s (bare %s, %s)", v.name, 100*v.rate()/bare.rate(), v.rate(), bare.rate(), ms(v.lat, .5), ms(v.lat, .99), ms(bare.lat, .5), ms(bare.lat, .99))
			if vc, bc := serverCPU(v), serverCPU(bare); vc >= 0 && bc > 0 {
				line += fmt.Sprintf("; authd CPU %.1f µs/req against bare's %.1f µs (%.2f×)", vc, bc, vc/bc)
			}
			fmt.Fprintln(w, line)
		}
		fmt.Fprintln(w, "\nThe client costs about as much per GET and shares the CPUs, so the CPU ratio shows authd's own difference better.")
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Where the CPUs went in each window, in cores:")
	fmt.Fprintln(w)
	for _, r := range rep.results {
		if c := r.cpu; c.other() >= 0 && c.wall > 0 {
			other := c.cores(c.other())
			fmt.Fprintf(w, "- %s: authd %.2f, postgres backends %.2f, bench %.2f, everything else %.2f, idle %.2f\n", r.name, c.cores(c.server), c.cores(c.db), c.cores(c.self), other, c.cores(c.idle))
			if other > 0.3 { // kernel networking and the WAL writer take a little; more is another workload
				fmt.Fprintf(w, "  - warning: other processes took %.2f cores; this window's numbers are low\n", other)
			}
		}
		for _, n := range slices.Concat(r.notes, r.samples) {
			fmt.Fprintf(w, "- %s: %s\n", r.name, n)
		}
	}
	for _, l := range rep.serverLogs {
		fmt.Fprintf(w, "- %s\n", l)
	}
	rep.writeCeiling(w)
	rep.writeStorm(w)
	rep.writeAlgs(w)
	rep.writeRoundTrips(w)
}

// writeCeiling compares refresh over HTTP with the statement alone.
func (rep *report) writeCeiling(w io.Writer) {
	h := rep.httpRefresh
	if len(rep.ceilings) == 0 || h == nil {
		return
	}
	fmt.Fprintf(w, "\n### Refresh over HTTP vs the statement alone\n\n")
	fmt.Fprintf(w, "%s from above, then its one statement as authd sent it, with pgx from %d connections each rotating its own chain: the most refresh can do with this database and CPUs.\n\n", h.name, rep.opts.concurrency)
	row := loadtest.Table(w, "", "req/s", "p50", "p99", "DB CPU/req", "authd CPU/req", "client CPU/req", "errors")
	for _, r := range append([]*result{h}, rep.ceilings...) {
		name, server := r.name, "–"
		if r == h {
			name, server = r.name+" over HTTP", perReq(r.cpu.server, r.requests)
		}
		row(name, fmt.Sprintf("%.0f", r.rate()), ms(r.lat, .5), ms(r.lat, .99), perReq(r.cpu.db, r.requests), server, perReq(r.cpu.self, r.requests), r.errors)
	}
	fmt.Fprintln(w)
	c := rep.ceilings[0]
	if c.rate() <= 0 {
		return
	}
	if len(rep.ceilings) > 1 {
		fmt.Fprintf(w, "Without waiting for the commit flush the statement runs at %.1f× its durable rate: the flush authd keeps (a crash must not bring back a spent token) is the rest of the gap.\n\n", rep.ceilings[1].rate()/c.rate())
	}
	fmt.Fprintf(w, "refresh over HTTP runs at %.0f%% of the statement's ceiling (%.0f of %.0f per second); target ≥ 6000 req/s over HTTP: %s\n", 100*h.rate()/c.rate(), h.rate(), c.rate(), verdict(h.rate() >= 6000))
	for _, r := range rep.ceilings {
		for _, e := range r.samples {
			fmt.Fprintf(w, "- statement error: %s\n", e)
		}
	}
}

func (rep *report) writeStorm(w io.Writer) {
	sr, o := rep.storm, rep.opts
	if sr == nil || sr.quiet == nil || sr.storm == nil {
		return
	}
	fmt.Fprintf(w, "\n### Login storm\n\n")
	fmt.Fprintf(w, "Logins open-loop at %g× the bcrypt ceiling (%.1f/s: %d CPUs over one compare's CPU; %.0f/s offered) for %s, while refresh (%g/s), GET /auth/verify with one cached Bearer token (%g/s) and GET /healthz (%g/s) are paced; first the same %s without the flood. AUTHD_LOGIN_QUEUE_WAIT=%s.\n\n",
		o.stormFactor, sr.ceilingRate, runtime.GOMAXPROCS(0), sr.loginRate, o.duration, o.stormRefresh, o.stormVerify, o.stormHealth, o.duration, o.loginQueueWait)
	row := loadtest.Table(w, "window", "logins sent", "204", "503 shed", "other", "logins done/s", "refresh p50", "refresh p99", "verify p50", "verify p99", "healthz p99", "refresh/verify/healthz answered", "errors")
	for _, win := range []*stormWindow{sr.quiet, sr.storm} {
		logins := []any{"–", "–", "–", "–", "–"}
		if win == sr.storm {
			logins = []any{win.ok.Len() + win.shed.Len() + win.other.Len(), win.ok.Len(), win.shed.Len(), win.other.Len(), fmt.Sprintf("%.1f", float64(win.ok.Len())/win.elapsed.Seconds())}
		}
		r, v, hz := win.refresh.Durations(), win.verify.Durations(), win.health.Durations()
		row(append(append([]any{win.name}, logins...), ms(r, .5), ms(r, .99), ms(v, .5), ms(v, .99), ms(hz, .99), fmt.Sprintf("%d / %d / %d", len(r), len(v), len(hz)), win.errors())...)
	}
	fmt.Fprintln(w)
	st := sr.storm
	for _, t := range []struct {
		name         string
		storm, quiet *loadtest.Latencies
		target       time.Duration
	}{{"refresh", &st.refresh, &sr.quiet.refresh, 20 * time.Millisecond}, {"verify", &st.verify, &sr.quiet.verify, 5 * time.Millisecond}} {
		p99 := loadtest.Percentile(t.storm.Durations(), .99)
		fmt.Fprintf(w, "- %s p99 under the storm: %s (target ≤ %s: %s; %s without it)\n", t.name, loadtest.MS(p99), loadtest.MS(t.target), verdict(p99 <= t.target), ms(t.quiet.Durations(), .99))
	}
	okD, shedD := st.ok.Durations(), st.shed.Durations()
	bound := o.loginQueueWait + time.Duration(sr.bcryptMS*1e6)
	worst := max(loadtest.Percentile(okD, 1), loadtest.Percentile(shedD, 1), loadtest.Percentile(st.other.Durations(), 1))
	fmt.Fprintf(w, "- the longest a login waited for its answer: %s (bound: AUTHD_LOGIN_QUEUE_WAIT %s + one compare, %.1f ms = %s: %s). 503s: p50 %s, max %s; 204s: p50 %s, p99 %s, max %s\n",
		loadtest.MS(worst), o.loginQueueWait, sr.bcryptMS, loadtest.MS(bound), verdict(worst <= bound), ms(shedD, .5), ms(shedD, 1), ms(okD, .5), ms(okD, .99), ms(okD, 1))
	if st.loginDropped > 0 || st.dropped > 0 || sr.quiet.dropped > 0 {
		fmt.Fprintf(w, "- slots not sent, too many in flight: logins %d, measuring clients %d (quiet %d)\n", st.loginDropped, st.dropped, sr.quiet.dropped)
	}
	if m0, m1 := st.before, st.after; m0 != nil && m1 != nil {
		d := func(k string) float64 { return m1[k] - m0[k] }
		line := "- authd's own count (GET /metrics): authd_logins_total"
		for _, r := range []string{"succeeded", "shed", "failed", "throttled"} {
			line += fmt.Sprintf(" %s +%.0f", r, d(`authd_logins_total{result="`+r+`"}`))
		}
		if n := d("authd_bcrypt_wait_seconds_count"); n > 0 {
			line += fmt.Sprintf("; authd_bcrypt_wait_seconds: %.0f waits, mean %.0f ms", n, 1000*d("authd_bcrypt_wait_seconds_sum")/n)
		}
		fmt.Fprintln(w, line)
	}
	for _, win := range []*stormWindow{sr.quiet, sr.storm} {
		for _, e := range slices.Concat(win.refresh.Samples(), win.verify.Samples(), win.health.Samples(), win.other.Samples()) {
			fmt.Fprintf(w, "- %s error: %s\n", win.name, e)
		}
	}
}

// serverCPU is authd's CPU per request in µs, -1 if unknown.
func serverCPU(r *result) float64 {
	if r == nil || r.cpu.server < 0 || r.requests == 0 {
		return -1
	}
	return float64(r.cpu.server) / float64(r.requests) / 1e3
}

// usCell is a CPU cell: v, or v minus base when base is given; "–" if unknown.
func usCell(v float64, base ...float64) string {
	if v < 0 || slices.ContainsFunc(base, func(b float64) bool { return b < 0 }) {
		return "–"
	}
	if len(base) > 0 {
		return fmt.Sprintf("%+.1f µs", v-base[0])
	}
	return fmt.Sprintf("%.1f µs", v)
}

func (rep *report) writeAlgs(w io.Writer) {
	if len(rep.algs) == 0 {
		return
	}
	cell := func(r *result, f func(*result) string) string {
		if r == nil {
			return "–"
		}
		return f(r)
	}
	rate := func(r *result) string { return fmt.Sprintf("%.0f", r.rate()) }
	p50 := func(r *result) string { return ms(r.lat, .5) }
	p99 := func(r *result) string { return ms(r.lat, .99) }
	fmt.Fprintf(w, "\n### Signing algorithms\n\n")
	fmt.Fprintln(w, "Each on its own server. refresh signs a token per request; verify-fresh verifies one never seen before; verify-jwt presents one token, answered from authd's cache.")
	fmt.Fprintln(w)
	row := loadtest.Table(w, "alg", "refresh req/s", "refresh p50", "refresh p99", "refresh authd CPU/req", "verify-fresh req/s", "verify-fresh p99", "verify-fresh authd CPU/req", "verify-jwt (cached) req/s", "verify-jwt authd CPU/req")
	for _, a := range rep.algs {
		row(a.alg, cell(a.refresh, rate), cell(a.refresh, p50), cell(a.refresh, p99), usCell(serverCPU(a.refresh)),
			cell(a.fresh, rate), cell(a.fresh, p99), usCell(serverCPU(a.fresh)), cell(a.cached, rate), usCell(serverCPU(a.cached)))
	}
	ref := rep.algs[0] // the primary: HS256 if listed
	fmt.Fprintf(w, "\nOne access token: in-process with authd's token package and the same key; authd CPU per refresh (one signature) and per verify-fresh (one verification), and their difference from %s's (a few µs are noise); what a verification costs over a cache hit.\n\n", ref.alg)
	row = loadtest.Table(w, "alg", "token bytes", "sign, in-process", "verify, in-process", "refresh authd CPU/req", "vs "+ref.alg, "verify-fresh authd CPU/req", "vs "+ref.alg, "verify-fresh − verify-jwt (cached)")
	for _, a := range rep.algs {
		refr, fresh := serverCPU(a.refresh), serverCPU(a.fresh)
		vsRefresh, vsFresh := usCell(refr, serverCPU(ref.refresh)), usCell(fresh, serverCPU(ref.fresh))
		if a == ref {
			vsRefresh, vsFresh = "–", "–"
		}
		row(a.alg, a.tokenBytes, fmt.Sprintf("%.1f µs", a.signNS/1e3), fmt.Sprintf("%.1f µs", a.verifyNS/1e3), usCell(refr), vsRefresh, usCell(fresh), vsFresh, usCell(fresh, serverCPU(a.cached)))
	}
	fmt.Fprintln(w)
	for _, a := range rep.algs {
		if a.fresh != nil {
			fmt.Fprintf(w, "- %s: %s\n", a.fresh.name, a.pool)
		}
	}
}

func (rep *report) writeRoundTrips(w io.Writer) {
	if len(rep.roundTrips) == 0 && rep.rtNote == "" {
		return
	}
	fmt.Fprintf(w, "\n### Database round trips per request\n\n")
	if rep.rtNote != "" {
		fmt.Fprintf(w, "%s\n\n", rep.rtNote)
	}
	fmt.Fprintln(w, "Sync and simple Query messages from authd on the PostgreSQL wire, one request at a time after a warm-up (but the last row); per request, but total: the whole window's, background writes included.")
	fmt.Fprintln(w)
	num := func(f float64) string { return strconv.FormatFloat(math.Round(f*1000)/1000, 'f', -1, 64) }
	row := loadtest.Table(w, "request", "sample", "window", "total", "round trips", "statements", "prepares", "pool pings")
	for _, r := range rep.roundTrips {
		row(r.name, r.n, loadtest.MS(r.window), r.total, num(r.roundTrips), num(r.statements), num(r.prepares), r.pings)
	}
	fmt.Fprintln(w, "\nStatements executed in each window, by the auth tables they name:")
	fmt.Fprintln(w)
	for _, r := range rep.roundTrips {
		var labels []string
		counts := map[string]int{}
		for _, sql := range r.sql {
			l := stmtLabel(sql)
			if counts[l]++; counts[l] == 1 {
				labels = append(labels, l)
			}
		}
		parts := []string{"none"}
		for i, l := range labels {
			if i == 0 {
				parts = nil
			}
			parts = append(parts, fmt.Sprintf("%d× %s", counts[l], l))
		}
		fmt.Fprintf(w, "- %s: %s\n", r.name, strings.Join(parts, "; "))
	}
}

func (rep *report) writeGrowth(w io.Writer) {
	o := rep.opts
	fmt.Fprintf(w, "## authd-bench -growth\n\n- %s/%s, %d CPUs, PostgreSQL %s; one authd server (%s), AUTHD_LOG_LEVEL=%s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), rep.pgVersion, rep.growthAlg, o.harness.LogLevel)
	fmt.Fprintf(w, "- refresh at %g/s (open loop, each session used by one request at a time) for %s at each size; tokens stored in sessions of four by COPY (three spent, one live), then vacuum (analyze)\n\n", o.growthRate, o.duration)
	row := loadtest.Table(w, "refresh tokens stored", "sessions", "table / token_hash index", "refresh/s", "p50", "p90", "p99", "max", "authd CPU/req", "DB CPU/req", "other processes (cores)", "errors")
	for _, r := range rep.growth {
		lat, n, c := r.lat.Durations(), int64(r.lat.Len()), r.cpu
		row(group(r.before)+" → "+group(r.after), r.sessions, r.relSize+" / "+r.idxSize, fmt.Sprintf("%.0f", float64(n)/r.elapsed.Seconds()),
			ms(lat, .5), ms(lat, .9), ms(lat, .99), ms(lat, 1), perReq(c.server, n), perReq(c.db, n), fmt.Sprintf("%.2f", c.cores(c.other())), r.lat.Errors())
	}
	fmt.Fprintln(w, "\nThe refresh statement's plan at each size (EXPLAIN, scan nodes):")
	fmt.Fprintln(w)
	for _, r := range rep.growth {
		fmt.Fprintf(w, "- %s tokens: %s\n", group(r.before), r.plan)
		if r.insert > 0 {
			fmt.Fprintf(w, "  - inserting the rows took %s\n", r.insert.Round(time.Millisecond))
		}
		if n := r.dropped.Load(); n > 0 {
			fmt.Fprintf(w, "  - %d slots not sent: every session was in flight\n", n)
		}
		for _, e := range r.lat.Samples() {
			fmt.Fprintf(w, "  - error: %s\n", e)
		}
	}
	for _, l := range rep.serverLogs {
		fmt.Fprintf(w, "- %s\n", l)
	}
}

// group writes n with thousands separators: 1,000,000.
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
