// Command authd-bench measures authd under load on real PostgreSQL: login,
// refresh and logout throughput, p50/p99 latency and server CPU per request,
// beside the bcrypt-only ceiling that bounds login on this machine; and the
// gateway check GET /auth/verify (a JWT in Authorization or in the access
// cookie, or an X-API-Key) beside a bare endpoint on the same server.
//
// Everything it touches is its own and on 127.0.0.1: a throwaway database
// (authd_bench_<random>) and role on the server at -admin-url, an authd
// binary built into a temporary directory, and a server on a free port. All
// of it is removed at exit, on error and on Ctrl-C too.
//
//	go run ./cmd/authd-bench [-duration 10s] [-concurrency 8] [-scenarios login,refresh,logout,bare,verify-jwt,verify-cookie,verify-apikey,verify-fresh,storm] [-algs HS256,ES256,EdDSA]
//	go run ./cmd/authd-bench -growth [-growth-tokens 1000,100000,1000000] [-growth-rate 1000] [-duration 5s]
//
// Beside those scenarios (storm.go has the details): storm, a login flood
// at 4× the bcrypt ceiling while refresh, verify and /healthz are measured
// at fixed rates, against the same clients without the flood; with
// refresh, the database ceiling of refresh, its one statement run directly
// with pgx, beside refresh over HTTP; and -growth, instead of the
// scenarios, refresh latency at 1 thousand, 100 thousand and 1 million
// stored refresh tokens. Every server gets AUTHD_LOGIN_QUEUE_WAIT from
// -login-queue-wait (2s).
//
// The report is a Markdown table on standard output; progress goes to
// standard error. The exit status is non-zero when any request failed.
//
// How the numbers are taken:
//
//   - CPU per request is the delta of utime+stime in /proc/<pid>/stat over
//     the timed window, divided by the requests answered in it, for the
//     authd process (all threads), for the PostgreSQL backends serving it
//     (found by application_name in pg_stat_activity) and for this process.
//     The unit is the clock tick (getconf CLK_TCK, 100 on Linux: 10 ms), so
//     short runs are coarse. The client, authd and PostgreSQL share the
//     machine; the report also splits the machine's CPU (/proc/stat) over
//     each window and warns when other processes took a large share.
//   - Database round trips per request are counted exactly, not timed: a
//     second authd instance talks to PostgreSQL through a small proxy here
//     that reads the frontend wire protocol and counts Sync and Query
//     messages (each one ends in a ReadyForQuery the client waits for), with
//     pgxpool's liveness pings ("-- ping") reported apart. The timed server
//     connects directly, so the proxy costs it nothing.
//     pg_stat_database.xact_commit was not used: since PostgreSQL 15 a busy
//     backend flushes its counters at most once a second and an idle one
//     only after 10 s, so a before/after delta misses up to a second of
//     traffic per backend.
//   - The logout scenario needs one live session per request, more than
//     logging in (bcrypt-bound) could create in reasonable time, so its
//     sessions are inserted with COPY into auth.session and
//     auth.refresh_token before timing, each with a fresh random refresh
//     token stored as token.HashRefresh, as authd stores its own. After the
//     run, the number of sessions revoked must equal the 204s counted.
//   - The bare scenario is GET /healthz: the same echo middleware chain
//     (request logger, recover, timeout) answering a constant 15-byte body,
//     the floor under any endpoint of this server. The verify scenarios
//     present one access token from one login (verify-jwt as
//     "Authorization: Bearer", verify-cookie as the access_token cookie)
//     or one API key, created with `authd apikey create` for a plan made
//     here with a rate so high it never trips. Each 200 must name the
//     bench role in X-Auth-Role and carry a Bearer Authorization. Every
//     verify scenario brings bare along, and the report gives each one's
//     throughput as a share of bare's, measured in successive windows.
//   - For API keys the round-trip count is taken twice on the counting
//     server: 200 sequential requests spread over one second (authd
//     re-reads a cached key at most once a second and records last_used_at
//     at most once a second, in the background) and all clients at full
//     speed; both also list the statements seen, by table.
//
// Signing algorithms (-algs, default HS256,ES256,EdDSA; RS256 too): the
// scenarios of -alg-scenarios (default refresh, verify-fresh, verify-jwt)
// run once per algorithm, each algorithm on its own authd server; their
// rows are labelled "refresh (ES256)" and so on. The HS256 server gets
// JWT_SECRET only; each other one gets AUTHD_SIGNING_KEYS_DIR holding one
// key made for it with `authd keygen --alg ALG`, and no JWT_SECRET, so
// that its key set is that key alone. Every token a server hands out is
// checked to carry the expected alg and kid. The remaining scenarios
// (login, bcrypt-bound, among them) run once, on the primary server: HS256
// if listed, else the first algorithm; it runs first.
//
//   - verify-fresh presents a different access token on every request, so
//     that /auth/verify really checks a signature: verify-jwt repeats one
//     token, which after the first request is answered from authd's
//     verified-token cache (keyed by the token's bytes). The tokens are
//     made before the timed window: the access tokens the refresh scenario
//     received on the same server, topped up to -verify-tokens by
//     inserting sessions with COPY and refreshing each once. Each token is
//     used once; when the pool runs out it is cycled, and the report says
//     when that happened and how many requests may have been cache hits
//     (the cache holds 10,000 tokens and evicts at random, so a pool
//     several times that size keeps them rare).
//   - The comparison table gives, per algorithm, the authd CPU per refresh
//     (which signs one token) and per verify-fresh, and each one's
//     difference from HS256's; and the cost of signing and of verifying one
//     token measured in this process with authd's own token package and
//     the same key (one goroutine, no HTTP), which is exact where the
//     differences between server runs are within their noise.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
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
	"path/filepath"
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
	"authd/server"
	"authd/store"
	"authd/token"
)

const (
	bcryptCost    = 10
	benchPassword = "authd-bench-password"

	// application_name of each client of the bench database, so that CPU
	// is charged to the right PostgreSQL backends.
	benchAppName  = "authd-bench"
	serverAppName = "authd-bench-server"
	rtAppName     = "authd-bench-roundtrips"

	refreshPath = loadtest.RefreshPath
	verifyPath  = "/auth/verify"
	barePath    = "/healthz"

	// The API key's plan: a rate no bench can reach, so that the limiter
	// is consulted on every request but never refuses.
	benchPlan    = "authd-bench"
	benchPlanRPM = 100_000_000
)

var allScenarios = []string{"login", "bcrypt", "refresh", "logout", "bare", "verify-jwt", "verify-cookie", "verify-apikey", "verify-fresh", "storm"}

// verifyScenarios are compared with bare, which each of them brings along.
var verifyScenarios = []string{"verify-fresh", "verify-jwt", "verify-cookie", "verify-apikey"}

const defaultScenarios = "login,refresh,logout,bare,verify-jwt,verify-cookie,verify-apikey,verify-fresh,storm"

// allAlgs are the signing algorithms authd supports.
var allAlgs = []string{token.HS256, token.ES256, token.EdDSA, token.RS256}

const (
	defaultAlgs         = "HS256,ES256,EdDSA"
	defaultAlgScenarios = "refresh,verify-fresh,verify-jwt"
	// verifyCacheSize is how many verified tokens authd remembers,
	// evicting one at random when full.
	verifyCacheSize = server.VerifiedCacheSize
)

func main() { loadtest.Main("authd-bench", run) }

