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

func ms(lat []time.Duration, p float64) string { return loadtest.MS(loadtest.Percentile(lat, p)) }

// perReq is d over n requests in ms; "n/a" when d could not be read.
func perReq(d time.Duration, ok bool, n int64) string {
	switch {
	case !ok:
		return "n/a"
	case n == 0:
		return "–"
	}
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(n))
}

// cores is d as a share of the window's wall time.
func (c cpuDelta) cores(d time.Duration) float64 { return max(d.Seconds()/c.wall.Seconds(), 0) }

func (rep *report) write(w io.Writer) {
	if rep.opts.growth {
		rep.writeGrowth(w)
		return
	}
	o := rep.opts
	fmt.Fprintf(w, "## authd-bench\n\n- %s/%s, %d CPUs (GOMAXPROCS %d), %s, PostgreSQL %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), rep.pgVersion)
	fmt.Fprintf(w, "- %s per scenario, %d keep-alive clients, %d users, bcrypt cost %d, server AUTHD_LOG_LEVEL=%s\n", o.duration, o.concurrency, o.users, loadtest.BcryptCost, o.harness.LogLevel)
	fmt.Fprintln(w, "- CPU/req from /proc (utime+stime, in 10 ms ticks): the authd process, its PostgreSQL backends, this bench client; all on the same machine")
	var keys []string
	for _, a := range rep.algs {
		if a.kid == "" {
			keys = append(keys, a.alg+" (JWT_SECRET)")
		} else {
			keys = append(keys, fmt.Sprintf("%s (key %s from authd keygen in AUTHD_SIGNING_KEYS_DIR, no JWT_SECRET)", a.alg, a.kid))
		}
	}
	fmt.Fprintf(w, "- signing: %s, each on its own authd server; rows marked with an algorithm ran on each\n\n", strings.Join(keys, ", "))

	fmt.Fprintln(w, "| scenario | requests | req/s | p50 | p99 | server CPU/req | DB CPU/req | bench CPU/req | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rep.results {
		server, db := "–", "–"
		if !r.noServer {
			server, db = perReq(r.cpu.server, r.cpu.serverOK, r.requests), perReq(r.cpu.db, r.cpu.dbOK, r.requests)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %s | %s | %s | %s | %s | %d |\n", r.name, r.requests, r.rate(), ms(r.lat, .5), ms(r.lat, .99), server, db, perReq(r.cpu.self, r.cpu.selfOK, r.requests), r.errors)
	}
	fmt.Fprintln(w)
	if login, ceil := rep.find("login"), rep.find("bcrypt"); login != nil && ceil != nil && ceil.rate() > 0 {
		fmt.Fprintf(w, "login as %% of bcrypt ceiling: %.1f%% (%.0f of %.0f per second, measured in two successive windows)\n\n", 100*login.rate()/ceil.rate(), login.rate(), ceil.rate())
		// The ratio of CPU per request does not move with other load.
		if login.cpu.serverOK && ceil.cpu.selfOK && login.requests > 0 && ceil.requests > 0 {
			l, c := float64(login.cpu.server)/float64(login.requests)/1e6, float64(ceil.cpu.self)/float64(ceil.requests)/1e6
			fmt.Fprintf(w, "by CPU, which other load does not skew: a compare costs %.2f ms, a login %.2f ms of authd CPU (%.1f%% of bcrypt's efficiency; %d CPUs / %.2f ms = %.1f logins/s)\n\n", c, l, 100*c/l, runtime.NumCPU(), c, float64(runtime.NumCPU())/(c/1e3))
		}
	}
	if bare := rep.find("bare"); bare != nil && bare.rate() > 0 {
		fmt.Fprintf(w, "Verify beside the bare endpoint (GET %s on the same server: same middleware, no work), each in its own window (target ≥ 80%% of bare's throughput):\n\n", barePath)
		for _, v := range rep.results {
			if !slices.Contains(verifyScenarios, v.scenario) {
				continue
			}
			line := fmt.Sprintf("- %s: %.1f%% of bare's throughput (%.0f of %.0f req/s); p50 %s, p99 %s (bare %s, %s)", v.name, 100*v.rate()/bare.rate(), v.rate(), bare.rate(), ms(v.lat, .5), ms(v.lat, .99), ms(bare.lat, .5), ms(bare.lat, .99))
			if vc, ok := serverCPU(v); ok {
				if bc, ok := serverCPU(bare); ok && bc > 0 {
					line += fmt.Sprintf("; authd CPU %.1f µs/req against bare's %.1f µs (%.2f×)", vc, bc, vc/bc)
				}
			}
			fmt.Fprintln(w, line)
		}
		fmt.Fprintln(w, "\nThe bench client shares the machine and costs about the same per GET, so the throughput ratio understates authd's own difference, which the CPU ratio shows.")
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Where the machine's CPU went during each window, in cores:")
	fmt.Fprintln(w)
	for _, r := range rep.results {
		if c := r.cpu; c.machineOK && c.wall > 0 {
			other := c.cores(c.busy - c.server - c.db - c.self)
			fmt.Fprintf(w, "- %s: authd %.2f, postgres backends %.2f, bench %.2f, everything else %.2f, idle %.2f\n", r.name, c.cores(c.server), c.cores(c.db), c.cores(c.self), other, c.cores(c.idle))
			if other > 0.3 { // kernel networking and the WAL writer take a little; more is another workload
				fmt.Fprintf(w, "  - warning: other processes took %.2f cores in this window; its req/s and latencies are low\n", other)
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
	fmt.Fprintf(w, "The refresh happy path is one statement. Below, the %s row from the table above, and that statement, as authd sent it on the wire, run with pgx straight against the bench database from %d goroutines, each on its own connection rotating its own token chain, right after it: the most refresh can do here with this database, client and CPUs.\n\n", h.name, rep.opts.concurrency)
	fmt.Fprintln(w, "| | req/s | p50 | p99 | DB CPU/req | authd CPU/req | client CPU/req | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range append([]*result{h}, rep.ceilings...) {
		name, server := r.name, "–"
		if r == h {
			name, server = r.name+" over HTTP", perReq(r.cpu.server, r.cpu.serverOK, r.requests)
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %s | %d |\n", name, r.rate(), ms(r.lat, .5), ms(r.lat, .99), perReq(r.cpu.db, r.cpu.dbOK, r.requests), server, perReq(r.cpu.self, r.cpu.selfOK, r.requests), r.errors)
	}
	fmt.Fprintln(w)
	c := rep.ceilings[0]
	if c.rate() <= 0 {
		return
	}
	if len(rep.ceilings) > 1 {
		fmt.Fprintf(w, "Without waiting for the commit flush the statement runs at %.1f× its durable rate: the rest of the gap to it is the WAL flush each refresh waits for, which authd keeps (a crash must not bring back a spent or revoked token).\n\n", rep.ceilings[1].rate()/c.rate())
	}
	fmt.Fprintf(w, "refresh over HTTP runs at %.0f%% of the statement's ceiling (%.0f of %.0f per second); target ≥ 6000 req/s over HTTP: %s\n", 100*h.rate()/c.rate(), h.rate(), c.rate(), verdict(h.rate() >= 6000))
	for _, r := range rep.ceilings {
		for _, e := range r.samples {
			fmt.Fprintf(w, "- statement error: %s\n", e)
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// writeStorm is the storm's section.
func (rep *report) writeStorm(w io.Writer) {
	sr, o := rep.storm, rep.opts
	if sr == nil || sr.quiet == nil || sr.storm == nil {
		return
	}
	fmt.Fprintf(w, "\n### Login storm\n\n")
	fmt.Fprintf(w, "Logins sent open-loop at %g× the bcrypt ceiling (%.1f/s: %d CPUs over one compare's CPU cost; so %.0f/s offered, each on schedule whatever the answers) for %s, while refresh (%g/s), GET /auth/verify with one Bearer token (%g/s, from the verified-token cache as a gateway's repeats are) and GET /healthz (%g/s) are paced; the same paced clients ran first for %s without the flood. Every server runs with AUTHD_LOGIN_QUEUE_WAIT=%s.\n\n",
		o.stormFactor, sr.ceilingRate, runtime.GOMAXPROCS(0), sr.loginRate, o.duration, o.stormRefresh, o.stormVerify, o.stormHealth, o.duration, o.loginQueueWait)
	fmt.Fprintln(w, "| window | logins sent | 204 | 503 shed | other | logins done/s | refresh p50 | refresh p99 | verify p50 | verify p99 | healthz p99 | refresh/verify/healthz answered | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, win := range []*stormWindow{sr.quiet, sr.storm} {
		sent, ok, shed, other, done := "–", "–", "–", "–", "–"
		if win == sr.storm {
			sent = strconv.Itoa(win.ok.Len() + win.shed.Len() + win.other.Len())
			ok, shed, other = strconv.Itoa(win.ok.Len()), strconv.Itoa(win.shed.Len()), strconv.Itoa(win.other.Len())
			done = fmt.Sprintf("%.1f", float64(win.ok.Len())/win.elapsed.Seconds())
		}
		r, v, hz := win.refresh.Durations(), win.verify.Durations(), win.health.Durations()
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d / %d / %d | %d |\n", win.name, sent, ok, shed, other, done,
			ms(r, .5), ms(r, .99), ms(v, .5), ms(v, .99), ms(hz, .99), len(r), len(v), len(hz), win.errors())
	}
	fmt.Fprintln(w)
	st := sr.storm
	const refreshTarget, verifyTarget = 20 * time.Millisecond, 5 * time.Millisecond
	rp99, vp99 := loadtest.Percentile(st.refresh.Durations(), .99), loadtest.Percentile(st.verify.Durations(), .99)
	fmt.Fprintf(w, "- refresh p99 under the storm: %s (target ≤ %s: %s; %s without it)\n", loadtest.MS(rp99), loadtest.MS(refreshTarget), verdict(rp99 <= refreshTarget), ms(sr.quiet.refresh.Durations(), .99))
	fmt.Fprintf(w, "- verify p99 under the storm: %s (target ≤ %s: %s; %s without it)\n", loadtest.MS(vp99), loadtest.MS(verifyTarget), verdict(vp99 <= verifyTarget), ms(sr.quiet.verify.Durations(), .99))
	okD, shedD := st.ok.Durations(), st.shed.Durations()
	bound := o.loginQueueWait + time.Duration(sr.bcryptMS*1e6)
	worst := max(loadtest.Percentile(okD, 1), loadtest.Percentile(shedD, 1), loadtest.Percentile(st.other.Durations(), 1))
	fmt.Fprintf(w, "- the longest a login waited for its answer: %s (bound: AUTHD_LOGIN_QUEUE_WAIT %s + one compare, %.1f ms = %s: %s). 503s: p50 %s, max %s; 204s: p50 %s, p99 %s, max %s\n",
		loadtest.MS(worst), o.loginQueueWait, sr.bcryptMS, loadtest.MS(bound), verdict(worst <= bound), ms(shedD, .5), ms(shedD, 1), ms(okD, .5), ms(okD, .99), ms(okD, 1))
	if st.loginDropped > 0 || st.dropped > 0 || sr.quiet.dropped > 0 {
		fmt.Fprintf(w, "- slots not sent because too many requests were in flight: logins %d, measuring clients %d (quiet %d)\n", st.loginDropped, st.dropped, sr.quiet.dropped)
	}
	if m0, m1 := st.before, st.after; m0 != nil && m1 != nil {
		d := func(k string) float64 { return m1[k] - m0[k] }
		line := "- authd's own count (GET /metrics, around the window): authd_logins_total"
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

// serverCPU is authd's CPU per request in µs.
func serverCPU(r *result) (float64, bool) {
	if r == nil || !r.cpu.serverOK || r.requests == 0 {
		return 0, false
	}
	return float64(r.cpu.server) / float64(r.requests) / 1e3, true
}

func cell(r *result, f func(*result) string) string {
	if r == nil {
		return "–"
	}
	return f(r)
}

func cpuCell(r *result) string {
	if v, ok := serverCPU(r); ok {
		return fmt.Sprintf("%.1f µs", v)
	}
	return "–"
}

// deltaCell is r's authd CPU per request minus base's; "–" for the
// reference row itself or when either is missing.
func deltaCell(r, base *result) string {
	v, ok1 := serverCPU(r)
	b, ok2 := serverCPU(base)
	if r == base || !ok1 || !ok2 {
		return "–"
	}
	return fmt.Sprintf("%+.1f µs", v-b)
}

// writeAlgs compares the signing algorithms.
func (rep *report) writeAlgs(w io.Writer) {
	if len(rep.algs) == 0 {
		return
	}
	rate := func(r *result) string { return fmt.Sprintf("%.0f", r.rate()) }
	p50 := func(r *result) string { return ms(r.lat, .5) }
	p99 := func(r *result) string { return ms(r.lat, .99) }
	fmt.Fprintf(w, "\n### Signing algorithms\n\n")
	fmt.Fprintln(w, "Under load, each algorithm on its own authd server. refresh signs one access token per request; verify-fresh verifies a token never presented before, so the signature is checked every time; verify-jwt presents one token throughout, answered from authd's verified-token cache after the first request.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| alg | refresh req/s | refresh p50 | refresh p99 | refresh authd CPU/req | verify-fresh req/s | verify-fresh p99 | verify-fresh authd CPU/req | verify-jwt (cached) req/s | verify-jwt authd CPU/req |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, a := range rep.algs {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", a.alg, cell(a.refresh, rate), cell(a.refresh, p50), cell(a.refresh, p99), cpuCell(a.refresh),
			cell(a.fresh, rate), cell(a.fresh, p99), cpuCell(a.fresh), cell(a.cached, rate), cpuCell(a.cached))
	}
	ref := rep.algs[0] // the primary: HS256 if listed
	fmt.Fprintf(w, "\nCost of one access token. In-process: authd's token package with the same key, one goroutine, no HTTP. From the server runs: authd CPU per refresh (one signature) and per verify-fresh (one verification), and the difference from %s's (a few µs are within the noise of separate runs). The last column is what a full verification costs over a cache hit.\n\n", ref.alg)
	fmt.Fprintf(w, "| alg | token bytes | sign, in-process | verify, in-process | refresh authd CPU/req | vs %s | verify-fresh authd CPU/req | vs %s | verify-fresh − verify-jwt (cached) |\n", ref.alg, ref.alg)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, a := range rep.algs {
		fmt.Fprintf(w, "| %s | %d | %.1f µs | %.1f µs | %s | %s | %s | %s | %s |\n", a.alg, a.tokenBytes, a.signNS/1e3, a.verifyNS/1e3,
			cpuCell(a.refresh), deltaCell(a.refresh, ref.refresh), cpuCell(a.fresh), deltaCell(a.fresh, ref.fresh), deltaCell(a.fresh, a.cached))
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
	fmt.Fprintf(w, "\n### Database round trips per request\n\n%s\n", rep.rtNote)
	fmt.Fprintln(w, "Counted on the PostgreSQL wire (Sync and simple Query messages from authd) with requests sent one at a time after a warm-up, except the last row. Round trips, statements and prepares are per request; total is the round trips in the whole window, background writes included.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| request | sample | window | total | round trips | statements | prepares | pool pings |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	num := func(f float64) string { return strconv.FormatFloat(math.Round(f*1000)/1000, 'f', -1, 64) }
	for _, r := range rep.roundTrips {
		fmt.Fprintf(w, "| %s | %d | %s | %d | %s | %s | %s | %d |\n", r.name, r.n, loadtest.MS(r.window), r.total, num(r.roundTrips), num(r.statements), num(r.prepares), r.pings)
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
	fmt.Fprintf(w, "- refresh sent at %g/s (open loop, from a pool of sessions, each used by one request at a time) for %s at each size; the stored tokens are sessions of four inserted with COPY (three spent by rotation, one live), then vacuum (analyze)\n\n", o.growthRate, o.duration)
	fmt.Fprintln(w, "| refresh tokens stored | sessions | table / token_hash index | refresh/s | p50 | p90 | p99 | max | authd CPU/req | DB CPU/req | other processes (cores) | errors |")
	fmt.Fprintln(w, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rep.growth {
		lat, n, c := r.lat.Durations(), int64(r.lat.Len()), r.cpu
		fmt.Fprintf(w, "| %s → %s | %d | %s / %s | %.0f | %s | %s | %s | %s | %s | %s | %.2f | %d |\n", group(r.before), group(r.after), r.sessions, r.relSize, r.idxHashSize,
			float64(n)/r.elapsed.Seconds(), ms(lat, .5), ms(lat, .9), ms(lat, .99), ms(lat, 1),
			perReq(c.server, c.serverOK, n), perReq(c.db, c.dbOK, n), c.cores(c.busy-c.server-c.db-c.self), r.lat.Errors())
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
