package main

import (
	"cmp"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"authd/cmd/internal/loadtest"
)

func (rn *runner) errorCount() (n int64) {
	for _, r := range rn.results {
		_, errs, _ := r.lat.Get()
		n += errs
	}
	if sr := rn.stormRes; sr != nil && sr.windows[1] != nil {
		n += sr.windows[0].errors() + sr.windows[1].errors()
	}
	return n
}

// perReq is d over n requests in ms; "–" when unknown.
func perReq(d time.Duration, n int64) string {
	if d < 0 || n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(n))
}

func (rn *runner) write(w io.Writer) {
	o := rn.o
	fmt.Fprintf(w, "## authd-bench\n\n- %s/%s, %d CPUs (GOMAXPROCS %d), %s, PostgreSQL %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), rn.pgVersion)
	fmt.Fprintf(w, "- %s per scenario, %d keep-alive clients, %d users, bcrypt cost %d\n", o.duration, o.concurrency, o.harness.Users, loadtest.BcryptCost)
	fmt.Fprintln(w, "- CPU/req from /proc (10 ms ticks): authd, its PostgreSQL backends, this bench client, all on this machine")
	var keys []string
	for _, a := range rn.algs {
		k := a.alg + " (JWT_SECRET)"
		if a.kid != "" {
			k = a.alg + " (key " + a.kid + " from authd keygen, no JWT_SECRET)"
		}
		keys = append(keys, k)
	}
	fmt.Fprintf(w, "- signing: %s, each on its own server; rows marked with an algorithm ran on each\n", strings.Join(keys, ", "))
	fmt.Fprintln(w, "- the rotate statement is refresh's, as authd sent it, run alone with pgx, each connection rotating its own chain; synchronous_commit=off is not what authd does")
	fmt.Fprintln(w)
	row := loadtest.Table(w, "scenario", "requests", "req/s", "p50", "p99", "authd CPU/req", "DB CPU/req", "bench CPU/req", "errors")
	for _, r := range rn.results {
		lat, errs, samples := r.lat.Get()
		n := int64(len(lat))
		row(r.name, n, fmt.Sprintf("%.0f", r.rate()), loadtest.PMS(lat, .5), loadtest.PMS(lat, .99), perReq(r.cpu[0], n), perReq(r.cpu[1], n), perReq(r.cpu[2], n), errs)
		for _, note := range slices.Concat(r.notes, samples) {
			rn.notes = append(rn.notes, r.name+": "+note)
		}
	}
	fmt.Fprintln(w)
	for _, n := range rn.notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintf(w, "\n### Signing algorithms, in-process\n\nauthd's token package with each server's key, one goroutine: one access token signed, and verified (uncached).\n\n")
	row = loadtest.Table(w, "alg", "sign", "verify")
	for _, a := range rn.algs {
		row(a.alg, fmt.Sprintf("%.1f µs", a.signNS/1e3), fmt.Sprintf("%.1f µs", a.verifyNS/1e3))
	}
	rn.writeStorm(w)
	rn.writeRoundTrips(w)
}

func (rn *runner) writeStorm(w io.Writer) {
	sr, o := rn.stormRes, rn.o
	if sr == nil || sr.windows[1] == nil {
		return
	}
	fmt.Fprintf(w, "\n### Login storm\n\nLogins open-loop at %g× the bcrypt ceiling (%.1f/s: %d CPUs over one compare's CPU; %.0f/s offered) for %s, while refresh (%g/s), GET /auth/verify with one cached Bearer token (%g/s) and GET /healthz (%g/s) are paced; first the same %s without the flood. AUTHD_LOGIN_QUEUE_WAIT=%s.\n\n",
		o.stormFactor, sr.ceilingRate, runtime.GOMAXPROCS(0), sr.loginRate, o.duration, o.stormRates[0], o.stormRates[1], o.stormRates[2], o.duration, o.queueWait)
	row := loadtest.Table(w, "window", "logins sent", "204", "503 shed", "logins done/s", "refresh p50", "refresh p99", "verify p50", "verify p99", "healthz p99", "errors")
	var lat [2][6][]time.Duration // quiet, storm: refresh, verify, healthz, 204, 503, other
	for i, win := range sr.windows {
		for k := range lat[i] {
			lat[i][k], _, _ = win.lat[k].Get()
		}
		l := lat[i]
		logins := []any{len(l[3]) + len(l[4]) + len(l[5]), len(l[3]), len(l[4]), fmt.Sprintf("%.1f", float64(len(l[3]))/win.elapsed.Seconds())}
		if i == 0 {
			logins = []any{"–", "–", "–", "–"}
		}
		row(append(append([]any{win.name}, logins...), loadtest.PMS(l[0], .5), loadtest.PMS(l[0], .99), loadtest.PMS(l[1], .5), loadtest.PMS(l[1], .99), loadtest.PMS(l[2], .99), win.errors())...)
	}
	verdict := map[bool]string{true: "met", false: "NOT met"}
	st := lat[1]
	p99 := [2]time.Duration{loadtest.Percentile(st[0], .99), loadtest.Percentile(st[1], .99)}
	fmt.Fprintf(w, "\n- under the storm: refresh p99 ≤ 20 ms: %s; verify p99 ≤ 5 ms: %s\n", verdict[p99[0] <= 20*time.Millisecond], verdict[p99[1] <= 5*time.Millisecond])
	bound := o.queueWait + time.Duration(sr.bcryptMS*1e6)
	worst := loadtest.Percentile(slices.Concat(st[3], st[4], st[5]), 1)
	fmt.Fprintf(w, "- the longest a login waited for its answer: %s (bound: AUTHD_LOGIN_QUEUE_WAIT %s + one compare, %.1f ms = %s: %s). 503s: p50 %s, max %s; 204s: p50 %s, p99 %s, max %s\n",
		loadtest.MS(worst), o.queueWait, sr.bcryptMS, loadtest.MS(bound), verdict[worst <= bound], loadtest.PMS(st[4], .5), loadtest.PMS(st[4], 1), loadtest.PMS(st[3], .5), loadtest.PMS(st[3], .99), loadtest.PMS(st[3], 1))
	for _, win := range sr.windows {
		if n := win.dropped.Load(); n > 0 {
			fmt.Fprintf(w, "- %s: %d slots not sent, too many in flight or no free session\n", win.name, n)
		}
		for k := range win.lat {
			_, _, samples := win.lat[k].Get()
			for _, e := range samples {
				fmt.Fprintf(w, "- %s error: %s\n", win.name, e)
			}
		}
	}
}

func (rn *runner) writeRoundTrips(w io.Writer) {
	fmt.Fprintf(w, "\n### Database round trips per request\n\n")
	fmt.Fprintln(w, "Sync and simple Query messages from authd on the PostgreSQL wire, one request at a time after a warm-up (but the last row, from every client at once); the statements by the auth tables they name. The total is the whole window's, background writes included.")
	fmt.Fprintln(w)
	row := loadtest.Table(w, "request", "requests", "total", "round trips", "statements executed")
	for _, r := range rn.roundTrips {
		var labels []string
		counts := map[string]int{}
		for _, sql := range r.sql {
			l := stmtLabel(sql)
			if counts[l]++; counts[l] == 1 {
				labels = append(labels, l)
			}
		}
		for i, l := range labels {
			labels[i] = fmt.Sprintf("%d× %s", counts[l], l)
		}
		row(r.name, r.n, r.trips, strconv.FormatFloat(float64(r.trips)/float64(max(r.n, 1)), 'g', 3, 64), cmp.Or(strings.Join(labels, "; "), "none"))
	}
}

var authTableRe = regexp.MustCompile(`\bauth\.[a-z_]+`)

// stmtLabel names a statement by its verb and the auth tables it names:
// "select auth.api_key, auth.plan". Others keep their first words.
func stmtLabel(sql string) string {
	f := strings.Fields(strings.ToLower(sql))
	tables := slices.Compact(slices.Sorted(slices.Values(authTableRe.FindAllString(strings.ToLower(sql), -1))))
	if len(tables) == 0 || len(f) == 0 {
		return cmp.Or(strings.Join(f[:min(len(f), 4)], " "), "(empty)")
	}
	return f[0] + " " + strings.Join(tables, ", ")
}