type options struct {
	duration       time.Duration
	concurrency    int
	users          int
	harness        loadtest.Config // -admin-url, -authd
	scenarios      map[string]bool
	logLevel       string
	logoutSessions int
	roundTrips     bool
	algs           []string        // in the order given
	algScenarios   map[string]bool // run once per algorithm
	verifyTokens   int

	loginQueueWait   time.Duration // every server's AUTHD_LOGIN_QUEUE_WAIT
	stormFactor      float64
	stormRefreshRate float64
	stormVerifyRate  float64
	stormHealthRate  float64
	dbCeiling        bool
	growth           bool
	growthTokens     []int64
	growthRate       float64
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("authd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{harness: loadtest.Config{Name: "authd-bench"}}
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "timed length of each scenario")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent clients (keep-alive connections)")
	fs.IntVar(&o.users, "users", 100, "users to create; login cycles through them")
	o.harness.AddFlags(fs)
	scen := fs.String("scenarios", defaultScenarios, "comma list of login, refresh, logout, bare, verify-jwt, verify-cookie, verify-apikey, verify-fresh (and bcrypt; the bcrypt ceiling always runs with login, bare with any verify scenario)")
	algs := fs.String("algs", defaultAlgs, "comma list of signing algorithms (HS256, ES256, EdDSA, RS256), each on its own authd server")
	algScen := fs.String("alg-scenarios", defaultAlgScenarios, "the scenarios (of -scenarios) to run once per algorithm; the others run once, on the HS256 server (else the first algorithm's)")
	fs.IntVar(&o.verifyTokens, "verify-tokens", 40000, "distinct access tokens for verify-fresh, per algorithm (cycled if the run outlasts them)")
	fs.StringVar(&o.logLevel, "server-log-level", "warn", "AUTHD_LOG_LEVEL of the server (request lines are logged at info)")
	fs.IntVar(&o.logoutSessions, "logout-sessions", 0, "sessions to pre-create for logout; 0 sizes the pool from the refresh rate")
	fs.BoolVar(&o.roundTrips, "roundtrips", true, "count database round trips per request through a wire-protocol proxy")
	fs.DurationVar(&o.loginQueueWait, "login-queue-wait", 2*time.Second, "AUTHD_LOGIN_QUEUE_WAIT of every server: the longest a login waits for a bcrypt slot before 503")
	fs.Float64Var(&o.stormFactor, "storm-factor", 4, "storm: logins per second offered, as a multiple of the bcrypt ceiling")
	fs.Float64Var(&o.stormRefreshRate, "storm-refresh-rate", 200, "storm: refreshes per second sent during both windows")
	fs.Float64Var(&o.stormVerifyRate, "storm-verify-rate", 500, "storm: GET /auth/verify per second sent during both windows")
	fs.Float64Var(&o.stormHealthRate, "storm-health-rate", 100, "storm: GET /healthz per second sent during both windows")
	fs.BoolVar(&o.dbCeiling, "db-ceiling", true, "with refresh: also run the refresh statement alone with pgx, for its database ceiling")
	fs.BoolVar(&o.growth, "growth", false, "instead of the scenarios: refresh latency at each stored-token count of -growth-tokens")
	growthTokens := fs.String("growth-tokens", "1000,100000,1000000", "-growth: refresh tokens stored at each step (ascending)")
	fs.Float64Var(&o.growthRate, "growth-rate", 1000, "-growth: refreshes per second")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case o.duration <= 0:
		return nil, errors.New("-duration must be positive")
	case o.concurrency < 1:
		return nil, errors.New("-concurrency must be at least 1")
	case o.users < 1:
		return nil, errors.New("-users must be at least 1")
	case o.logoutSessions < 0:
		return nil, errors.New("-logout-sessions must not be negative")
	case o.verifyTokens < 1:
		return nil, errors.New("-verify-tokens must be at least 1")
	case o.loginQueueWait <= 0:
		return nil, errors.New("-login-queue-wait must be positive")
	case o.stormFactor <= 0 || o.stormRefreshRate < 0 || o.stormVerifyRate < 0 || o.stormHealthRate < 0:
		return nil, errors.New("-storm-factor must be positive and the storm rates not negative")
	case o.growthRate <= 0:
		return nil, errors.New("-growth-rate must be positive")
	}
	for _, f := range strings.Split(*growthTokens, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || n < 1 || (len(o.growthTokens) > 0 && n <= o.growthTokens[len(o.growthTokens)-1]) {
			return nil, fmt.Errorf("-growth-tokens: want ascending positive counts, got %q", *growthTokens)
		}
		o.growthTokens = append(o.growthTokens, n)
	}
	for _, a := range strings.Split(*algs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		i := slices.IndexFunc(allAlgs, func(k string) bool { return strings.EqualFold(k, a) })
		if i < 0 {
			return nil, fmt.Errorf("-algs: unknown algorithm %q (want %s)", a, strings.Join(allAlgs, ", "))
		}
		if !slices.Contains(o.algs, allAlgs[i]) {
			o.algs = append(o.algs, allAlgs[i])
		}
	}
	if len(o.algs) == 0 {
		return nil, errors.New("-algs: none given")
	}
	o.algScenarios = map[string]bool{}
	for _, s := range strings.Split(*algScen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) || s == "bcrypt" || s == "storm" {
			return nil, fmt.Errorf("-alg-scenarios: %q is not a scenario that runs on a server", s)
		}
		o.algScenarios[s] = true
	}
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(*scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want %s)", s, strings.Join(allScenarios, ", "))
		}
		o.scenarios[s] = true
	}
	if len(o.scenarios) == 0 {
		return nil, errors.New("-scenarios: none given")
	}
	if o.scenarios["login"] || o.scenarios["storm"] {
		o.scenarios["bcrypt"] = true // the storm's rate is a multiple of it
	}
	for _, v := range verifyScenarios {
		if o.scenarios[v] {
			o.scenarios["bare"] = true
		}
	}
	return o, nil
}

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "authd-bench: "+format+"\n", a...) }

	// h.Close removes all the run made, whatever happens after this
	// point; h.Defer adds to it.
	o.harness.Logf = logf
	h, err := loadtest.Setup(ctx, o.harness)
	if err != nil {
		return err
	}
	defer h.Close()
	bin, tmp, dbName, roleName := h.Bin, h.Tmp, h.DBName, h.Role

	hmacSecret := loadtest.NewSecret()
	serverDBURL, err := loadtest.PgURL(h.DBURL, func(u *url.URL, q url.Values) { q.Set("application_name", serverAppName) })
	if err != nil {
		return err
	}
	// baseEnv is every server's; the key material is each algorithm's.
	baseEnv := []string{
		"AUTHD_BCRYPT_COST=" + strconv.Itoa(bcryptCost),
		"AUTHD_LOG_LEVEL=" + o.logLevel,
		"AUTHD_LOGIN_QUEUE_WAIT=" + o.loginQueueWait.String(),
	}
	baseEnv = append(baseEnv, o.harness.ServerEnv...)
	hmacEnv := append(slices.Clone(baseEnv), "JWT_SECRET="+hmacSecret)
	if err := loadtest.Migrate(ctx, bin, loadtest.AuthdEnv(append(slices.Clone(hmacEnv), "DATABASE_URL="+serverDBURL))); err != nil {
		return err
	}

	benchURL, err := loadtest.PgURL(h.DBURL, func(u *url.URL, q url.Values) { q.Set("application_name", benchAppName) })
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, benchURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", dbName, err)
	}
	h.Defer(pool.Close)
	var pgVersion string
	if err := pool.QueryRow(ctx, "show server_version").Scan(&pgVersion); err != nil {
		return fmt.Errorf("connect to %s: %w", dbName, err)
	}

	logf("creating %d users (bcrypt cost %d)", o.users, bcryptCost)
	users := make([]string, o.users)
	for i := range users {
		users[i] = fmt.Sprintf("bench_%06d", i+1)
	}
	hash, err := loadtest.CreateUsers(ctx, pool, users, benchPassword, bcryptCost, roleName)
	if err != nil {
		return err
	}

	algs, err := prepareAlgs(ctx, o, bin, tmp, hmacSecret, logf)
	if err != nil {
		return err
	}
	rep := &report{opts: o, pgVersion: pgVersion, tick: clockTick()}
	rn := &runner{
		o: o, logf: logf, bin: bin, tmp: tmp,
		baseEnv: baseEnv, hmacEnv: hmacEnv,
		serverDBURL: serverDBURL, benchURL: benchURL, dbName: dbName,
		pool: pool, role: roleName, users: users, hash: hash, rep: rep,
	}
	if o.growth {
		rep.growthAlg = algs[0].alg
		if err := rn.runGrowth(ctx, algs[0]); err != nil {
			return err
		}
		rep.writeGrowth(stdout)
		if n := rep.errorCount(); n > 0 {
			return fmt.Errorf("%d request(s) failed", n)
		}
		return nil
	}
	for _, a := range algs {
		if err := rn.runAlg(ctx, a); err != nil {
			return err
		}
	}

	if o.roundTrips && !(len(o.scenarios) == 1 && o.scenarios["bcrypt"]) {
		logf("counting database round trips per request (%s server)", algs[0].alg)
		env := append(slices.Clone(baseEnv), algs[0].env...)
		rows, note, err := countRoundTrips(ctx, o, bin, env, h.DBURL, pool, users, rn.fx, rn.freshPool, tmp)
		if err != nil {
			return fmt.Errorf("count round trips: %w", err)
		}
		rep.roundTrips, rep.rtNote = rows, note
	}

	rep.write(stdout)
	for _, r := range rep.results {
		for _, e := range r.errSamples {
			logf("%s error: %s", r.name, e)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if n := rep.errorCount(); n > 0 {
		return fmt.Errorf("%d request(s) failed", n)
	}
	return nil
}

// ---- signing algorithms ------------------------------------------------------

// algSetup is one signing algorithm's server configuration.
type algSetup struct {
	alg     string
	primary bool     // runs the scenarios that are not per algorithm
	env     []string // the key material: JWT_SECRET, or AUTHD_SIGNING_KEYS_DIR
	kid     string   // the key's id; "" for HS256
	keyDir  string   // AUTHD_SIGNING_KEYS_DIR
	secret  []byte   // HS256: the secret as authd reads JWT_SECRET
}

// prepareAlgs makes a key for each asymmetric algorithm with authd
// keygen, and returns the algorithms with the primary one first.
func prepareAlgs(ctx context.Context, o *options, bin, tmp, hmacSecret string, logf func(string, ...any)) ([]*algSetup, error) {
	var algs []*algSetup
	for _, alg := range o.algs {
		a := &algSetup{alg: alg}
		if alg == token.HS256 {
			a.env = []string{"JWT_SECRET=" + hmacSecret}
			a.secret = []byte(hmacSecret)
		} else {
			a.keyDir = filepath.Join(tmp, "keys-"+alg)
			kid, err := keygen(ctx, bin, alg, a.keyDir)
			if err != nil {
				return nil, err
			}
			a.kid = kid
			a.env = []string{"AUTHD_SIGNING_KEYS_DIR=" + a.keyDir}
			logf("%s: key %s made with authd keygen", alg, kid)
		}
		algs = append(algs, a)
	}
	p := max(slices.IndexFunc(algs, func(a *algSetup) bool { return a.alg == token.HS256 }), 0)
	algs[p].primary = true
	return append([]*algSetup{algs[p]}, append(algs[:p:p], algs[p+1:]...)...), nil
}

// keygen runs `authd keygen --alg alg --out dir` and returns the new kid.
func keygen(ctx context.Context, bin, alg, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "keygen", "--alg", alg, "--out", dir)
	cmd.Env = loadtest.AuthdEnv(nil)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("authd keygen --alg %s: %v\n%s", alg, err, stderr.String())
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if kid, ok := strings.CutPrefix(line, "kid:"); ok && strings.TrimSpace(kid) != "" {
			return strings.TrimSpace(kid), nil
		}
	}
	return "", fmt.Errorf("authd keygen --alg %s: no \"kid:\" line in its output:\n%s", alg, stdout.String())
}

