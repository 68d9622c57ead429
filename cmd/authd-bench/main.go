// Command authd-bench measures authd under load on real PostgreSQL:
// throughput, p50/p99 latency and CPU per request of login, refresh,
// logout and GET /auth/verify (JWT, cookie, API key) beside a bare
// endpoint and the bcrypt-only ceiling; login beside two busy processes;
// a login storm, polite (open loop)
// and hostile (a flood that ignores Retry-After); refresh beside its
// statement alone; each signing algorithm; and the database round trips
// each request makes.
//
//	go run ./cmd/authd-bench [-duration 10s] [-concurrency 8] [-algs HS256,ES256,EdDSA]
//
// The harness (cmd/internal/loadtest) gives it a throwaway database and
// an authd built from this checkout. The report is Markdown on standard
// output, progress on standard error; the exit status is non-zero when
// any request failed. Files: main (flags, keys, tokens, sessions by COPY,
// the report), scenarios (closed loops, CPU from /proc, the storm), flood,
// roundtrips (a counting wire proxy, the refresh statement alone).
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// stormFactor is the storm's logins per second offered, as a multiple of
// the bcrypt ceiling.
const stormFactor = 4.0

const serverApp = "authd-bench-server" // the servers' application_name, to charge their backends' CPU

type options struct {
	harness      loadtest.Config
	duration     time.Duration
	concurrency  int
	algs         []string      // in the order given
	verifyTokens int           // verify-fresh's pool, per algorithm
	queueWait    time.Duration // every server's AUTHD_LOGIN_QUEUE_WAIT
	stormRates   [3]float64    // refresh, verify, healthz per second
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("authd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{harness: loadtest.Config{Name: "authd-bench", Users: 100, Log: stderr}}
	o.harness.AddFlags(fs)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "timed length of each scenario")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent clients (keep-alive connections)")
	algs := fs.String("algs", "HS256,ES256,EdDSA", "comma list of signing algorithms (HS256, ES256, EdDSA, RS256), each on its own authd server; refresh, verify-fresh and verify-jwt run on each, the rest on the first's")
	fs.IntVar(&o.verifyTokens, "verify-tokens", 40000, "access tokens verify-fresh presents, signed here with the server's key, per algorithm (cycled if the run outlasts them)")
	fs.DurationVar(&o.queueWait, "login-queue-wait", 2*time.Second, "AUTHD_LOGIN_QUEUE_WAIT of every server: the longest a login waits for a bcrypt slot before 503")
	scale := fs.Float64("storm-scale", 1, "storm: the paced rates (refresh 200/s, GET /auth/verify 500/s, GET /healthz 100/s) times this")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.duration <= 0 || o.queueWait <= 0 || *scale <= 0:
		return nil, errors.New("-duration, -login-queue-wait and -storm-scale must be positive")
	case o.concurrency < 1 || o.harness.Users < 1 || o.verifyTokens < 1:
		return nil, errors.New("-concurrency, -users and -verify-tokens must be at least 1")
	}
	o.stormRates = [3]float64{200 * *scale, 500 * *scale, 100 * *scale}
	o.algs = strings.Split(*algs, ",") // authd keygen refuses an unknown one
	return o, nil
}

func main() {
	if os.Getenv(floodEnv) != "" {
		if err := floodChild(); err != nil {
			fmt.Fprintln(os.Stderr, "authd-bench flood:", err)
			os.Exit(1)
		}
		return
	}
	loadtest.Main("authd-bench", run)
}

