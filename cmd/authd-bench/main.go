// Command authd-bench measures authd under load on real PostgreSQL:
// throughput, p50/p99 latency and CPU per request of login, refresh,
// logout and GET /auth/verify (JWT, cookie, API key) beside a bare
// endpoint and the bcrypt-only ceiling; a login storm; refresh beside its
// statement alone; each signing algorithm; and the database round trips
// each request makes.
//
//	go run ./cmd/authd-bench [-duration 10s] [-concurrency 8] [-scenarios login,refresh,…,storm] [-algs HS256,ES256,EdDSA]
//	go run ./cmd/authd-bench -growth [-growth-tokens 1000,100000,1000000] [-growth-rate 1000] [-duration 5s]
//
// The harness (cmd/internal/loadtest) gives it a throwaway database and
// an authd built from this checkout. The report is Markdown on standard
// output, progress on standard error; the exit status is non-zero when
// any request failed. Files: flags, scenarios (closed loops, once per
// algorithm or on the primary server), storm (open-loop logins beside
// paced refresh/verify/healthz), growth (-growth, and the refresh
// statement alone), fixtures (keys, sessions by COPY), cpu (/proc),
// roundtrips (a counting wire proxy), report.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"authd/cmd/internal/loadtest"
)

const (
	serverApp  = "authd-bench-server" // the servers' application_name, to charge their backends' CPU
	verifyPath = "/auth/verify"
	barePath   = "/healthz"
)

func main() { loadtest.Main("authd-bench", run) }

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
		err = rn.growth(ctx, algs[0])
	} else {
		for _, a := range algs {
			if err = rn.runAlg(ctx, a); err != nil {
				return err
			}
		}
		if o.roundTrips && !(len(o.scenarios) == 1 && o.scenarios["bcrypt"]) {
			h.Logf("counting database round trips per request (%s server)", algs[0].alg)
			if err = rn.countRoundTrips(ctx, algs[0]); err != nil {
				err = fmt.Errorf("count round trips: %w", err)
			}
		}
	}
	if err != nil {
		return err
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
	apiKey string   // made once, used by every server
	access string   // the primary server's access token, for the round trips
	fresh  []string // the primary server's verify-fresh tokens
}

// errStop ends a worker's loop without counting the iteration.
var errStop = errors.New("stop")