// tokenHeader returns a JWT's alg and kid, unverified.
func tokenHeader(raw string) (alg, kid string, err error) {
	h, _, ok := strings.Cut(raw, ".")
	if !ok {
		return "", "", errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", "", fmt.Errorf("JWT header: %w", err)
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		return "", "", fmt.Errorf("JWT header: %w", err)
	}
	return hdr.Alg, hdr.Kid, nil
}

// algResult is what the report says about one algorithm.
type algResult struct {
	alg, kid   string
	primary    bool
	tokenBytes int
	// signNS and verifyNS are one access token's cost in this process.
	signNS, verifyNS float64
	refresh          *result // signs one token per request
	fresh            *result // verify-fresh: verifies one per request
	cached           *result // verify-jwt: answered from the cache
	pool             *poolStats
}

// check makes sure authd signed tok with the algorithm and key it was
// given, and records the token's size.
func (ar *algResult) check(tok, from string) error {
	alg, kid, err := tokenHeader(tok)
	if err != nil {
		return fmt.Errorf("%s: token from %s: %w", ar.alg, from, err)
	}
	if alg != ar.alg || kid != ar.kid {
		return fmt.Errorf("%s server: token from %s has alg %q, kid %q; want %q, %q", ar.alg, from, alg, kid, ar.alg, ar.kid)
	}
	if ar.tokenBytes == 0 {
		ar.tokenBytes = len(tok)
	}
	return nil
}

// poolStats describe verify-fresh's tokens and how far they went.
type poolStats struct {
	size, fromRefresh, minted int
	requests                  int64
	ranOutAfter               time.Duration // 0: never
}

// reused is the number of requests that presented a token again.
func (p *poolStats) reused() int64 { return max(p.requests-int64(p.size), 0) }

// cacheHitShare estimates the share of verify-fresh requests that authd
// answered from its verified-token cache: only reused tokens can hit, and
// one comes back after size-1 other tokens, each a miss that (the cache
// being full) evicted a random entry, so it survives with probability
// (1-1/C)^(size-1).
func cacheHitShare(size int, requests int64) float64 {
	if requests <= 0 || int64(size) >= requests {
		return 0
	}
	survive := 1.0
	if size-1 >= verifyCacheSize {
		survive = math.Pow(1-1.0/verifyCacheSize, float64(size-1))
	}
	return float64(requests-int64(size)) / float64(requests) * survive
}

// measureToken times signing and verifying one access token with authd's
// token package and a's key, in this process, on one goroutine, for about
// d each. The verify is the uncached one: the package has no cache.
func measureToken(a *algSetup, role string, d time.Duration) (signNS, verifyNS float64, err error) {
	var iss *token.Issuer
	if a.alg == token.HS256 {
		iss, err = token.NewIssuer(a.secret, time.Hour, "", nil)
	} else {
		var keys []*token.Key
		var signing string
		if keys, signing, err = token.LoadKeyDir(a.keyDir); err != nil {
			return 0, 0, err
		}
		var ks *token.KeySet
		if ks, err = token.NewKeySet(nil, keys, signing); err != nil {
			return 0, 0, err
		}
		iss, err = token.New(ks, token.Options{TTL: time.Hour})
	}
	if err != nil {
		return 0, 0, err
	}
	sid := uuid.NewString()
	var tok string
	timeIt := func(op func() error) (float64, error) {
		n, start := 0, time.Now()
		for n == 0 || time.Since(start) < d {
			for range 8 {
				if err := op(); err != nil {
					return 0, err
				}
			}
			n += 8
		}
		return float64(time.Since(start)) / float64(n), nil
	}
	if signNS, err = timeIt(func() (err error) {
		tok, _, err = iss.Issue("bench_000001", role, sid)
		return err
	}); err != nil {
		return 0, 0, err
	}
	if alg, _, err := tokenHeader(tok); err != nil || alg != a.alg {
		return 0, 0, fmt.Errorf("in-process %s token has alg %q (%v)", a.alg, alg, err)
	}
	verifyNS, err = timeIt(func() error {
		_, err := iss.Verify(tok)
		return err
	})
	return signNS, verifyNS, err
}

// runner holds what every algorithm's run shares.
type runner struct {
	o                     *options
	logf                  func(string, ...any)
	bin, tmp              string
	baseEnv, hmacEnv      []string
	serverDBURL, benchURL string
	dbName, role          string
	pool                  *pgxpool.Pool
	users                 []string
	hash                  string
	rep                   *report
	apiKey                string // made once, used by every server
	// The primary server's, for the round-trip count.
	fx        *fixtures
	freshPool []string
}

// runAlg starts a server signing with a and runs its scenarios: all of
// them on the primary server, those of -alg-scenarios on the others.
func (rn *runner) runAlg(ctx context.Context, a *algSetup) (err error) {
	o, logf, users := rn.o, rn.logf, rn.users
	ar := &algResult{alg: a.alg, kid: a.kid, primary: a.primary}
	rn.rep.algs = append(rn.rep.algs, ar)

	has := func(s string) bool { return o.scenarios[s] && (a.primary || o.algScenarios[s]) }
	label := func(s string) string {
		if o.algScenarios[s] {
			return s + " (" + a.alg + ")"
		}
		return s
	}

	// Before the server starts, so that nothing else competes for the CPU.
	d := min(max(o.duration/10, 20*time.Millisecond), time.Second)
	if ar.signNS, ar.verifyNS, err = measureToken(a, rn.role, d); err != nil {
		return fmt.Errorf("%s: in-process sign/verify: %w", a.alg, err)
	}
	if !slices.ContainsFunc(allScenarios, has) {
		return nil // none of -scenarios is in -alg-scenarios
	}

	env := append(slices.Clone(rn.baseEnv), a.env...)
	srv, err := loadtest.StartServer(ctx, rn.bin, loadtest.AuthdEnv(append(env, "DATABASE_URL="+rn.serverDBURL)), filepath.Join(rn.tmp, "authd-"+a.alg+".log"))
	if err != nil {
		return fmt.Errorf("%s: %w", a.alg, err)
	}
	defer func() {
		if exited, why := srv.Exited(); err != nil && exited {
			err = fmt.Errorf("%w\nauthd (%s) exited during the run (%v); its log ends:\n%s", err, a.alg, why, srv.LogTail())
		}
		if p := srv.LogProblems(); p != "" {
			rn.rep.serverLogs = append(rn.rep.serverLogs, a.alg+" server: "+p)
		}
		if err := srv.Stop(); err != nil {
			logf("stop authd (%s): %v", a.alg, err)
		}
	}()
	keyNote := "JWT_SECRET"
	if a.kid != "" {
		keyNote = "key " + a.kid
	}
	logf("%s: authd serving on %s (pid %d), signing with %s", a.alg, srv.Addr, srv.PID(), keyNote)

	probe := &cpuProbe{serverPID: srv.PID(), pool: rn.pool, dbName: rn.dbName, appName: serverAppName}
	b := &bench{base: "http://" + srv.Addr, client: newClient(o.concurrency)}
	defer b.client.CloseIdleConnections()

	add := func(r *result, scenario string) {
		r.scenario, r.alg = scenario, a.alg
		rn.rep.add(r)
	}

	if has("login") {
		logf("%s: %s, %d clients", label("login"), o.duration, o.concurrency)
		r, err := runScenario(ctx, label("login"), o, probe, func(ctx context.Context, w int) (func(context.Context) error, error) {
			i := w
			return func(ctx context.Context) error {
				u := users[i%len(users)]
				i += o.concurrency
				_, err := b.login(ctx, u)
				return err
			}, nil
		})
		if err != nil {
			return err
		}
		add(r, "login")
	}
	if a.primary && o.scenarios["bcrypt"] {
		logf("bcrypt ceiling: %s, %d goroutines", o.duration, runtime.GOMAXPROCS(0))
		r, err := bcryptCeiling(ctx, o.duration, rn.hash, probe)
		if err != nil {
			return err
		}
		add(r, "bcrypt")
	}
	var refreshRate float64
	// The access tokens refresh is given, never yet verified: the start
	// of verify-fresh's pool.
	var collected [][]string
	if has("refresh") {
		logf("%s: %s, %d clients", label("refresh"), o.duration, o.concurrency)
		collected = make([][]string, o.concurrency)
		r, err := runScenario(ctx, label("refresh"), o, probe, func(ctx context.Context, w int) (func(context.Context) error, error) {
			user := users[w%len(users)]
			current, err := b.login(ctx, user)
			if err != nil {
				return nil, fmt.Errorf("prime refresh token: %w", err)
			}
			return func(ctx context.Context) error {
				if current == "" { // the last refresh failed: start a new session
					if current, err = b.login(ctx, user); err != nil {
						return err
					}
				}
				next, access, err := b.refreshAccess(ctx, current)
				current = next
				if access != "" {
					collected[w] = append(collected[w], access)
				}
				return err
			}, nil
		})
		if err != nil {
			return err
		}
		for _, c := range collected {
			if len(c) > 0 {
				if err := ar.check(c[0], "refresh"); err != nil {
					return err
				}
				break
			}
		}
		refreshRate = r.rate()
		ar.refresh = r
		add(r, "refresh")
		if a.primary && o.dbCeiling {
			logf("refresh statement alone: %s, %d goroutines on as many connections", o.duration, o.concurrency)
			c, err := rn.dbCeiling(ctx, false)
			if err != nil {
				return fmt.Errorf("refresh statement alone: %w", err)
			}
			rn.rep.ceiling, rn.rep.httpRefresh = c, r
			logf("refresh statement alone, synchronous_commit=off: %s", o.duration)
			if rn.rep.ceilingAsync, err = rn.dbCeiling(ctx, true); err != nil {
				return fmt.Errorf("refresh statement alone, synchronous_commit=off: %w", err)
			}
		}
	}
	if has("logout") {
		n := o.logoutSessions
		if n == 0 {
			// Logout is one UPDATE against refresh's UPDATE+INSERT: size
			// for three times the refresh rate, which is cheap (COPY).
			rate := max(3*refreshRate, 5000)
			n = int(math.Ceil(rate * o.duration.Seconds()))
		}
		logf("%s: creating %d sessions", label("logout"), n)
		tokens, err := createSessions(ctx, rn.pool, users, n)
		if err != nil {
			return err
		}
		revokedBefore, err := revokedSessions(ctx, rn.pool)
		if err != nil {
			return err
		}
		logf("%s: %s, %d clients", label("logout"), o.duration, o.concurrency)
		var next atomic.Int64
		var exhausted atomic.Bool
		r, err := runScenario(ctx, label("logout"), o, probe, func(ctx context.Context, w int) (func(context.Context) error, error) {
			return func(ctx context.Context) error {
				i := next.Add(1) - 1
				if i >= int64(len(tokens)) {
					exhausted.Store(true)
					return errStop
				}
				return b.logout(ctx, tokens[i])
			}, nil
		})
		if err != nil {
			return err
		}
		if exhausted.Load() {
			r.notes = append(r.notes, fmt.Sprintf("the %d pre-created sessions ran out after %s; raise -logout-sessions for a full-length run", n, r.elapsed.Round(time.Millisecond)))
		}
		revokedAfter, err := revokedSessions(ctx, rn.pool)
		if err != nil {
			return err
		}
		if ok := r.requests - r.errors; revokedAfter-revokedBefore != ok {
			r.errors++
			r.addErr(fmt.Sprintf("%d logouts answered 204 but %d sessions were revoked", ok, revokedAfter-revokedBefore))
		}
		add(r, "logout")
	}

	fx := &fixtures{role: rn.role}
	if has("verify-jwt") || has("verify-cookie") {
		if fx.access, err = b.accessToken(ctx, users[0]); err != nil {
			return fmt.Errorf("log in for an access token: %w", err)
		}
		if err := ar.check(fx.access, "login"); err != nil {
			return err
		}
	}
	if has("verify-apikey") {
		if rn.apiKey == "" {
			logf("creating plan %s (%d requests per minute) and an API key with authd apikey create", benchPlan, benchPlanRPM)
			env := loadtest.AuthdEnv(append(slices.Clone(rn.hmacEnv), "DATABASE_URL="+rn.benchURL))
			if rn.apiKey, err = loadtest.CreateAPIKey(ctx, rn.bin, env, rn.pool, benchPlan, rn.role, benchPlanRPM); err != nil {
				return err
			}
		}
		fx.apiKey = rn.apiKey
	}
	if a.primary {
		rn.fx = fx
	}
	for _, s := range []string{"bare", "verify-fresh", "verify-jwt", "verify-cookie", "verify-apikey"} {
		if !has(s) {
			continue
		}
		var r *result
		if s == "verify-fresh" {
			toks, err := rn.freshTokens(ctx, b, ar, collected)
			if err != nil {
				return err
			}
			if a.primary {
				rn.freshPool = toks
			}
			logf("%s: %s, %d clients, %d distinct tokens", label(s), o.duration, o.concurrency, len(toks))
			if r, err = verifyFresh(ctx, label(s), o, probe, b, toks, rn.role, ar.pool); err != nil {
				return err
			}
			ar.fresh = r
		} else {
			g := fx.get(s)
			logf("%s: %s, %d clients", label(s), o.duration, o.concurrency)
			if r, err = runScenario(ctx, label(s), o, probe, func(ctx context.Context, w int) (func(context.Context) error, error) {
				return func(ctx context.Context) error { return b.get(ctx, g) }, nil
			}); err != nil {
				return err
			}
			if s == "verify-jwt" {
				ar.cached = r
			}
		}
		add(r, s)
	}
	if a.primary && o.scenarios["storm"] {
		access := fx.access
		if access == "" {
			if access, err = b.accessToken(ctx, users[0]); err != nil {
				return fmt.Errorf("storm: log in for an access token: %w", err)
			}
		}
		if err := rn.storm(ctx, b.base, probe, access); err != nil {
			return err
		}
	}
	return nil
}

