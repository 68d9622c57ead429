package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// alg is one signing algorithm's server configuration, and what the
// report says about it.
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
// keygen, and returns the algorithms with the primary one (HS256 if
// listed) first.
func prepareAlgs(ctx context.Context, h *loadtest.Harness, names []string) ([]*alg, error) {
	var algs []*alg
	for _, name := range names {
		a := &alg{alg: name}
		var err error
		if name == token.HS256 {
			a.iss, err = token.NewIssuer([]byte(h.Secret), time.Hour, "", nil)
		} else {
			dir := filepath.Join(h.Tmp, "keys-"+name)
			var out string
			if out, err = h.Authd(ctx, "keygen", "--alg", name, "--out", dir); err != nil {
				return nil, err
			}
			if a.kid, _ = loadtest.Field(out, "kid"); a.kid == "" {
				return nil, fmt.Errorf("authd keygen --alg %s: no \"kid:\" line in its output:\n%s", name, out)
			}
			// No JWT_SECRET, so that the server's key set is that key alone.
			a.env = []string{"JWT_SECRET=", "AUTHD_SIGNING_KEYS_DIR=" + dir}
			a.iss, err = issuer(dir)
			h.Logf("%s: key %s made with authd keygen", name, a.kid)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		algs = append(algs, a)
	}
	p := max(slices.IndexFunc(algs, func(a *alg) bool { return a.alg == token.HS256 }), 0)
	algs = slices.Concat(algs[p:p+1], algs[:p], algs[p+1:])
	algs[0].primary = true
	return algs, nil
}

func issuer(keyDir string) (*token.Issuer, error) {
	keys, signing, err := token.LoadKeyDir(keyDir)
	if err != nil {
		return nil, err
	}
	ks, err := token.NewKeySet(nil, keys, signing)
	if err != nil {
		return nil, err
	}
	return token.New(ks, token.Options{TTL: time.Hour})
}

// mint signs n access tokens for users of role in this process, with
// a's key: verify-fresh presents each once. A token's verification does
// not depend on who signed it, and signing here keeps the server's cache
// and CPU out of it. It also times signing (over the n) and verifying
// one token (for about d), on one goroutine, before the server starts so
// that nothing competes for the CPU. The verify is the uncached one: the
// package has no cache.
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
// (hashed as authd hashes its own) and returns the tokens: logging in
// that many would be bcrypt-bound. It then vacuums and analyses the
// tables, so that neither that work nor an autovacuum lands in a timed
// window.
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
