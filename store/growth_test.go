package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/store/storetest"
)

// TestRefreshUsesTokenIndex: with 100,000 refresh tokens stored, each
// statement of a refresh finds its token through the token_hash unique
// index, never by reading the table. That is why refresh costs the same
// however many tokens are stored: docs/performance.md's Growth table,
// measured once by load, is guarded here by the plan.
func TestRefreshUsesTokenIndex(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "pw")
	// Sessions of four tokens, three spent by rotation and one live, as
	// real chains look; stored by COPY, since 100,000 refreshes would take
	// minutes.
	const tokens, perSession = 100_000, 4
	sessions := make([][]any, tokens/perSession)
	for i := range sessions {
		sessions[i] = []any{uuid.New(), "alice", time.Now().Add(time.Hour)}
	}
	expires, spent := time.Now().Add(time.Hour), time.Now()
	hash := func(i int) []byte {
		h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		return h[:]
	}
	i := 0
	rows := pgx.CopyFromFunc(func() ([]any, error) {
		if i == tokens {
			return nil, nil
		}
		row := []any{hash(i), sessions[i/perSession][0], expires, &spent, "rotated"}
		if i++; i%perSession == 0 {
			row[3], row[4] = nil, nil
		}
		return row, nil
	})
	err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "session"}, []string{"id", "username", "expires_at"}, pgx.CopyFromRows(sessions)); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"auth", "refresh_token"}, []string{"token_hash", "session_id", "expires_at", "revoked_at", "revoked_reason"}, rows)
		return err
	})
	if err != nil {
		t.Fatalf("copy %d tokens: %v", tokens, err)
	}
	if _, err := db.Pool().Exec(ctx, "analyze auth.session, auth.refresh_token"); err != nil {
		t.Fatal(err)
	}

	for name, s := range store.RefreshSQL {
		// rotate: a live token's hash, the new hash, the TTL in seconds
		// and the happy path (not contested); check: the hash and the
		// grace in seconds.
		args := []any{hash(perSession - 1), hash(tokens), 3600.0, false}
		if name == "check" {
			args = []any{hash(perSession - 1), 10.0}
		}
		args = args[:s.Params]
		var plan []struct{ Plan planNode }
		if err := db.Pool().QueryRow(ctx, "explain (format json) "+s.SQL, args...).Scan(&plan); err != nil {
			t.Fatalf("%s: explain: %v", name, err)
		}
		var scans []string
		var walk func(n planNode)
		walk = func(n planNode) {
			if n.Relation == "refresh_token" && n.Type != "ModifyTable" {
				scans = append(scans, n.Type+" using "+n.Index)
			}
			for _, c := range n.Plans {
				walk(c)
			}
		}
		walk(plan[0].Plan)
		if len(scans) == 0 {
			t.Errorf("%s: no scan of refresh_token in its plan", name)
		}
		for _, s := range scans {
			if s != "Index Scan using refresh_token_token_hash_key" {
				t.Errorf("%s reads refresh_token by %s, want Index Scan using refresh_token_token_hash_key", name, s)
			}
		}
	}
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan.
type planNode struct {
	Type     string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Index    string     `json:"Index Name"`
	Plans    []planNode `json:"Plans"`
}