// freshTokens is verify-fresh's pool: the access tokens the refresh
// scenario was given, topped up to -verify-tokens by inserting sessions
// and refreshing each once. All of them are checked to carry the server's
// alg and kid (cheaply: the header only).
func (rn *runner) freshTokens(ctx context.Context, b *bench, ar *algResult, collected [][]string) ([]string, error) {
	var toks []string
	for _, c := range collected {
		toks = append(toks, c...)
	}
	ar.pool = &poolStats{fromRefresh: len(toks)}
	if need := rn.o.verifyTokens - len(toks); need > 0 {
		rn.logf("verify-fresh (%s): minting %d access tokens (%d came from the refresh run): sessions inserted with COPY, one refresh each", ar.alg, need, len(toks))
		minted, err := mintTokens(ctx, rn.pool, b, rn.users, need, rn.o.concurrency)
		if err != nil {
			return nil, fmt.Errorf("verify-fresh (%s): %w", ar.alg, err)
		}
		toks = append(toks, minted...)
		ar.pool.minted = len(minted)
	}
	seen := make(map[string]bool, len(toks))
	for _, t := range toks {
		if seen[t] {
			return nil, fmt.Errorf("verify-fresh (%s): authd handed out the same access token twice", ar.alg)
		}
		seen[t] = true
		if err := ar.check(t, "refresh"); err != nil {
			return nil, err
		}
	}
	ar.pool.size = len(toks)
	return toks, nil
}

// mintTokens inserts n sessions and refreshes each once, from c clients,
// returning the access tokens authd answered with.
func mintTokens(ctx context.Context, pool *pgxpool.Pool, b *bench, users []string, n, c int) ([]string, error) {
	refresh, err := createSessions(ctx, pool, users, n)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	var next atomic.Int64
	errs := make([]error, c)
	var wg sync.WaitGroup
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				_, access, err := b.refreshAccess(ctx, refresh[i])
				if err == nil && access == "" {
					err = errors.New("no access_token cookie with Path=/ in the refresh answer")
				}
				if err != nil {
					errs[w] = fmt.Errorf("mint access tokens: %w", err)
					return
				}
				out[i] = access
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// As createSessions does: settle the rows the refreshes wrote.
	if _, err := pool.Exec(ctx, "vacuum (analyze) auth.session, auth.refresh_token"); err != nil {
		return nil, fmt.Errorf("vacuum after minting tokens: %w", err)
	}
	return out, nil
}

// verifyFresh runs GET /auth/verify with the next unused token of toks on
// every request, cycling when they run out, and records how far the pool
// went in ps.
func verifyFresh(ctx context.Context, name string, o *options, probe *cpuProbe, b *bench, toks []string, role string, ps *poolStats) (*result, error) {
	var next atomic.Int64
	var ranOut atomic.Int64 // unix ns when the first reused token was sent
	n := int64(len(toks))
	start := time.Now()
	r, err := runScenario(ctx, name, o, probe, func(ctx context.Context, w int) (func(context.Context) error, error) {
		return func(ctx context.Context) error {
			i := next.Add(1) - 1
			if i == n {
				ranOut.Store(time.Now().UnixNano())
			}
			return b.get(ctx, getReq{name: "verify-fresh", path: verifyPath, header: "Authorization", value: "Bearer " + toks[i%n], role: role})
		}, nil
	})
	if err != nil {
		return nil, err
	}
	ps.requests = r.requests
	if t := ranOut.Load(); t != 0 {
		ps.ranOutAfter = time.Unix(0, t).Sub(start)
	}
	return r, nil
}

// ---- HTTP client -------------------------------------------------------------

type bench struct {
	base   string
	client *http.Client
}

// newClient is a client for concurrency workers, with room for twice as
// many idle keep-alive connections.
func newClient(concurrency int) *http.Client { return loadtest.NewClient(2 * concurrency) }

// post sends a POST with cookie (if any) and checks the status.
func (b *bench) post(ctx context.Context, path string, body []byte, cookie string, want int) (http.Header, error) {
	r := loadtest.Request{Method: http.MethodPost, Path: path, Body: body, Want: want}
	if cookie != "" {
		r.Header, r.Value = "Cookie", cookie
	}
	return loadtest.Send(ctx, b.client, b.base, r)
}

func loginBody(user string) []byte {
	body, _ := json.Marshal(map[string]string{"user_": user, "pass": benchPassword})
	return body
}

// login logs user in and returns the refresh token it was given.
func (b *bench) login(ctx context.Context, user string) (string, error) {
	h, err := b.post(ctx, "/rpc/login", loginBody(user), "", http.StatusNoContent)
	if err != nil {
		return "", err
	}
	return refreshCookie(h)
}

// refreshAccess spends tok and returns its rotated successor and the new
// access token (the access_token cookie, Path=/).
func (b *bench) refreshAccess(ctx context.Context, tok string) (next, access string, err error) {
	h, err := b.post(ctx, refreshPath, nil, "refresh_token="+tok, http.StatusNoContent)
	if err != nil {
		return "", "", err
	}
	if next, access = loadtest.SessionCookies(h); next == "" {
		return "", "", fmt.Errorf("no refresh_token cookie with Path=%s in the answer", refreshPath)
	}
	return next, access, nil
}

func (b *bench) logout(ctx context.Context, tok string) error {
	_, err := b.post(ctx, "/rpc/logout", nil, "refresh_token="+tok, http.StatusNoContent)
	return err
}

// browserCookies is the Cookie header a browser would send to /rpc/logout
// after a login that answered with h.
func browserCookies(h http.Header) string {
	var parts []string
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Value != "" && (c.Path == "/" || c.Path == "/rpc/logout") {
			parts = append(parts, c.Name+"="+c.Value)
		}
	}
	return strings.Join(parts, "; ")
}

