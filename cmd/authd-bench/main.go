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
// any request failed. Files: main (flags, keys, tokens, sessions by COPY),
// scenarios (closed loops, CPU from /proc, the storm), roundtrips (a
// counting wire proxy, the refresh statement alone), report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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
	algs := fs.String("algs", "HS256,ES256,EdDSA", "comma list of signing algorithms (HS256, ES256, EdDSA, RS256), each on its own authd server; refresh, verify-fresh and verify-jwt run on each, the rest on the first's")
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
	rn := &runner{o: o, h: h}
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
	rn.write(stdout)
	if n := rn.errorCount(); n > 0 {
		return fmt.Errorf("%d request(s) failed", n)
	}
	return nil
}

// runner holds what every part of a run shares, and what the report says.
type runner struct {
	o          *options
	h          *loadtest.Harness
	apiKey     string // made once, used by the primary server
	access     string // the primary server's access token
	pgVersion  string
	algs       []*alg    // the primary first
	results    []*result // the main table
	bcrypt     *result
	stormRes   *stormResult
	roundTrips []rtRow
	notes      []string
}

// alg is one signing algorithm's server and its in-process figures.
type alg struct {
	alg, kid string
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
		a.kid = ks.SigningKeyID()
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
		sessions[i] = []any{uuid.New(), users[i%len(users)]}
		tokens[i] = []any{hash, sessions[i][0], expires}
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username"}, pgx.CopyFromRows(sessions)); err != nil {
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
