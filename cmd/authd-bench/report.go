package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"authd/cmd/internal/loadtest"
)

type report struct {
	o          *options
	pgVersion  string
	algs       []*alg    // the primary first
	results    []*result // the main table
	bcrypt     *result
	ceilings   []*result // the refresh statement alone: durable, then synchronous_commit=off
	storm      *stormResult
	roundTrips []rtRow
	notes      []string
}

func (rep *report) errorCount() (n int64) {
	for _, r := range slices.Concat(rep.results, rep.ceilings) {
		_, errs, _ := r.lat.Get()
		n += errs
	}
	if sr := rep.storm; sr != nil && sr.storm != nil {
		n += sr.quiet.errors() + sr.storm.errors()
	}
	return n
}

// find returns the first result named name: the primary server's.
func (rep *report) find(name string) *result {
	for _, r := range rep.results {
		if r.name == name || strings.HasPrefix(r.name, name+" (") {
			return r
		}
	}
	return nil
}

// perReq is d over n requests in ms; "–" when unknown.
func perReq(d time.Duration, n int64) string {
	if d < 0 || n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(n))
}

// us is authd's CPU per request of r in µs, -1 if unknown.
func us(r *result) float64 {
	if r == nil || r.cpu.server < 0 || r.n() == 0 {
		return -1
	}
	return float64(r.cpu.server) / float64(r.n()) / 1e3
}

// usCell is a time in µs, "–" if unknown.
func usCell(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f µs", v)
}