// refreshCookie is the refresh token set for the refresh path, as a
// browser would send it to POST /rpc/refresh_token.
func refreshCookie(h http.Header) (string, error) {
	if refresh, _ := loadtest.SessionCookies(h); refresh != "" {
		return refresh, nil
	}
	return "", fmt.Errorf("no refresh_token cookie with Path=%s in the answer", refreshPath)
}

// accessToken logs user in and returns the access token it was given (the
// access_token cookie, Path=/).
func (b *bench) accessToken(ctx context.Context, user string) (string, error) {
	h, err := b.post(ctx, "/rpc/login", loginBody(user), "", http.StatusNoContent)
	if err != nil {
		return "", err
	}
	if _, access := loadtest.SessionCookies(h); access != "" {
		return access, nil
	}
	return "", errors.New("no access_token cookie with Path=/ in the answer")
}

// fixtures are the credentials the verify scenarios present.
type fixtures struct {
	role   string // the bench users' role, and the API key's
	access string // an access token from one login
	apiKey string // a key of benchPlan
}

// getReq is one GET scenario: a path, at most one credential header, and
// the X-Auth-Role a 200 must carry (none for bare).
type getReq struct {
	name, path    string
	header, value string
	role          string
}

func (fx *fixtures) gets() []getReq {
	return []getReq{
		{name: "bare", path: barePath},
		{name: "verify-jwt", path: verifyPath, header: "Authorization", value: "Bearer " + fx.access, role: fx.role},
		{name: "verify-cookie", path: verifyPath, header: "Cookie", value: "access_token=" + fx.access, role: fx.role},
		{name: "verify-apikey", path: verifyPath, header: "X-API-Key", value: fx.apiKey, role: fx.role},
	}
}

func (fx *fixtures) get(name string) getReq {
	for _, g := range fx.gets() {
		if g.name == name {
			return g
		}
	}
	panic("no GET scenario " + name)
}

// get sends g and wants a 200; a verify answer must also pass the request
// on as the expected role, with a Bearer token for the upstream. Error
// messages never repeat the credential.
func (b *bench) get(ctx context.Context, g getReq) error {
	h, err := loadtest.Send(ctx, b.client, b.base, loadtest.Request{Method: http.MethodGet, Path: g.path, Header: g.header, Value: g.value, Want: http.StatusOK})
	if err != nil {
		return err
	}
	if g.role != "" {
		if got := h.Get("X-Auth-Role"); got != g.role {
			return fmt.Errorf("GET %s: X-Auth-Role %q, want %q", g.path, got, g.role)
		}
		if !strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
			return fmt.Errorf("GET %s: 200 without a Bearer Authorization for the upstream", g.path)
		}
	}
	return nil
}

// ---- scenarios -----------------------------------------------------------------

// errStop ends a worker's loop without counting the iteration.
var errStop = errors.New("stop")

type result struct {
	name       string // the row's label: "refresh (ES256)"
	scenario   string // "refresh"
	alg        string // the server's signing algorithm
	requests   int64
	errors     int64
	elapsed    time.Duration
	lat        []time.Duration
	cpu        cpuDelta
	notes      []string
	errSamples []string
	ceiling    bool
}

func (r *result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

func (r *result) addErr(msg string) {
	if len(r.errSamples) < 5 && !slices.Contains(r.errSamples, msg) {
		r.errSamples = append(r.errSamples, msg)
	}
}

// runScenario prepares one iteration function per worker (untimed), then
// runs them all for o.duration and measures.
func runScenario(ctx context.Context, name string, o *options, probe *cpuProbe,
	setup func(ctx context.Context, worker int) (func(context.Context) error, error)) (*result, error) {
	iters := make([]func(context.Context) error, o.concurrency)
	for w := range iters {
		it, err := setup(ctx, w)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		iters[w] = it
	}

	type workerOut struct {
		requests, errors int64
		lat              []time.Duration
		errs             []string
	}
	outs := make([]workerOut, o.concurrency)
	before, err := probe.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup
	for w := range iters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &outs[w]
			out.lat = make([]time.Duration, 0, 4096)
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				err := iters[w](ctx)
				d := time.Since(t0)
				if errors.Is(err, errStop) || ctx.Err() != nil {
					return
				}
				out.requests++
				out.lat = append(out.lat, d)
				if err != nil {
					out.errors++
					if len(out.errs) < 5 {
						out.errs = append(out.errs, err.Error())
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	after, err := probe.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	r := &result{name: name, elapsed: elapsed, cpu: after.sub(before)}
	for _, out := range outs {
		r.requests += out.requests
		r.errors += out.errors
		r.lat = append(r.lat, out.lat...)
		for _, e := range out.errs {
			r.addErr(e)
		}
	}
	return r, nil
}

// bcryptCeiling compares a cost-10 hash on GOMAXPROCS goroutines in this
// process: what login could reach here if bcrypt were all it did.
func bcryptCeiling(ctx context.Context, d time.Duration, hash string, probe *cpuProbe) (*result, error) {
	n := runtime.GOMAXPROCS(0)
	lats := make([][]time.Duration, n)
	var failed atomic.Int64
	before, err := probe.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				if !store.CheckPassword(hash, benchPassword) {
					failed.Add(1)
				}
				lats[g] = append(lats[g], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	after, err := probe.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	r := &result{name: fmt.Sprintf("bcrypt ceiling (cost %d, %d goroutines)", bcryptCost, n), elapsed: elapsed, cpu: after.sub(before), ceiling: true}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	r.requests = int64(len(r.lat))
	if f := failed.Load(); f > 0 {
		r.errors = f
		r.addErr("bcrypt compare failed")
	}
	return r, nil
}

// createSessions inserts n live sessions with one unspent refresh token
// each and returns the tokens, in random user order.
func createSessions(ctx context.Context, pool *pgxpool.Pool, users []string, n int) ([]string, error) {
	tokens := make([]string, n)
	sessions := make([][]any, n)
	refresh := make([][]any, n)
	expires := time.Now().Add(30 * 24 * time.Hour)
	for i := range n {
		plain, hash, err := token.NewRefresh()
		if err != nil {
			return nil, err
		}
		id := uuid.New()
		tokens[i] = plain
		sessions[i] = []any{id, users[i%len(users)]}
		refresh[i] = []any{hash, id, expires}
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username"}, pgx.CopyFromRows(sessions)); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "refresh_token"}, []string{"token_hash", "session_id", "expires_at"}, pgx.CopyFromRows(refresh))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create sessions: %w", err)
	}
	// Settle the new rows (visibility hints, statistics) now, so neither
	// that work nor an autovacuum lands in the timed window.
	if _, err := pool.Exec(ctx, "vacuum (analyze) auth.session, auth.refresh_token"); err != nil {
		return nil, fmt.Errorf("vacuum after creating sessions: %w", err)
	}
	return tokens, nil
}

func revokedSessions(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, "select count(*) from auth.session where revoked_at is not null").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count revoked sessions: %w", err)
	}
	return n, nil
}

// ---- CPU accounting ------------------------------------------------------------

// clockTick is the unit of /proc/<pid>/stat times, asked of getconf
// once.
var clockTick = sync.OnceValue(loadtest.ClockTick)

type cpuProbe struct {
	serverPID int
	pool      *pgxpool.Pool
	dbName    string
	appName   string
}

type cpuSnap struct {
	server, self int64
	serverOK     bool
	selfOK       bool
	db           map[int]int64
	dbOK         bool
	busy, idle   int64 // machine-wide, from /proc/stat
	machineOK    bool
	at           time.Time
}

type cpuDelta struct {
	server, db, self       time.Duration
	serverOK, dbOK, selfOK bool
	// busy and idle are machine-wide CPU time over the window; busy minus
	// the three processes above is what everything else on the machine
	// took (a shared machine skews results).
	busy, idle time.Duration
	machineOK  bool
	wall       time.Duration
}

func (p *cpuProbe) snapshot(ctx context.Context) (cpuSnap, error) {
	var s cpuSnap
	var err error
	if s.server, _, err = loadtest.ProcCPU(p.serverPID); err == nil {
		s.serverOK = true
	}
	if s.self, _, err = loadtest.ProcCPU(os.Getpid()); err == nil {
		s.selfOK = true
	}
	if s.busy, s.idle, err = loadtest.MachineCPU(); err == nil {
		s.machineOK = true
	}
	s.at = time.Now()
	rows, _ := p.pool.Query(ctx, `
		select pid from pg_stat_activity
		 where datname = $1 and application_name = $2`, p.dbName, p.appName)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return s, fmt.Errorf("list the server's database backends: %w", err)
	}
	s.db, s.dbOK = map[int]int64{}, true
	for _, pid := range pids {
		t, comm, err := loadtest.ProcCPU(int(pid))
		// The database may be on another host or in another container,
		// where these pids mean nothing here.
		if err != nil || comm != "postgres" {
			s.dbOK = false
			break
		}
		s.db[int(pid)] = t
	}
	return s, nil
}

// sub is the CPU used between before and s. A backend that appeared in
// between counts in full (connection start-up is part of the load); one
// that ended in between is lost, which pgxpool's hour-long connection
// lifetime makes unlikely.
func (s cpuSnap) sub(before cpuSnap) cpuDelta {
	tick := func(n int64) time.Duration { return time.Duration(n) * clockTick() }
	d := cpuDelta{
		serverOK: s.serverOK && before.serverOK,
		selfOK:   s.selfOK && before.selfOK,
		dbOK:     s.dbOK && before.dbOK,
	}
	d.machineOK = s.machineOK && before.machineOK
	d.busy, d.idle = tick(s.busy-before.busy), tick(s.idle-before.idle)
	d.wall = s.at.Sub(before.at)
	d.server = tick(s.server - before.server)
	d.self = tick(s.self - before.self)
	var db int64
	for pid, t := range s.db {
		db += t - before.db[pid]
	}
	d.db = tick(db)
	return d
}

