package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

var allScenarios = []string{"login", "bcrypt", "refresh", "logout", "bare", "verify-jwt", "verify-cookie", "verify-apikey", "verify-fresh", "storm"}

// verifyScenarios are compared with bare, which each of them brings along.
var verifyScenarios = []string{"verify-fresh", "verify-jwt", "verify-cookie", "verify-apikey"}

// allAlgs are the signing algorithms authd supports.
var allAlgs = []string{token.HS256, token.ES256, token.EdDSA, token.RS256}

type options struct {
	duration       time.Duration
	concurrency    int
	users          int
	harness        loadtest.Config
	scenarios      map[string]bool
	logoutSessions int
	roundTrips     bool
	algs           []string        // in the order given
	algScenarios   map[string]bool // run once per algorithm
	verifyTokens   int

	loginQueueWait                                      time.Duration // every server's AUTHD_LOGIN_QUEUE_WAIT
	stormFactor, stormRefresh, stormVerify, stormHealth float64
	dbCeiling                                           bool
	growth                                              bool
	growthTokens                                        []int64
	growthRate                                          float64
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("authd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{harness: loadtest.Config{Name: "authd-bench"}, scenarios: map[string]bool{}, algScenarios: map[string]bool{}}
	o.harness.AddFlags(fs)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "timed length of each scenario")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent clients (keep-alive connections)")
	fs.IntVar(&o.users, "users", 100, "users to create; login cycles through them")
	scen := fs.String("scenarios", "login,refresh,logout,bare,verify-jwt,verify-cookie,verify-apikey,verify-fresh,storm", "comma list of "+strings.Join(allScenarios, ", ")+" (the bcrypt ceiling always runs with login and storm, bare with any verify scenario)")
	algs := fs.String("algs", "HS256,ES256,EdDSA", "comma list of signing algorithms ("+strings.Join(allAlgs, ", ")+"), each on its own authd server")
	algScen := fs.String("alg-scenarios", "refresh,verify-fresh,verify-jwt", "the scenarios to run once per algorithm; the others run once, on the HS256 server (else the first algorithm's)")
	fs.IntVar(&o.verifyTokens, "verify-tokens", 40000, "distinct access tokens for verify-fresh, per algorithm (cycled if the run outlasts them)")
	fs.IntVar(&o.logoutSessions, "logout-sessions", 0, "sessions to pre-create for logout; 0 sizes the pool from the refresh rate")
	fs.BoolVar(&o.roundTrips, "roundtrips", true, "count database round trips per request through a wire-protocol proxy")
	fs.DurationVar(&o.loginQueueWait, "login-queue-wait", 2*time.Second, "AUTHD_LOGIN_QUEUE_WAIT of every server: the longest a login waits for a bcrypt slot before 503")
	fs.Float64Var(&o.stormFactor, "storm-factor", 4, "storm: logins per second offered, as a multiple of the bcrypt ceiling")
	fs.Float64Var(&o.stormRefresh, "storm-refresh-rate", 200, "storm: refreshes per second sent during both windows")
	fs.Float64Var(&o.stormVerify, "storm-verify-rate", 500, "storm: GET /auth/verify per second sent during both windows")
	fs.Float64Var(&o.stormHealth, "storm-health-rate", 100, "storm: GET /healthz per second sent during both windows")
	fs.BoolVar(&o.dbCeiling, "db-ceiling", true, "with refresh: also run the refresh statement alone with pgx, for its database ceiling")
	fs.BoolVar(&o.growth, "growth", false, "instead of the scenarios: refresh latency at each stored-token count of -growth-tokens")
	growthTokens := fs.String("growth-tokens", "1000,100000,1000000", "-growth: refresh tokens stored at each step (ascending)")
	fs.Float64Var(&o.growthRate, "growth-rate", 1000, "-growth: refreshes per second")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.duration <= 0 || o.loginQueueWait <= 0 || o.growthRate <= 0 || o.stormFactor <= 0:
		return nil, errors.New("-duration, -login-queue-wait, -growth-rate and -storm-factor must be positive")
	case o.concurrency < 1 || o.users < 1 || o.verifyTokens < 1:
		return nil, errors.New("-concurrency, -users and -verify-tokens must be at least 1")
	case o.logoutSessions < 0 || o.stormRefresh < 0 || o.stormVerify < 0 || o.stormHealth < 0:
		return nil, errors.New("-logout-sessions and the storm rates must not be negative")
	}
	for _, f := range strings.Split(*growthTokens, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || n < 1 || (len(o.growthTokens) > 0 && n <= o.growthTokens[len(o.growthTokens)-1]) {
			return nil, fmt.Errorf("-growth-tokens: want ascending positive counts, got %q", *growthTokens)
		}
		o.growthTokens = append(o.growthTokens, n)
	}
	for _, a := range fields(*algs) {
		i := slices.IndexFunc(allAlgs, func(k string) bool { return strings.EqualFold(k, a) })
		if i < 0 {
			return nil, fmt.Errorf("-algs: unknown algorithm %q (want %s)", a, strings.Join(allAlgs, ", "))
		}
		if !slices.Contains(o.algs, allAlgs[i]) {
			o.algs = append(o.algs, allAlgs[i])
		}
	}
	for _, s := range fields(*algScen) {
		if !slices.Contains(allScenarios, s) || s == "bcrypt" || s == "storm" {
			return nil, fmt.Errorf("-alg-scenarios: %q is not a scenario that runs on a server", s)
		}
		o.algScenarios[s] = true
	}
	for _, s := range fields(*scen) {
		if !slices.Contains(allScenarios, s) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want %s)", s, strings.Join(allScenarios, ", "))
		}
		o.scenarios[s] = true
	}
	if len(o.algs) == 0 || len(o.scenarios) == 0 {
		return nil, errors.New("-algs and -scenarios: none given")
	}
	// The storm's rate is a multiple of the bcrypt ceiling.
	if o.scenarios["login"] || o.scenarios["storm"] {
		o.scenarios["bcrypt"] = true
	}
	if slices.ContainsFunc(verifyScenarios, func(v string) bool { return o.scenarios[v] }) {
		o.scenarios["bare"] = true
	}
	return o, nil
}

// fields splits a comma list, dropping empty entries.
func fields(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