// cells are r's rate, p50, p99, the CPU columns and errors.
func (r *result) cells() []any {
	lat, errs, _ := r.lat.Get()
	n := int64(len(lat))
	return []any{fmt.Sprintf("%.0f", r.rate()), loadtest.PMS(lat, .5), loadtest.PMS(lat, .99), perReq(r.cpu.server, n), perReq(r.cpu.db, n), perReq(r.cpu.self, n), errs}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (rep *report) write(w io.Writer) {
	o := rep.o
	fmt.Fprintf(w, "## authd-bench\n\n- %s/%s, %d CPUs (GOMAXPROCS %d), %s, PostgreSQL %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), rep.pgVersion)
	fmt.Fprintf(w, "- %s per scenario, %d keep-alive clients, %d users, bcrypt cost %d\n", o.duration, o.concurrency, o.harness.Users, loadtest.BcryptCost)
	fmt.Fprintln(w, "- CPU/req from /proc (10 ms ticks): authd, its PostgreSQL backends, this bench client, all on this machine")
	var keys []string
	for _, a := range rep.algs {
		if a.kid == "" {
			keys = append(keys, a.alg+" (JWT_SECRET)")
		} else {
			keys = append(keys, a.alg+" (key "+a.kid+" from authd keygen, no JWT_SECRET)")
		}
	}
	fmt.Fprintf(w, "- signing: %s, each on its own server; rows marked with an algorithm ran on each\n\n", strings.Join(keys, ", "))
	row := loadtest.Table(w, "scenario", "requests", "req/s", "p50", "p99", "server CPU/req", "DB CPU/req", "bench CPU/req", "errors")
	for _, r := range rep.results {
		row(append([]any{r.name, r.n()}, r.cells()...)...)
	}
	fmt.Fprintln(w)
	if login, ceil := rep.find("login"), rep.bcrypt; login != nil && ceil.rate() > 0 {
		fmt.Fprintf(w, "login as %% of bcrypt ceiling: %.1f%% (%.0f of %.0f per second)\n\n", 100*login.rate()/ceil.rate(), login.rate(), ceil.rate())
		// The ratio of CPU per request does not move with other load.
		if l, c := us(login)/1e3, float64(ceil.cpu.self)/float64(max(ceil.n(), 1))/1e6; l > 0 && c > 0 {
			fmt.Fprintf(w, "by CPU: a compare costs %.2f ms, a login %.2f ms of authd CPU (%.1f%% of bcrypt's efficiency)\n\n", c, l, 100*c/l)
		}
	}
	if bare := rep.find("bare"); bare != nil && bare.rate() > 0 {
		fmt.Fprintf(w, "Verify beside the bare endpoint (GET /healthz: same middleware, no work; target ≥ 80%% of its throughput):\n\n")
		for _, v := range rep.results {
			if strings.HasPrefix(v.name, "verify-") {
				fmt.Fprintf(w, "- %s: %.1f%% of bare's throughput (%.0f of %.0f req/s); authd CPU %s/req against bare's %s\n", v.name, 100*v.rate()/bare.rate(), v.rate(), bare.rate(), usCell(us(v)), usCell(us(bare)))
			}
		}
		fmt.Fprintln(w, "\nThe client costs about as much per GET and shares the CPUs, so the CPU ratio shows authd's own difference better.")
	}
	for _, r := range slices.Concat(rep.results, rep.ceilings) {
		_, _, samples := r.lat.Get()
		for _, n := range slices.Concat(r.notes, samples) {
			fmt.Fprintf(w, "- %s: %s\n", r.name, n)
		}
	}
	for _, n := range rep.notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	rep.writeCeiling(w)
	rep.writeStorm(w)
	rep.writeAlgs(w)
	rep.writeRoundTrips(w)
}

// writeCeiling compares refresh over HTTP with the statement alone.
func (rep *report) writeCeiling(w io.Writer) {
	h := rep.find("refresh")
	if len(rep.ceilings) != 2 || h == nil {
		return
	}
	fmt.Fprintf(w, "\n### Refresh over HTTP vs the statement alone\n\n")
	fmt.Fprintf(w, "%s from above, then its one statement as authd sent it, with pgx from %d connections each rotating its own chain: the most refresh can do with this database and CPUs.\n\n", h.name, rep.o.concurrency)
	row := loadtest.Table(w, "", "req/s", "p50", "p99", "authd CPU/req", "DB CPU/req", "client CPU/req", "errors")
	row(append([]any{h.name + " over HTTP"}, h.cells()...)...)
	for _, r := range rep.ceilings {
		row(append([]any{r.name}, r.cells()...)...)
	}
	if c := rep.ceilings[0]; c.rate() > 0 {
		fmt.Fprintf(w, "\nWithout waiting for the commit flush the statement runs at %.1f× its durable rate: the flush authd keeps (a crash must not bring back a spent token) is the rest of the gap.\n\n", rep.ceilings[1].rate()/c.rate())
		fmt.Fprintf(w, "refresh over HTTP runs at %.0f%% of the statement's ceiling (%.0f of %.0f per second); target ≥ 6000 req/s over HTTP: %s\n", 100*h.rate()/c.rate(), h.rate(), c.rate(), verdict(h.rate() >= 6000))
	}
}

func (rep *report) writeStorm(w io.Writer) {
	sr, o := rep.storm, rep.o
	if sr == nil || sr.storm == nil {
		return
	}
	fmt.Fprintf(w, "\n### Login storm\n\n")
	fmt.Fprintf(w, "Logins open-loop at %g× the bcrypt ceiling (%.1f/s: %d CPUs over one compare's CPU; %.0f/s offered) for %s, while refresh (%g/s), GET /auth/verify with one cached Bearer token (%g/s) and GET /healthz (%g/s) are paced; first the same %s without the flood. AUTHD_LOGIN_QUEUE_WAIT=%s.\n\n",
		o.stormFactor, sr.ceilingRate, runtime.GOMAXPROCS(0), sr.loginRate, o.duration, o.stormRates[0], o.stormRates[1], o.stormRates[2], o.duration, o.queueWait)
	row := loadtest.Table(w, "window", "logins sent", "204", "503 shed", "other", "logins done/s", "refresh p50", "refresh p99", "verify p50", "verify p99", "healthz p99", "refresh/verify/healthz answered", "errors")
	var p99s [2][3]time.Duration // quiet, storm: refresh, verify, healthz
	for i, win := range []*stormWindow{sr.quiet, sr.storm} {
		ok, _, _ := win.ok.Get()
		shed, _, _ := win.shed.Get()
		bad, _, _ := win.bad.Get()
		logins := []any{len(ok) + len(shed) + len(bad), len(ok), len(shed), len(bad), fmt.Sprintf("%.1f", float64(len(ok))/win.elapsed.Seconds())}
		if win == sr.quiet {
			logins = []any{"–", "–", "–", "–", "–"}
		}
		var lat [3][]time.Duration
		for k := range lat {
			lat[k], _, _ = win.paced[k].Get()
			p99s[i][k] = loadtest.Percentile(lat[k], .99)
		}
		row(append(append([]any{win.name}, logins...), loadtest.PMS(lat[0], .5), loadtest.MS(p99s[i][0]), loadtest.PMS(lat[1], .5), loadtest.MS(p99s[i][1]), loadtest.MS(p99s[i][2]),
			fmt.Sprintf("%d / %d / %d", len(lat[0]), len(lat[1]), len(lat[2])), win.errors())...)
	}
	fmt.Fprintln(w)
	for k, t := range []time.Duration{20 * time.Millisecond, 5 * time.Millisecond} {
		fmt.Fprintf(w, "- %s p99 under the storm: %s (target ≤ %s: %s; %s without it)\n", []string{"refresh", "verify"}[k], loadtest.MS(p99s[1][k]), loadtest.MS(t), verdict(p99s[1][k] <= t), loadtest.MS(p99s[0][k]))
	}
	st := sr.storm
	ok, _, _ := st.ok.Get()
	shed, _, _ := st.shed.Get()
	bad, _, _ := st.bad.Get()
	bound := o.queueWait + time.Duration(sr.bcryptMS*1e6)
	worst := loadtest.Percentile(slices.Concat(ok, shed, bad), 1)
	fmt.Fprintf(w, "- the longest a login waited for its answer: %s (bound: AUTHD_LOGIN_QUEUE_WAIT %s + one compare, %.1f ms = %s: %s). 503s: p50 %s, max %s; 204s: p50 %s, p99 %s, max %s\n",
		loadtest.MS(worst), o.queueWait, sr.bcryptMS, loadtest.MS(bound), verdict(worst <= bound), loadtest.PMS(shed, .5), loadtest.PMS(shed, 1), loadtest.PMS(ok, .5), loadtest.PMS(ok, .99), loadtest.PMS(ok, 1))
	fmt.Fprintf(w, "- slots not sent, too many in flight: logins %d, measuring clients %d (quiet %d)\n", st.dropped[3], st.dropped[0]+st.dropped[1]+st.dropped[2], sr.quiet.dropped[0]+sr.quiet.dropped[1]+sr.quiet.dropped[2])
	for _, win := range []*stormWindow{sr.quiet, sr.storm} {
		for _, l := range []*loadtest.Latencies{&win.paced[0], &win.paced[1], &win.paced[2], &win.bad} {
			_, _, samples := l.Get()
			for _, e := range samples {
				fmt.Fprintf(w, "- %s error: %s\n", win.name, e)
			}
		}
	}
}

func (rep *report) writeAlgs(w io.Writer) {
	fmt.Fprintf(w, "\n### Signing algorithms\n\n")
	fmt.Fprintln(w, "Each on its own server: refresh signs a token per request; verify-fresh verifies one never seen before; verify-jwt presents one token, answered from authd's cache. Sign and verify in-process: authd's token package with the same key, one goroutine.")
	fmt.Fprintln(w)
	row := loadtest.Table(w, "alg", "sign, in-process", "verify, in-process", "refresh req/s", "refresh p99", "refresh authd CPU/req", "verify-fresh req/s", "verify-fresh p99", "verify-fresh authd CPU/req", "verify-jwt (cached) req/s", "verify-jwt authd CPU/req")
	for _, a := range rep.algs {
		c := [3][]any{a.refresh.cells(), a.fresh.cells(), a.cached.cells()}
		row(a.alg, usCell(a.signNS/1e3), usCell(a.verifyNS/1e3), c[0][0], c[0][2], usCell(us(a.refresh)), c[1][0], c[1][2], usCell(us(a.fresh)), c[2][0], usCell(us(a.cached)))
	}
}

func (rep *report) writeRoundTrips(w io.Writer) {
	fmt.Fprintf(w, "\n### Database round trips per request\n\n")
	fmt.Fprintln(w, "Sync and simple Query messages from authd on the PostgreSQL wire, one request at a time after a warm-up (but the last row, from every client at once); the statements by the auth tables they name. The total is the whole window's, background writes included.")
	fmt.Fprintln(w)
	row := loadtest.Table(w, "request", "requests", "total", "round trips", "statements executed")
	for _, r := range rep.roundTrips {
		var labels []string
		counts := map[string]int{}
		for _, sql := range r.sql {
			l := stmtLabel(sql)
			if counts[l]++; counts[l] == 1 {
				labels = append(labels, l)
			}
		}
		stmts := "none"
		for i, l := range labels {
			labels[i] = fmt.Sprintf("%d× %s", counts[l], l)
			stmts = strings.Join(labels[:i+1], "; ")
		}
		row(r.name, r.n, r.trips, strconv.FormatFloat(float64(r.trips)/float64(max(r.n, 1)), 'g', 3, 64), stmts)
	}
}