// ---- database round trips --------------------------------------------------------

type rtRow struct {
	name                             string
	n                                int
	window                           time.Duration
	total                            int64 // round trips in the window
	roundTrips, statements, prepares float64
	pings                            int64
	// stmts counts the statements executed in the window by what they
	// touch ("select auth.api_key, auth.plan"), in first-seen order.
	stmts []stmtCount
}

type stmtCount struct {
	label string
	n     int64
}

// countRoundTrips starts a second authd whose database connections go
// through a counting proxy, and sends requests one at a time: after a
// warm-up (pgx prepares each statement once per connection), the counts
// per request are exact.
func countRoundTrips(ctx context.Context, o *options, bin string, env []string, dbURL string, pool *pgxpool.Pool, users []string, fx *fixtures, fresh []string, tmp string) ([]rtRow, string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, "", err
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || strings.HasPrefix(host, "/") || u.Query().Get("host") != "" {
		return nil, "skipped: -admin-url does not name a TCP host and port", nil
	}
	if port == "" {
		port = "5432"
	}
	px, err := startProxy(net.JoinHostPort(host, port))
	if err != nil {
		return nil, "", err
	}
	defer px.close()
	rtURL, err := loadtest.PgURL(dbURL, func(u *url.URL, q url.Values) {
		u.Host = px.addr()
		q.Set("sslmode", "disable") // the proxy must see plain protocol
		q.Set("application_name", rtAppName)
	})
	if err != nil {
		return nil, "", err
	}
	srv, err := loadtest.StartServer(ctx, bin, loadtest.AuthdEnv(append(slices.Clone(env), "DATABASE_URL="+rtURL)), filepath.Join(tmp, "authd-roundtrips.log"))
	if err != nil {
		return nil, "", err
	}
	defer func() { _ = srv.Stop() }()
	b := &bench{base: "http://" + srv.Addr, client: newClient(1)}
	defer b.client.CloseIdleConnections()

	var rows []rtRow
	// record adds the row for n requests answered between the snapshots.
	record := func(name string, n int, before, after wireCounts, from, to time.Time) {
		d := after.sub(before)
		k := float64(n)
		rows = append(rows, rtRow{
			name:       name,
			n:          n,
			window:     to.Sub(from),
			total:      d.syncs + d.queries - d.pings,
			roundTrips: float64(d.syncs+d.queries-d.pings) / k,
			statements: float64(d.executes+d.queries-d.pings) / k,
			prepares:   float64(d.parses) / k,
			pings:      d.pings,
			stmts:      subStmts(after.stmts, before.stmts),
		})
	}
	// settle lets authd's background writes (an API key's last_used_at)
	// land on the side of a snapshot they belong to.
	const settle = 100 * time.Millisecond
	// measure sends warm requests, then n counted ones, each after the
	// last has been answered; with spread > 0, the counted ones are paced
	// evenly over spread.
	measure := func(name string, warm, n int, spread time.Duration, op func(i int) error) error {
		for i := range warm {
			if err := op(i); err != nil {
				return fmt.Errorf("%s (warm-up): %w", name, err)
			}
		}
		if spread > 0 {
			time.Sleep(settle)
		}
		before, from := px.counts.snapshot(), time.Now()
		for i := range n {
			if spread > 0 {
				time.Sleep(time.Until(from.Add(spread * time.Duration(i) / time.Duration(n))))
			}
			if err := op(warm + i); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		if spread > 0 {
			time.Sleep(time.Until(from.Add(spread)))
		}
		to := time.Now()
		if spread > 0 {
			time.Sleep(settle)
		}
		record(name, n, before, px.counts.snapshot(), from, to)
		return nil
	}

	if o.scenarios["login"] {
		if err := measure("login", 2, 5, 0, func(i int) error {
			_, err := b.login(ctx, users[i%len(users)])
			return err
		}); err != nil {
			return nil, "", err
		}
	}
	if o.scenarios["refresh"] {
		tok, err := b.login(ctx, users[0])
		if err != nil {
			return nil, "", err
		}
		if err := measure("refresh", 3, 50, 0, func(int) error {
			tok, _, err = b.refreshAccess(ctx, tok)
			return err
		}); err != nil {
			return nil, "", err
		}
		if err := measure("refresh, unknown token (401)", 2, 20, 0, func(int) error {
			plain, _, _ := token.NewRefresh()
			_, err := b.post(ctx, refreshPath, nil, "refresh_token="+plain, http.StatusUnauthorized)
			return err
		}); err != nil {
			return nil, "", err
		}
	}
	if o.scenarios["logout"] {
		tokens, err := createSessions(ctx, pool, users, 60)
		if err != nil {
			return nil, "", err
		}
		if err := measure("logout (refresh cookie)", 3, 50, 0, func(i int) error {
			return b.logout(ctx, tokens[i])
		}); err != nil {
			return nil, "", err
		}
		// A browser also sends the access cookie (Path=/), which names the
		// session too. The logins happen before each counted window.
		cookies := make([]string, 7)
		for i := range cookies {
			h, err := b.post(ctx, "/rpc/login", loginBody(users[i%len(users)]), "", http.StatusNoContent)
			if err != nil {
				return nil, "", err
			}
			cookies[i] = browserCookies(h)
		}
		if err := measure("logout (browser: both cookies)", 2, 5, 0, func(i int) error {
			_, err := b.post(ctx, "/rpc/logout", nil, cookies[i], http.StatusNoContent)
			return err
		}); err != nil {
			return nil, "", err
		}
	}
	if o.scenarios["verify-fresh"] && len(fresh) > 0 && fx != nil {
		// A new server: none of these tokens is in its cache.
		if err := measure("verify-fresh", 3, 200, 0, func(i int) error {
			return b.get(ctx, getReq{name: "verify-fresh", path: verifyPath, header: "Authorization", value: "Bearer " + fresh[i%len(fresh)], role: fx.role})
		}); err != nil {
			return nil, "", err
		}
	}
	for _, g := range fx.gets() {
		if !o.scenarios[g.name] || g.name == "verify-apikey" {
			continue
		}
		if err := measure(g.name, 3, 200, 0, func(int) error { return b.get(ctx, g) }); err != nil {
			return nil, "", err
		}
	}
	if o.scenarios["verify-apikey"] && fx.apiKey != "" {
		g := fx.get("verify-apikey")
		// The first request loads the key and mints its token; what
		// follows is the steady state.
		if err := measure("verify-apikey, steady state: 200 over 1 s", 3, 200, time.Second, func(int) error {
			return b.get(ctx, g)
		}); err != nil {
			return nil, "", err
		}
		// The same at full speed, all clients: the reads stay at one a
		// second however many requests there are.
		d := min(o.duration, 2*time.Second)
		n, before, from, to, err := burst(ctx, o.concurrency, d, settle, px, srv.Addr, g)
		if err != nil {
			return nil, "", fmt.Errorf("verify-apikey burst: %w", err)
		}
		record(fmt.Sprintf("verify-apikey, %d clients for %s", o.concurrency, d), int(n), before, px.counts.snapshot(), from, to)
	}
	return rows, "", nil
}

// burst sends g from c clients for d and returns the requests answered and
// the counts at the start of the window; the caller snapshots the end
// (settle after the window closes, for background writes).
func burst(ctx context.Context, c int, d, settle time.Duration, px *pgProxy, addr string, g getReq) (int64, wireCounts, time.Time, time.Time, error) {
	b := &bench{base: "http://" + addr, client: newClient(c)}
	defer b.client.CloseIdleConnections()
	// One request per connection first, so that each client's dial is out
	// of the window.
	var wg sync.WaitGroup
	errs := make([]error, c)
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = b.get(ctx, g)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, wireCounts{}, time.Time{}, time.Time{}, err
	}
	time.Sleep(settle)
	var n atomic.Int64
	before, from := px.counts.snapshot(), time.Now()
	deadline := from.Add(d)
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if errs[w] = b.get(ctx, g); errs[w] != nil {
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	to := time.Now()
	if err := errors.Join(errs...); err != nil {
		return 0, wireCounts{}, time.Time{}, time.Time{}, err
	}
	if n.Load() == 0 {
		return 0, wireCounts{}, time.Time{}, time.Time{}, errors.New("no request answered")
	}
	time.Sleep(settle)
	return n.Load(), before, from, to, nil
}

type wireCounts struct {
	syncs, queries, pings, parses, executes int64
	stmts                                   []stmtCount // cumulative, first-seen order
}

// sub leaves stmts alone: see subStmts.
func (a wireCounts) sub(b wireCounts) wireCounts {
	return wireCounts{syncs: a.syncs - b.syncs, queries: a.queries - b.queries, pings: a.pings - b.pings, parses: a.parses - b.parses, executes: a.executes - b.executes}
}

// subStmts is after minus before, without the labels that did not run.
func subStmts(after, before []stmtCount) []stmtCount {
	var out []stmtCount
	for _, a := range after {
		n := a.n
		for _, b := range before {
			if b.label == a.label {
				n -= b.n
			}
		}
		if n > 0 {
			out = append(out, stmtCount{a.label, n})
		}
	}
	return out
}

type wireCounter struct {
	syncs, queries, pings, parses, executes atomic.Int64

	mu    sync.Mutex
	stmts []stmtCount
}

func (c *wireCounter) snapshot() wireCounts {
	c.mu.Lock()
	stmts := slices.Clone(c.stmts)
	c.mu.Unlock()
	return wireCounts{c.syncs.Load(), c.queries.Load(), c.pings.Load(), c.parses.Load(), c.executes.Load(), stmts}
}

// ran counts one execution of sql.
func (c *wireCounter) ran(sql string) {
	label := stmtLabel(sql)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.stmts {
		if c.stmts[i].label == label {
			c.stmts[i].n++
			return
		}
	}
	c.stmts = append(c.stmts, stmtCount{label, 1})
}

var authTableRe = regexp.MustCompile(`\bauth\.[a-z_]+`)

// stmtLabel names a statement by its verb and the auth tables it names:
// "select auth.api_key, auth.plan". Others keep their first words.
func stmtLabel(sql string) string {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return "(empty)"
	}
	var tables []string
	for _, t := range authTableRe.FindAllString(strings.ToLower(sql), -1) {
		if !slices.Contains(tables, t) {
			tables = append(tables, t)
		}
	}
	if len(tables) == 0 {
		if s := strings.Join(f, " "); len(s) > 40 {
			return s[:40] + "…"
		}
		return strings.Join(f, " ")
	}
	return strings.ToLower(f[0]) + " " + strings.Join(tables, ", ")
}

