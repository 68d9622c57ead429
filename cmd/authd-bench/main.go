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
// any request failed. Files: flags, scenarios (closed loops on each
// algorithm's server), storm (open-loop logins beside paced
// refresh/verify/healthz), ceiling (the refresh statement alone),
// fixtures (keys, tokens, sessions by COPY), cpu (/proc), roundtrips (a
// counting wire proxy), report.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"authd/cmd/internal/loadtest"
)

const serverApp = "authd-bench-server" // the servers' application_name, to charge their backends' CPU

func main() { loadtest.Main("authd-bench", run) }

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
	if err := rn.all(ctx); err != nil {
		return err
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

// all runs the scenarios on each algorithm's server, then counts the
// database round trips and runs the refresh statement alone.
func (rn *runner) all(ctx context.Context) error {
	for _, a := range rn.rep.algs {
		if err := rn.runAlg(ctx, a); err != nil {
			return err
		}
	}
	rn.h.Logf("counting database round trips per request (%s server)", rn.rep.algs[0].alg)
	sql, err := rn.countRoundTrips(ctx)
	if err != nil {
		return fmt.Errorf("count round trips: %w", err)
	}
	return rn.ceilings(ctx, sql)
}

// errStop ends a worker's loop without counting the iteration.
var errStop = errors.New("stop")
