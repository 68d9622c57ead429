package main

import (
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
	o := &options{harness: loadtest.Config{Name: "authd-bench", Users: 100, Log: stderr}}
	o.harness.AddFlags(fs)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "timed length of each scenario")
	fs.IntVar(&o.concurrency, "concurrency", 8, "concurrent clients (keep-alive connections)")
	algs := fs.String("algs", "HS256,ES256,EdDSA", "comma list of signing algorithms (HS256, ES256, EdDSA, RS256), each on its own authd server; refresh, verify-fresh and verify-jwt run on each, the rest on HS256's (else the first's)")
	fs.IntVar(&o.verifyTokens, "verify-tokens", 40000, "access tokens verify-fresh presents, signed here with the server's key, per algorithm (cycled if the run outlasts them)")
	fs.DurationVar(&o.queueWait, "login-queue-wait", 2*time.Second, "AUTHD_LOGIN_QUEUE_WAIT of every server: the longest a login waits for a bcrypt slot before 503")
	fs.Float64Var(&o.stormFactor, "storm-factor", 4, "storm: logins per second offered, as a multiple of the bcrypt ceiling")
	fs.Float64Var(&o.stormRates[0], "storm-refresh-rate", 200, "storm: refreshes per second sent during both windows")
	fs.Float64Var(&o.stormRates[1], "storm-verify-rate", 500, "storm: GET /auth/verify per second sent during both windows")
	fs.Float64Var(&o.stormRates[2], "storm-health-rate", 100, "storm: GET /healthz per second sent during both windows")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() != 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.duration <= 0 || o.queueWait <= 0 || o.stormFactor <= 0:
		return nil, errors.New("-duration, -login-queue-wait and -storm-factor must be positive")
	case o.concurrency < 1 || o.harness.Users < 1 || o.verifyTokens < 1:
		return nil, errors.New("-concurrency, -users and -verify-tokens must be at least 1")
	case slices.Min(o.stormRates[:]) < 0:
		return nil, errors.New("the storm rates must not be negative")
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