// pgProxy forwards TCP connections to PostgreSQL and counts the
// frontend's protocol messages on the way.
type pgProxy struct {
	ln     net.Listener
	target string
	counts wireCounter
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(target string) (*pgProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pgProxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c)
			}()
		}
	}()
	return p, nil
}

func (p *pgProxy) addr() string { return p.ln.Addr().String() }

func (p *pgProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *pgProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *pgProxy) serve(client net.Conn) {
	p.track(client)
	defer client.Close()
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.track(upstream)
	defer upstream.Close()
	go func() {
		_, _ = io.Copy(client, upstream)
		_ = client.Close()
	}()
	_ = p.forwardFrontend(client, upstream)
}

// forwardFrontend copies the client's messages to the server, counting
// them. Before start-up, messages carry no type byte; an SSL or GSS
// encryption request is followed by another untyped message, which is
// why the URL through the proxy says sslmode=disable.
func (p *pgProxy) forwardFrontend(client, upstream net.Conn) error {
	r := bufio.NewReaderSize(client, 64<<10)
	w := bufio.NewWriterSize(upstream, 64<<10)
	var hdr [5]byte
	startup := true
	// The SQL of this connection's prepared statements, by name ("" is the
	// unnamed one), so that each Bind can be told apart.
	prepared := map[string]string{}
	for {
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		var typ byte
		var n int
		if startup {
			if _, err := io.ReadFull(r, hdr[:4]); err != nil {
				return err
			}
			n = int(binary.BigEndian.Uint32(hdr[:4]))
			if _, err := w.Write(hdr[:4]); err != nil {
				return err
			}
		} else {
			if _, err := io.ReadFull(r, hdr[:5]); err != nil {
				return err
			}
			typ = hdr[0]
			n = int(binary.BigEndian.Uint32(hdr[1:5]))
			if _, err := w.Write(hdr[:5]); err != nil {
				return err
			}
		}
		if n < 4 {
			return errors.New("bad message length")
		}
		payload := make([]byte, n-4)
		if _, err := io.ReadFull(r, payload); err != nil {
			return err
		}
		if _, err := w.Write(payload); err != nil {
			return err
		}
		if startup {
			code := uint32(0)
			if len(payload) >= 4 {
				code = binary.BigEndian.Uint32(payload[:4])
			}
			const sslRequest, gssRequest = 80877103, 80877104
			startup = code == sslRequest || code == gssRequest
			continue
		}
		switch typ {
		case 'S':
			p.counts.syncs.Add(1)
		case 'Q':
			p.counts.queries.Add(1)
			if bytes.HasPrefix(payload, []byte("-- ping")) {
				p.counts.pings.Add(1)
			} else {
				sql, _ := cstring(payload)
				p.counts.ran(sql)
			}
		case 'P': // Parse: statement name, query, parameter types
			p.counts.parses.Add(1)
			name, rest := cstring(payload)
			prepared[name], _ = cstring(rest)
		case 'B': // Bind: portal name, statement name, ...
			_, rest := cstring(payload)
			name, _ := cstring(rest)
			p.counts.ran(prepared[name])
		case 'E':
			p.counts.executes.Add(1)
		}
	}
}

// cstring splits a NUL-terminated string off the front of b.
func cstring(b []byte) (string, []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), nil
	}
	return string(b[:i]), b[i+1:]
}

// ---- report ------------------------------------------------------------------------

type report struct {
	opts       *options
	pgVersion  string
	tick       time.Duration
	results    []*result
	roundTrips []rtRow
	rtNote     string
	serverLogs []string
	algs       []*algResult // in the order run

	storm   *stormResult
	ceiling *result // the refresh statement alone
	// ceilingAsync is the same without waiting for the commit flush: what
	// the flush costs (authd does not turn it off).
	ceilingAsync *result
	httpRefresh  *result // the primary server's refresh, beside it
	growth       []*growthRow
	growthAlg    string
}

func (rep *report) add(r *result) { rep.results = append(rep.results, r) }

func (rep *report) errorCount() int64 {
	var n int64
	for _, r := range rep.results {
		n += r.errors
	}
	if rep.storm != nil {
		n += rep.storm.errors()
	}
	if rep.ceiling != nil {
		n += rep.ceiling.errors
	}
	for _, g := range rep.growth {
		n += g.lat.Errors()
	}
	return n
}

// find returns the first result of a scenario: the primary server's,
// which runs first.
func (rep *report) find(scenario string) *result {
	for _, r := range rep.results {
		if r.scenario == scenario {
			return r
		}
	}
	return nil
}

