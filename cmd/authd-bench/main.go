// Command authd-bench measures authd under load on real PostgreSQL:
// throughput, p50/p99 latency and CPU per request of login, refresh,
// logout and GET /auth/verify (JWT, cookie, API key) beside a bare
// endpoint and the bcrypt-only ceiling; a login storm; refresh beside its
// statement alone; each signing algorithm; and the database round trips
// each request makes.
//
//	go run ./cmd/authd-bench [-duration 10s] [-concurrency 8] [-algs HS256,ES256,EdDSA]
//
// The harness (cmd/internal/loadtest) gives it a throwaway database and
// an authd built from this checkout. The report is Markdown on standard
// output, progress on standard error; the exit status is non-zero when
// any request failed. Files: scenarios (closed loops on each algorithm's
// server, CPU from /proc), storm (open-loop logins beside paced
// refresh/verify/healthz), roundtrips (a counting wire proxy, and the
// refresh statement alone), fixtures (keys, tokens, sessions by COPY),
// report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

const serverApp = "authd-bench-server" // the servers' application_name, to charge their backends' CPU

type options struct {
	harness      loadtest.Config
	duration     time.Duration
	concurrency  int
	algs         []string      // in the order given
	verifyTokens int           // verify-fresh's pool, per algorithm
	queueWait    time.Duration // every server's AUTHD_LOGIN_QUEUE_WAIT
	stormFactor  float64
	stormRates   [3]float64 // refresh, verify, healthz per second
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("authd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{harness: loadtest.Config{Name: "authd-bench", Users: 100, Log: stderr}, stormRates: [3]float64{200, 500, 100}}
	o.harness.AddFlags(fs)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "timed length of each scenario")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent clients (keep-alive connections)")
	algs := fs.String("algs", "HS256,ES256,EdDSA", "comma list of signing algorithms (HS256, ES256, EdDSA, RS256), each on its own authd server; refresh, verify-fresh and verify-jwt run on each, the rest on HS256's (else the first's)")
	fs.IntVar(&o.verifyTokens, "verify-tokens", 40000, "access tokens verify-fresh presents, signed here with the server's key, per algorithm (cycled if the run outlasts them)")
	fs.DurationVar(&o.queueWait, "login-queue-wait", 2*time.Second, "AUTHD_LOGIN_QUEUE_WAIT of every server: the longest a login waits for a bcrypt slot before 503")
	fs.Float64Var(&o.stormFactor, "storm-factor", 4, "storm: logins per second offered, as a multiple of the bcrypt ceiling")
	scale := fs.Float64("storm-scale", 1, "storm: the paced rates (refresh 200/s, GET /auth/verify 500/s, GET /healthz 100/s) times this")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.duration <= 0 || o.queueWait <= 0 || o.stormFactor <= 0 || *scale <= 0:
		return nil, errors.New("-duration, -login-queue-wait, -storm-factor and -storm-scale must be positive")
	case o.concurrency < 1 || o.harness.Users < 1 || o.verifyTokens < 1:
		return nil, errors.New("-concurrency, -users and -verify-tokens must be at least 1")
	}
	for i := range o.stormRates {
		o.stormRates[i] *= *scale
	}
	all := []string{token.HS256, token.ES256, token.EdDSA, token.RS256}
	for _, a := range strings.Split(*algs, ",") {
		i := slices.IndexFunc(all, func(k string) bool { return strings.EqualFold(k, strings.TrimSpace(a)) })
		if i < 0 {
			return nil, fmt.Errorf("-algs: unknown algorithm %q (want %s)", a, strings.Join(all, ", "))
		}
		if !slices.Contains(o.algs, all[i]) {
			o.algs = append(o.algs, all[i])
		}
	}
	return o, nil
}

func main() { loadtest.Main("authd-bench", run) }

// run measures each algorithm's server, then counts the database round
// trips and runs the refresh statement alone.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	h, err := loadtest.Setup(ctx, o.harness, "AUTHD_LOGIN_QUEUE_WAIT="+o.queueWait.String())
	if err != nil {
		return err
	}
	defer h.Close()
	rn := &runner{o: o, h: h, rep: &report{o: o}}
	if err := h.Pool.QueryRow(ctx, "show server_version").Scan(&rn.rep.pgVersion); err != nil {
		return err
	}
	if rn.rep.algs, err = prepareAlgs(ctx, h, o.algs); err != nil {
		return err
	}
	for _, a := range rn.rep.algs {
		if err := rn.runAlg(ctx, a); err != nil {
			return err
		}
	}
	h.Logf("counting database round trips per request (%s server)", rn.rep.algs[0].alg)
	sql, err := rn.countRoundTrips(ctx)
	if err != nil {
		return fmt.Errorf("count round trips: %w", err)
	}
	for _, async := range []bool{false, true} {
		if err := rn.ceiling(ctx, sql, async); err != nil {
			return err
		}
	}
	rn.rep.write(stdout)
	if n := rn.rep.errorCount(); n > 0 {
		return fmt.Errorf("%d request(s) failed", n)
	}
	return nil
}

// runner holds what every part of a run shares.
type runner struct {
	o      *options
	h      *loadtest.Harness
	rep    *report
	apiKey string // made once, used by the primary server
	access string // the primary server's access token
}
