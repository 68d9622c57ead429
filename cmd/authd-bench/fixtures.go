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

	signNS, verifyNS       float64  // one access token, in this process
	tokens                 []string // verify-fresh's
	refresh, fresh, cached *result  // refresh, verify-fresh, verify-jwt
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
	first := algs[p]
	algs = append([]*alg{first}, slices.Delete(algs, p, p+1)...)
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

// check makes sure authd signed tok with a's key: only that key verifies
// it here.
func (a *alg) check(tok string) error {
	if _, err := a.iss.Verify(tok); err != nil {
		return fmt.Errorf("%s server: a token it issued: %w", a.alg, err)
	}
	return nil
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

// insertSessions stores n refresh tokens with COPY (hashed as authd
// hashes its own) in sessions of perSession, all but each session's last
// spent by rotation, as real chains look, and returns the live ones:
// logging in that many would be bcrypt-bound. It then vacuums and
// analyses the tables, so that neither that work nor an autovacuum lands
// in a timed window.
func insertSessions(ctx context.Context, pool *pgxpool.Pool, users []string, n, perSession int64) ([]string, error) {
	var live []string
	now := time.Now()
	expires := now.Add(30 * 24 * time.Hour)
	for done := int64(0); done < n; {
		k := min(200_000, n-done)
		ids := make([]uuid.UUID, (k+perSession-1)/perSession)
		sessions := make([][]any, len(ids))
		for i := range ids {
			ids[i] = uuid.New()
			sessions[i] = []any{ids[i], users[i%len(users)], expires}
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username", "expires_at"}, pgx.CopyFromRows(sessions)); err != nil {
				return err
			}
			j := int64(0)
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "refresh_token"}, []string{"token_hash", "session_id", "expires_at", "revoked_at", "revoked_reason"}, pgx.CopyFromFunc(func() ([]any, error) {
				if j == k {
					return nil, nil
				}
				plain, hash, err := token.NewRefresh()
				sid := ids[j/perSession]
				if j++; j%perSession == 0 || j == k {
					live = append(live, plain)
					return []any{hash, sid, expires, nil, nil}, err
				}
				return []any{hash, sid, expires, now, "rotated"}, err
			}))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("insert sessions: %w", err)
		}
		done += k
	}
	return live, settle(ctx, pool)
}

func settle(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "vacuum (analyze) auth.session, auth.refresh_token"); err != nil {
		return fmt.Errorf("vacuum the session tables: %w", err)
	}
	return nil
}