func (rep *report) write(w io.Writer) {
	o := rep.opts
	fmt.Fprintf(w, "## authd-bench\n\n")
	fmt.Fprintf(w, "- %s/%s, %d CPUs (GOMAXPROCS %d), %s, PostgreSQL %s\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), rep.pgVersion)
	fmt.Fprintf(w, "- %s per scenario, %d keep-alive clients, %d users, bcrypt cost %d, server AUTHD_LOG_LEVEL=%s\n",
		o.duration, o.concurrency, o.users, bcryptCost, o.logLevel)
	fmt.Fprintf(w, "- CPU/req from /proc/<pid>/stat utime+stime (tick %s, CLK_TCK=%d): authd process, its PostgreSQL backends, this bench client; all on the same machine\n",
		rep.tick, int(time.Second/rep.tick))
	if len(rep.algs) > 0 {
		var keys []string
		for _, a := range rep.algs {
			if a.kid == "" {
				keys = append(keys, a.alg+" (JWT_SECRET)")
			} else {
				keys = append(keys, fmt.Sprintf("%s (key %s from authd keygen in AUTHD_SIGNING_KEYS_DIR, no JWT_SECRET)", a.alg, a.kid))
			}
		}
		var per []string
		for _, s := range allScenarios {
			if o.algScenarios[s] && o.scenarios[s] {
				per = append(per, s)
			}
		}
		line := "- signing: " + strings.Join(keys, ", ") + ", each on its own authd server"
		if len(per) > 0 {
			line += "; " + strings.Join(per, ", ") + " ran on each (rows marked with the algorithm), the rest on the " + rep.algs[0].alg + " server only"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| scenario | requests | req/s | p50 | p99 | server CPU/req | DB CPU/req | bench CPU/req | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rep.results {
		p50, p99 := loadtest.Percentile(r.lat, 0.50), loadtest.Percentile(r.lat, 0.99)
		server, db := "–", "–"
		if !r.ceiling {
			server = perReq(r.cpu.server, r.cpu.serverOK, r.requests)
			db = perReq(r.cpu.db, r.cpu.dbOK, r.requests)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %s | %s | %s | %s | %s | %d |\n",
			r.name, r.requests, r.rate(), loadtest.MS(p50), loadtest.MS(p99), server, db,
			perReq(r.cpu.self, r.cpu.selfOK, r.requests), r.errors)
	}
	fmt.Fprintln(w)
	if login, ceil := rep.find("login"), rep.find("bcrypt"); login != nil && ceil != nil && ceil.rate() > 0 {
		fmt.Fprintf(w, "login as %% of bcrypt ceiling: %.1f%% (%.0f of %.0f per second, measured in two successive windows)\n\n",
			100*login.rate()/ceil.rate(), login.rate(), ceil.rate())
		// On a shared machine the ratio of rates moves with whatever else
		// runs in either window; the ratio of CPU per request does not.
		if login.cpu.serverOK && ceil.cpu.selfOK && login.requests > 0 && ceil.requests > 0 {
			l := float64(login.cpu.server) / float64(login.requests)
			c := float64(ceil.cpu.self) / float64(ceil.requests)
			fmt.Fprintf(w, "by CPU, which other load does not skew: a compare costs %.2f ms, a login %.2f ms of authd CPU, so login runs at %.1f%% of bcrypt's efficiency (the ceiling from CPU cost is %d CPUs / %.2f ms = %.1f logins/s)\n\n",
				c/1e6, l/1e6, 100*c/l, runtime.NumCPU(), c/1e6, float64(runtime.NumCPU())/(c/1e9))
		}
	}
	if bare := rep.find("bare"); bare != nil && bare.rate() > 0 {
		var lines []string
		for _, v := range rep.results {
			if !slices.Contains(verifyScenarios, v.scenario) {
				continue
			}
			name := v.name
			pct := 100 * v.rate() / bare.rate()
			verdict := "met"
			if pct < 80 {
				verdict = "NOT met"
			}
			line := fmt.Sprintf("- %s: %.1f%% of bare's throughput (%.0f of %.0f req/s; target ≥ 80%%: %s); p50 %s, p99 %s (bare %s, %s)",
				name, pct, v.rate(), bare.rate(), verdict,
				loadtest.MS(loadtest.Percentile(v.lat, 0.50)), loadtest.MS(loadtest.Percentile(v.lat, 0.99)), loadtest.MS(loadtest.Percentile(bare.lat, 0.50)), loadtest.MS(loadtest.Percentile(bare.lat, 0.99)))
			if v.cpu.serverOK && bare.cpu.serverOK && v.requests > 0 && bare.requests > 0 && bare.cpu.server > 0 {
				vc := float64(v.cpu.server) / float64(v.requests)
				bc := float64(bare.cpu.server) / float64(bare.requests)
				line += fmt.Sprintf("; authd CPU %.1f µs/req against bare's %.1f µs (%.2f×)", vc/1e3, bc/1e3, vc/bc)
			}
			lines = append(lines, line)
		}
		if len(lines) > 0 {
			fmt.Fprintf(w, "Verify beside the bare endpoint (GET %s on the same server: same middleware, no work), each in its own window:\n\n", barePath)
			for _, l := range lines {
				fmt.Fprintln(w, l)
			}
			fmt.Fprintln(w)
			fmt.Fprintln(w, "The bench client shares the machine: its CPU per request is about the same for every GET, so it caps both rates alike and the throughput ratio understates authd's own difference, which the CPU ratio shows.")
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "Where the machine's CPU went during each window, in cores (CPU seconds per second):")
	fmt.Fprintln(w)
	for _, r := range rep.results {
		if c := r.cpu; c.machineOK && c.wall > 0 {
			cores := func(d time.Duration) float64 { return d.Seconds() / c.wall.Seconds() }
			other := max(cores(c.busy-c.server-c.db-c.self), 0)
			fmt.Fprintf(w, "- %s: authd %.2f, postgres backends %.2f, bench %.2f, everything else %.2f, idle %.2f\n",
				r.name, cores(c.server), cores(c.db), cores(c.self), other, cores(c.idle))
			// Kernel networking, the WAL writer and fsync account for a
			// little of "everything else"; much more is another workload.
			if other > 0.3 {
				fmt.Fprintf(w, "  - warning: other processes took %.2f cores in this window; its req/s and latencies are low\n", other)
			}
		}
		for _, n := range r.notes {
			fmt.Fprintf(w, "- %s: %s\n", r.name, n)
		}
	}

	for _, l := range rep.serverLogs {
		fmt.Fprintf(w, "- %s\n", l)
	}

	rep.writeCeiling(w)
	rep.writeStorm(w)
	rep.writeAlgs(w)

	if len(rep.roundTrips) > 0 || rep.rtNote != "" {
		fmt.Fprintf(w, "\n### Database round trips per request\n\n")
		if rep.rtNote != "" {
			fmt.Fprintf(w, "%s\n", rep.rtNote)
		}
		if len(rep.roundTrips) > 0 {
			fmt.Fprintln(w, "Counted on the PostgreSQL wire (Sync and simple Query messages from authd) with requests sent one at a time after a warm-up, except the last row; an autocommit statement is one round trip and one commit. Round trips, statements and prepares are per request; total is the round trips in the whole window, background writes included.")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| request | sample | window | total | round trips | statements | prepares | pool pings |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
			for _, r := range rep.roundTrips {
				fmt.Fprintf(w, "| %s | %d | %s | %d | %s | %s | %s | %d |\n", r.name, r.n, loadtest.MS(r.window), r.total, num(r.roundTrips), num(r.statements), num(r.prepares), r.pings)
			}
			fmt.Fprintln(w)
			fmt.Fprintln(w, "Statements executed in each window, by the auth tables they name:")
			fmt.Fprintln(w)
			for _, r := range rep.roundTrips {
				var parts []string
				for _, st := range r.stmts {
					parts = append(parts, fmt.Sprintf("%d× %s", st.n, st.label))
				}
				if len(parts) == 0 {
					parts = []string{"none"}
				}
				fmt.Fprintf(w, "- %s: %s\n", r.name, strings.Join(parts, "; "))
			}
		}
	}
}

// writeAlgs compares the signing algorithms.
func (rep *report) writeAlgs(w io.Writer) {
	if len(rep.algs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Signing algorithms\n\n")
	var loaded bool
	for _, a := range rep.algs {
		loaded = loaded || a.refresh != nil || a.fresh != nil || a.cached != nil
	}
	if loaded {
		fmt.Fprintln(w, "Under load, each algorithm on its own authd server (same database, same clients, successive windows). refresh signs one access token per request; verify-fresh verifies a token never presented before on each request, so the signature is checked every time; verify-jwt presents one token throughout, answered from authd's verified-token cache after the first request.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| alg | refresh req/s | refresh p50 | refresh p99 | refresh authd CPU/req | verify-fresh req/s | verify-fresh p99 | verify-fresh authd CPU/req | verify-jwt (cached) req/s | verify-jwt authd CPU/req |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, a := range rep.algs {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", a.alg,
				rateCell(a.refresh), latCell(a.refresh, 0.50), latCell(a.refresh, 0.99), cpuCell(a.refresh),
				rateCell(a.fresh), latCell(a.fresh, 0.99), cpuCell(a.fresh),
				rateCell(a.cached), cpuCell(a.cached))
		}
		fmt.Fprintln(w)
	}

	ref := rep.algs[0]
	for _, a := range rep.algs {
		if a.alg == token.HS256 {
			ref = a
		}
	}
	fmt.Fprintf(w, "Cost of one access token by algorithm. In-process: signing and verifying with authd's token package and the same key, in this process on one goroutine, no HTTP. From the server runs: authd CPU per refresh (one signature) and per verify-fresh (one verification), and each one's difference from %s's; differences smaller than a few µs are within the noise of separate runs. The last column is what a full verification costs authd over a cache hit, on the same server.\n\n", ref.alg)
	fmt.Fprintf(w, "| alg | token bytes | sign, in-process | verify, in-process | refresh authd CPU/req | vs %s | verify-fresh authd CPU/req | vs %s | verify-fresh − verify-jwt (cached) |\n", ref.alg, ref.alg)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, a := range rep.algs {
		bytesCell := "–"
		if a.tokenBytes > 0 {
			bytesCell = strconv.Itoa(a.tokenBytes)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", a.alg, bytesCell,
			us(a.signNS/1e3), us(a.verifyNS/1e3),
			cpuCell(a.refresh), deltaCell(a.refresh, ref.refresh, a == ref),
			cpuCell(a.fresh), deltaCell(a.fresh, ref.fresh, a == ref),
			deltaCell(a.fresh, a.cached, false))
	}
	fmt.Fprintln(w)
	for _, a := range rep.algs {
		if p := a.pool; p != nil && a.fresh != nil {
			fmt.Fprintf(w, "- %s: %s\n", a.fresh.name, p.describe())
		}
	}
}

// describe says where verify-fresh's tokens came from and whether any
// request could have been a cache hit.
func (p *poolStats) describe() string {
	var from []string
	if p.fromRefresh > 0 {
		from = append(from, fmt.Sprintf("%d from the refresh run", p.fromRefresh))
	}
	if p.minted > 0 {
		from = append(from, fmt.Sprintf("%d minted beforehand by refreshing sessions inserted with COPY", p.minted))
	}
	s := fmt.Sprintf("%d distinct tokens (%s); %d requests", p.size, strings.Join(from, ", "), p.requests)
	if p.reused() == 0 {
		return s + ", each with a token of its own: every request checked a signature"
	}
	hit := cacheHitShare(p.size, p.requests)
	s += fmt.Sprintf(": the pool ran out after %s and %d requests (%.1f%%) presented a token again, cycling through the pool (%.1f passes)",
		p.ranOutAfter.Round(time.Millisecond), p.reused(), 100*float64(p.reused())/float64(p.requests), float64(p.requests)/float64(p.size))
	if p.size-1 < verifyCacheSize {
		return s + fmt.Sprintf("; the pool is smaller than authd's %d-token verified cache, so those were cache hits (%.1f%% of requests): raise -verify-tokens", verifyCacheSize, 100*hit)
	}
	return s + fmt.Sprintf("; a token comes back after %d others, each a miss that evicts a random entry of authd's %d-token verified cache, so it is still cached with probability ≈ %.1f%%: about %.1f%% of all requests were cache hits", p.size-1, verifyCacheSize, 100*math.Pow(1-1.0/verifyCacheSize, float64(p.size-1)), 100*hit)
}

func rateCell(r *result) string {
	if r == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f", r.rate())
}

func latCell(r *result, p float64) string {
	if r == nil {
		return "–"
	}
	return loadtest.MS(loadtest.Percentile(r.lat, p))
}

// serverCPU is authd's CPU per request in µs.
func serverCPU(r *result) (float64, bool) {
	if r == nil || !r.cpu.serverOK || r.requests == 0 {
		return 0, false
	}
	return float64(r.cpu.server) / float64(r.requests) / 1e3, true
}

func cpuCell(r *result) string {
	if v, ok := serverCPU(r); ok {
		return us(v)
	}
	return "–"
}

// deltaCell is r's authd CPU per request minus base's; "–" for the
// reference row itself or when either is missing.
func deltaCell(r, base *result, self bool) string {
	v, ok1 := serverCPU(r)
	b, ok2 := serverCPU(base)
	if self || !ok1 || !ok2 {
		return "–"
	}
	return fmt.Sprintf("%+.1f µs", v-b)
}

func us(v float64) string {
	return fmt.Sprintf("%.1f µs", v)
}

func perReq(d time.Duration, ok bool, n int64) string {
	if !ok {
		return "n/a"
	}
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(n))
}

// num prints f to four significant digits, never in exponent form.
func num(f float64) string {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'g', 4, 64), 64)
	return strconv.FormatFloat(r, 'f', -1, 64)
}