// run measures each algorithm's server, then counts the database round
// trips and runs the refresh statement alone.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// The storm's logins come from one address, and a shed one keeps its
	// reserved failure: no failure limit per address, none reached per
	// user (still counted in the database, as login's round trips show).
	h, err := loadtest.Setup(ctx, o.harness, "AUTHD_LOGIN_QUEUE_WAIT="+o.queueWait.String(), "AUTHD_LOGIN_FAILURES_PER_IP=0", "AUTHD_LOGIN_FAILURES_PER_USER=1000000")
	if err != nil {
		return err
	}
	defer h.Close()
	rn := &runner{o: o, h: h, disk: newDiskProbe(ctx, h.Pool, h.Tmp)}
	if err := h.Pool.QueryRow(ctx, "show server_version").Scan(&rn.pgVersion); err != nil {
		return err
	}
	if rn.algs, err = prepareAlgs(ctx, h, o.algs); err != nil {
		return err
	}
	for _, a := range rn.algs {
		if err := rn.runAlg(ctx, a); err != nil {
			return err
		}
	}
	h.Logf("counting database round trips per request (%s server)", rn.algs[0].alg)
	sql, err := rn.countRoundTrips(ctx)
	if err != nil {
		return fmt.Errorf("count round trips: %w", err)
	}
	for _, async := range []bool{false, true} {
		if err := rn.ceiling(ctx, sql, async); err != nil {
			return err
		}
	}
	if n := rn.write(stdout); n > 0 {
		return fmt.Errorf("%d request(s) failed", n)
	}
	return nil
}

// runner holds what every part of a run shares, and what the report says.
type runner struct {
	o                                *options
	h                                *loadtest.Harness
	apiKey                           string // made once, used by the primary server
	access                           string // the primary server's access token
	pgVersion                        string
	algs                             []*alg    // the primary first
	results                          []*result // the main table
	bcrypt                           *result
	ceilingRate, bcryptMS, loginRate float64    // the storm's: logins/s; one compare's CPU; offered/s
	disk                             *diskProbe // the storm's and the flood's windows time the disk's flushes
	windows                          [2]*stormWindow
	floods                           [4]*floodWindow
	roundTrips                       []rtRow
	notes                            []string
}

// alg is one signing algorithm's server and its in-process figures.
type alg struct {
	alg, key string        // key: how the server signs, for the report
	primary  bool          // runs the scenarios that are not per algorithm
	env      []string      // the key material: JWT_SECRET, or AUTHD_SIGNING_KEYS_DIR alone
	iss      *token.Issuer // authd's token package with the same key, in this process

	signNS, verifyNS float64  // one access token, in this process
	tokens           []string // verify-fresh's
	refresh          *result
}

// prepareAlgs makes a key for each asymmetric algorithm with authd
// keygen; the first algorithm is the primary one.
func prepareAlgs(ctx context.Context, h *loadtest.Harness, names []string) ([]*alg, error) {
	var algs []*alg
	for _, name := range names {
		a := &alg{alg: name}
		secret, keys, kid := []byte(h.Secret), []*token.Key(nil), ""
		var err error
		if name != token.HS256 {
			dir := filepath.Join(h.Tmp, "keys-"+name)
			if _, err := h.Authd(ctx, "keygen", "--alg", name, "--out", dir); err != nil {
				return nil, err
			}
			// No JWT_SECRET, so that the server's key set is that key alone.
			a.env, secret = []string{"JWT_SECRET=", "AUTHD_SIGNING_KEYS_DIR=" + dir}, nil
			keys, kid, err = token.LoadKeyDir(dir)
		}
		var ks *token.KeySet
		if err == nil {
			ks, err = token.NewKeySet(secret, keys, kid)
		}
		if err == nil {
			a.iss, err = token.New(ks, token.Options{TTL: time.Hour})
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if a.key = "JWT_SECRET"; name != token.HS256 {
			a.key = "key " + ks.SigningKeyID() + " from authd keygen, no JWT_SECRET"
		}
		algs = append(algs, a)
	}
	algs[0].primary = true
	return algs, nil
}

// mint signs n access tokens with a's key here, for verify-fresh to
// present once each (signing here keeps the server's cache and CPU out of
// it), timing the signing and, for about d, the (uncached) verifying.
func (a *alg) mint(role string, n int, d time.Duration) error {
	a.tokens = make([]string, n)
	start := time.Now()
	for i := range a.tokens {
		var err error
		// No session: such a token (as the NATS callout issues for a
		// password) is judged live by its user alone, whose state the
		// server caches; a made-up session id would be refused.
		if a.tokens[i], _, err = a.iss.Issue("user_000001", role, ""); err != nil {
			return err
		}
	}
	a.signNS = float64(time.Since(start)) / float64(n)
	i, start := 0, time.Now()
	for ; i == 0 || time.Since(start) < d; i++ {
		if _, err := a.iss.Verify(a.tokens[0]); err != nil {
			return err
		}
	}
	a.verifyNS = float64(time.Since(start)) / float64(i)
	return nil
}

// insertSessions stores n sessions of a refresh token each with COPY
// (logging in that many would be bcrypt-bound) and returns the tokens;
// then vacuum (analyze), so that no autovacuum lands in a timed window.
func insertSessions(ctx context.Context, pool *pgxpool.Pool, users []string, n int) ([]string, error) {
	plain, sessions, tokens := make([]string, n), make([][]any, n), make([][]any, n)
	expires := time.Now().Add(30 * 24 * time.Hour)
	for i := range n {
		var hash []byte
		plain[i], hash, _ = token.NewRefresh()
		sessions[i] = []any{uuid.New(), users[i%len(users)], expires}
		tokens[i] = []any{hash, sessions[i][0], expires}
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username", "expires_at"}, pgx.CopyFromRows(sessions)); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "refresh_token"}, []string{"token_hash", "session_id", "expires_at"}, pgx.CopyFromRows(tokens))
		return err
	})
	if err == nil {
		_, err = pool.Exec(ctx, "vacuum (analyze) auth.session, auth.refresh_token")
	}
	if err != nil {
		return nil, fmt.Errorf("insert sessions: %w", err)
	}
	return plain, nil
}

