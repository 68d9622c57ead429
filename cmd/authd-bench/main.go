// Command authd-bench measures authd under load on real PostgreSQL: login,
// refresh and logout throughput, p50/p99 latency and CPU per request,
// beside the bcrypt-only ceiling that bounds login on this machine; the
// gateway check GET /auth/verify (a JWT in Authorization or in the access
// cookie, or an X-API-Key) beside a bare endpoint on the same server; and
// how many database round trips each request makes.
//
//	go run ./cmd/authd-bench [-duration 10s] [-concurrency 8] [-scenarios login,refresh,…,storm] [-algs HS256,ES256,EdDSA]
//	go run ./cmd/authd-bench -growth [-growth-tokens 1000,100000,1000000] [-growth-rate 1000] [-duration 5s]
//
// The harness (cmd/internal/loadtest) gives it a throwaway database, role
// and users on -admin-url and an authd built from this checkout, all
// removed at exit. The report is Markdown on standard output; progress
// goes to standard error; the exit status is non-zero when any request
// failed. The files, by job:
//
//   - flags.go: the options.
//   - scenarios.go: the closed-loop scenarios, each on -concurrency
//     keep-alive clients for -duration, run once per signing algorithm
//     (-alg-scenarios) or once on the primary server (HS256 if listed).
//   - storm.go: logins offered open-loop at -storm-factor × the bcrypt
//     ceiling while refresh, verify and /healthz are paced, beside the
//     same paced clients without the flood.
//   - growth.go: -growth, refresh latency as stored refresh tokens grow.
//   - fixtures.go: keys from `authd keygen`, sessions inserted with COPY,
//     access tokens minted by refreshing them.
//   - cpu.go: CPU per request from /proc, for authd, its PostgreSQL
//     backends (found by application_name) and this process.
//   - roundtrips.go: a second authd connects through a proxy that counts
//     the PostgreSQL protocol messages it sends; the refresh statement it
//     captures there is also what "the statement alone" runs.
//   - report.go: the tables.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"authd/cmd/internal/loadtest"
)

const (
	// application_name of the servers' connections, so that CPU is charged
	// to the right PostgreSQL backends.
	serverApp  = "authd-bench-server"
	verifyPath = "/auth/verify"
	barePath   = "/healthz"
)

func main() { loadtest.Main("authd-bench", run) }

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	o.harness.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, "authd-bench: "+format+"\n", a...) }
	h, err := loadtest.Setup(ctx, o.harness)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.Seed(ctx, o.users, "AUTHD_LOGIN_QUEUE_WAIT="+o.loginQueueWait.String()); err != nil {
		return err
	}
	rep := &report{opts: o}
	if err := h.Pool.QueryRow(ctx, "show server_version").Scan(&rep.pgVersion); err != nil {
		return err
	}
	algs, err := prepareAlgs(ctx, h, o.algs)
	if err != nil {
		return err
	}
	rn := &runner{o: o, h: h, rep: rep}
	if o.growth {
		if err := rn.growth(ctx, algs[0]); err != nil {
			return err
		}
	} else {
		for _, a := range algs {
			if err := rn.runAlg(ctx, a); err != nil {
				return err
			}
		}
		if o.roundTrips && !(len(o.scenarios) == 1 && o.scenarios["bcrypt"]) {
			h.Logf("counting database round trips per request (%s server)", algs[0].alg)
			if err := rn.countRoundTrips(ctx, algs[0]); err != nil {
				return fmt.Errorf("count round trips: %w", err)
			}
		}
	}
	rep.write(stdout)
	if err := ctx.Err(); err != nil {
		return err
	}
	if n := rep.errorCount(); n > 0 {
		return fmt.Errorf("%d request(s) failed", n)
	}
	return nil
}

// runner holds what every algorithm's run shares.
type runner struct {
	o      *options
	h      *loadtest.Harness
	rep    *report
	apiKey string // made once, used by every server
	// The primary server's, for the round-trip count.
	access string   // an access token from one login
	fresh  []string // verify-fresh's tokens
}

// errStop ends a worker's loop without counting the iteration.
var errStop = errors.New("stop")
