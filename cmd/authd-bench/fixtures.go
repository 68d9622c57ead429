package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/cmd/internal/loadtest"
	"authd/token"
)

// algSetup is one signing algorithm's server configuration.
type algSetup struct {
	alg     string
	primary bool     // runs the scenarios that are not per algorithm
	env     []string // the key material: JWT_SECRET, or AUTHD_SIGNING_KEYS_DIR alone
	kid     string   // the key's id; "" for HS256
	keyDir  string
	secret  []byte // HS256: JWT_SECRET
}

// prepareAlgs makes a key for each asymmetric algorithm with authd
// keygen, and returns the algorithms with the primary one (HS256 if
// listed) first.
func prepareAlgs(ctx context.Context, h *loadtest.Harness, names []string) ([]*algSetup, error) {
	var algs []*algSetup
	for _, alg := range names {
		a := &algSetup{alg: alg, secret: []byte(h.Secret)}
		if alg != token.HS256 {
			a.keyDir, a.secret = filepath.Join(h.Tmp, "keys-"+alg), nil
			out, err := h.Authd(ctx, "keygen", "--alg", alg, "--out", a.keyDir)
			if err != nil {
				return nil, err
			}
			for _, line := range strings.Split(out, "\n") {
				if kid, ok := strings.CutPrefix(line, "kid:"); ok {
					a.kid = strings.TrimSpace(kid)
				}
			}
			if a.kid == "" {
				return nil, fmt.Errorf("authd keygen --alg %s: no \"kid:\" line in its output:\n%s", alg, out)
			}
			// No JWT_SECRET, so that the server's key set is that key alone.
			a.env = []string{"JWT_SECRET=", "AUTHD_SIGNING_KEYS_DIR=" + a.keyDir}
			h.Logf("%s: key %s made with authd keygen", alg, a.kid)
		}
		algs = append(algs, a)
	}
	p := max(slices.IndexFunc(algs, func(a *algSetup) bool { return a.alg == token.HS256 }), 0)
	algs[p].primary = true
	return append([]*algSetup{algs[p]}, append(algs[:p:p], algs[p+1:]...)...), nil
}

// issuer is authd's token package with a's key, for the in-process cost.
func (a *algSetup) issuer() (*token.Issuer, error) {
	if a.secret != nil {
		return token.NewIssuer(a.secret, time.Hour, "", nil)
	}
	keys, signing, err := token.LoadKeyDir(a.keyDir)
	if err != nil {
		return nil, err
	}
	ks, err := token.NewKeySet(nil, keys, signing)
	if err != nil {
		return nil, err
	}
	return token.New(ks, token.Options{TTL: time.Hour})
}

// tokenHeader returns a JWT's alg and kid, unverified.
func tokenHeader(raw string) (alg, kid string, err error) {
	h, _, ok := strings.Cut(raw, ".")
	if !ok {
		return "", "", errors.New("not a JWT")
	}
	var hdr struct{ Alg, Kid string }
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err == nil {
		err = json.Unmarshal(b, &hdr)
	}
	if err != nil {
		return "", "", fmt.Errorf("JWT header: %w", err)
	}
	return hdr.Alg, hdr.Kid, nil
}

// measureToken times signing and verifying one access token with authd's
// token package and a's key, in this process, on one goroutine, for about
// d each. The verify is the uncached one: the package has no cache.
func measureToken(a *algSetup, role string, d time.Duration) (signNS, verifyNS float64, err error) {
	iss, err := a.issuer()
	if err != nil {
		return 0, 0, err
	}
	timeIt := func(op func() error) (float64, error) {
		n, start := 0, time.Now()
		for ; n == 0 || time.Since(start) < d; n++ {
			if err := op(); err != nil {
				return 0, err
			}
		}
		return float64(time.Since(start)) / float64(n), nil
	}
	var tok string
	sid := uuid.NewString()
	if signNS, err = timeIt(func() (err error) { tok, _, err = iss.Issue("user_000001", role, sid); return err }); err != nil {
		return 0, 0, err
	}
	if alg, _, err := tokenHeader(tok); err != nil || alg != a.alg {
		return 0, 0, fmt.Errorf("in-process %s token has alg %q (%v)", a.alg, alg, err)
	}
	verifyNS, err = timeIt(func() error { _, err := iss.Verify(tok); return err })
	return signNS, verifyNS, err
}

// insertSessions stores n refresh tokens with COPY (hashed as authd
// hashes its own) in sessions of perSession, all but each session's last
// spent by rotation, as real chains look, and returns the live ones:
// logging in that many would be bcrypt-bound.
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
			sessions[i] = []any{ids[i], users[i%len(users)]}
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username"}, pgx.CopyFromRows(sessions)); err != nil {
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

// settle vacuums and analyses the session tables now, so that neither
// that work nor an autovacuum lands in a timed window.
func settle(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "vacuum (analyze) auth.session, auth.refresh_token"); err != nil {
		return fmt.Errorf("vacuum the session tables: %w", err)
	}
	return nil
}

// mintTokens inserts n sessions and refreshes each once, from c clients,
// returning the access tokens authd answered with.
func mintTokens(ctx context.Context, h *loadtest.Harness, client *loadtest.Client, n, c int) ([]string, error) {
	refresh, err := insertSessions(ctx, h.Pool, h.Users, int64(n), 1)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	var next atomic.Int64
	r, err := closedLoop(ctx, c, 0, func(ctx context.Context, _ int) error {
		i := next.Add(1) - 1
		if i >= int64(n) {
			return errStop
		}
		s, err := client.Refresh(ctx, refresh[i])
		out[i] = s.Access
		return err
	})
	if err == nil && r.errors > 0 {
		err = errors.New(r.samples[0])
	}
	if err != nil {
		return nil, fmt.Errorf("mint access tokens: %w", err)
	}
	return out, settle(ctx, h.Pool)
}