// perReq is d over n requests in ms; "–" when unknown.
func perReq(d time.Duration, n int64) string {
	if d < 0 || n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(n))
}

// write writes the report and returns how many requests failed.
func (rn *runner) write(w io.Writer) (failed int64) {
	o := rn.o
	fmt.Fprintf(w, "## authd-bench\n\n- %s/%s, %d CPUs (GOMAXPROCS %d), %s, PostgreSQL %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), rn.pgVersion)
	fmt.Fprintf(w, "- %s per scenario, %d keep-alive clients, %d users, bcrypt cost %d\n", o.duration, o.concurrency, o.harness.Users, loadtest.BcryptCost)
	fmt.Fprintln(w, "- CPU/req from /proc (10 ms ticks): authd, its PostgreSQL backends, this bench client, all on this machine")
	var keys []string
	for _, a := range rn.algs {
		keys = append(keys, a.alg+" ("+a.key+")")
	}
	fmt.Fprintf(w, "- signing: %s, each on its own server; rows marked with an algorithm ran on each\n", strings.Join(keys, ", "))
	fmt.Fprint(w, "- the rotate statement is refresh's, as authd sent it, run alone with pgx, each connection rotating its own chain; synchronous_commit=off is not what authd does\n\n")
	row := loadtest.Table(w, "scenario", "requests", "req/s", "p50", "p99", "authd CPU/req", "DB CPU/req", "bench CPU/req", "errors")
	for _, r := range rn.results {
		lat, errs, samples := r.lat.Get()
		n := int64(len(lat))
		failed += errs
		row(r.name, n, fmt.Sprintf("%.0f", r.rate()), loadtest.PMS(lat, .5), loadtest.PMS(lat, .99), perReq(r.cpu[0], n), perReq(r.cpu[1], n), perReq(r.cpu[2], n), errs)
		for _, e := range samples {
			rn.notes = append(rn.notes, r.name+": "+e)
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
	failed += rn.writeStorm(w)
	failed += rn.writeFlood(w)
	rn.writeRoundTrips(w)
	return failed
}

func (rn *runner) writeStorm(w io.Writer) (failed int64) {
	o := rn.o
	fmt.Fprintf(w, "\n### Login storm\n\nLogins open-loop, each from an address of its own (X-Forwarded-For), at %g× the bcrypt ceiling (%.1f/s: %d CPUs over one compare's CPU; %.0f/s offered) for %s, while refresh (%g/s), GET /auth/verify with one cached Bearer token (%g/s) and GET /healthz (%g/s) are paced; first the same %s without the flood. AUTHD_LOGIN_QUEUE_WAIT=%s.\n\n",
		stormFactor, rn.ceilingRate, runtime.GOMAXPROCS(0), rn.loginRate, o.duration, o.stormRates[0], o.stormRates[1], o.stormRates[2], o.duration, o.queueWait)
	row := loadtest.Table(w, "window", "logins sent", "204", "503 shed", "logins done/s", "refresh p50", "refresh p99", "verify p50", "verify p99", "healthz p99", "disk flush max", "errors")
	var lat [2][6][]time.Duration // quiet, storm: refresh, verify, healthz, 204, 503, other
	for i, win := range rn.windows {
		var errs int64
		for k := range lat[i] {
			var e int64
			lat[i][k], e, _ = win.lat[k].Get()
			errs += e
		}
		failed += errs
		l := lat[i]
		logins := []any{len(l[3]) + len(l[4]) + len(l[5]), len(l[3]), len(l[4]), fmt.Sprintf("%.1f", float64(len(l[3]))/win.elapsed.Seconds())}
		if i == 0 {
			logins = []any{"–", "–", "–", "–"}
		}
		row(append(append([]any{win.name}, logins...), loadtest.PMS(l[0], .5), loadtest.PMS(l[0], .99), loadtest.PMS(l[1], .5), loadtest.PMS(l[1], .99), loadtest.PMS(l[2], .99), win.disk, errs)...)
	}
	st := lat[1]
	bound := o.queueWait + time.Duration(rn.bcryptMS*1e6)
	worst := loadtest.Percentile(slices.Concat(st[3], st[4], st[5]), 1)
	fmt.Fprintf(w, "\n- the longest a login waited for its answer: %s (bound: AUTHD_LOGIN_QUEUE_WAIT %s + one compare, %.1f ms = %s: %s). 503s: p50 %s, max %s; 204s: p50 %s, p99 %s, max %s\n",
		loadtest.MS(worst), o.queueWait, rn.bcryptMS, loadtest.MS(bound), map[bool]string{true: "met", false: "NOT met"}[worst <= bound], loadtest.PMS(st[4], .5), loadtest.PMS(st[4], 1), loadtest.PMS(st[3], .5), loadtest.PMS(st[3], .99), loadtest.PMS(st[3], 1))
	fmt.Fprintf(w, "- %s\n", rn.disk.note())
	for _, win := range rn.windows {
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
	return failed
}

func (rn *runner) writeRoundTrips(w io.Writer) {
	fmt.Fprint(w, "\n### Database round trips per request\n\nSync and simple Query messages from authd on the PostgreSQL wire, one request at a time after a warm-up (but the last row, from every client at once); the statements by verb and the auth tables they name. The total is the whole window's, background writes included.\n\n")
	row := loadtest.Table(w, "request", "requests", "total", "round trips", "statements")
	for _, r := range rn.roundTrips {
		var labels []string
		for _, sql := range r.sql {
			if l := stmtLabel(sql); !slices.Contains(labels, l) {
				labels = append(labels, l)
			}
		}
		row(r.name, r.n, r.trips, strconv.FormatFloat(float64(r.trips)/float64(max(r.n, 1)), 'g', 3, 64), cmp.Or(strings.Join(labels, "; "), "none"))
	}
}

var authTableRe = regexp.MustCompile(`\bauth\.[a-z_]+`)

// stmtLabel names a statement by its verb and the auth tables it names:
// "select auth.api_key, auth.plan".
func stmtLabel(sql string) string {
	sql = strings.ToLower(strings.Join(strings.Fields(sql), " "))
	verb, _, _ := strings.Cut(sql, " ")
	return strings.TrimSpace(verb + " " + strings.Join(slices.Compact(slices.Sorted(slices.Values(authTableRe.FindAllString(sql, -1)))), ", "))
}
