package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/store/storetest"
)

// TestGroupCommitBatch: rotations written together behave as if written
// one after another — the second rotation of one token in a batch finds
// it spent — and a batch in which one statement fails commits nothing:
// every rotation in it fails, and every token stays as it was.
func TestGroupCommitBatch(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	tok := storetest.TokenHash
	storetest.AddUser(t, db, "alice", "pw")
	for _, s := range []string{"a", "b", "c"} {
		storetest.StartSession(t, db, "alice", s)
	}
	live := func() int {
		t.Helper()
		var n int
		if err := db.Pool().QueryRow(ctx, `select count(*) from auth.refresh_token where revoked_at is null`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	gs, errs := db.CommitRotations([]store.Rotation{
		{Old: tok("a"), New: tok("a1"), TTL: time.Hour},
		{Old: tok("a"), New: tok("a2"), TTL: time.Hour},
		{Old: tok("b"), New: tok("b1"), TTL: time.Hour},
	})
	if errs[0] != nil || errs[2] != nil || gs[0].Username != "alice" || gs[2].Username != "alice" {
		t.Errorf("first rotations of a and b: %+v, %v; %+v, %v", gs[0], errs[0], gs[2], errs[2])
	}
	if !errors.Is(errs[1], pgx.ErrNoRows) {
		t.Errorf("second rotation of a in the same batch: got %v, want pgx.ErrNoRows (spent: the slow path decides)", errs[1])
	}
	if n := live(); n != 3 {
		t.Errorf("live tokens: got %d, want 3 (a1, b1, c)", n)
	}

	// b1's child would take a1's hash: a unique violation. c's rotation,
	// in the same batch and run before it (batches go in hash order),
	// is rolled back with it.
	if bytes.Compare(tok("c"), tok("b1")) > 0 {
		t.Fatal("the test needs c's hash to sort before b1's")
	}
	_, errs = db.CommitRotations([]store.Rotation{
		{Old: tok("b1"), New: tok("a1"), TTL: time.Hour},
		{Old: tok("c"), New: tok("c1"), TTL: time.Hour},
	})
	for i, err := range errs {
		if err == nil || errors.Is(err, pgx.ErrNoRows) {
			t.Errorf("rotation %d of the failed batch: got %v, want the batch's error", i, err)
		}
	}
	if n := live(); n != 3 {
		t.Errorf("live tokens after the failed batch: got %d, want 3 (nothing committed)", n)
	}
	if _, err := db.Refresh(ctx, tok("c"), tok("c2"), time.Hour, 0); err != nil {
		t.Errorf("c after the failed batch: %v, want it still live", err)
	}
}

// TestGroupCommitUnderLoad: many refresh chains at once, each refreshed
// in turn as fast as it can be: every rotation succeeds, exactly once, and
// each chain ends with one live token; and 20 refreshes of one token at
// once still have exactly one winner.
func TestGroupCommitUnderLoad(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	tok := storetest.TokenHash
	storetest.AddUser(t, db, "alice", "pw")
	const chains, steps = 32, 20
	for c := range chains {
		storetest.StartSession(t, db, "alice", fmt.Sprint(c, "-0"))
	}
	var wg sync.WaitGroup
	for c := range chains {
		wg.Go(func() {
			for s := range steps {
				if _, err := db.Refresh(ctx, tok(fmt.Sprint(c, "-", s)), tok(fmt.Sprint(c, "-", s+1)), time.Hour, 0); err != nil {
					t.Errorf("chain %d step %d: %v", c, s, err)
					return
				}
			}
		})
	}
	wg.Wait()
	var live, sessions int
	if err := db.Pool().QueryRow(ctx, `select count(*) filter (where revoked_at is null), count(distinct session_id) from auth.refresh_token`).Scan(&live, &sessions); err != nil {
		t.Fatal(err)
	}
	if live != chains || sessions != chains {
		t.Errorf("after %d chains of %d: %d live tokens in %d sessions, want %d and %d", chains, steps, live, sessions, chains, chains)
	}

	storetest.StartSession(t, db, "alice", "race")
	var won atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			if _, err := db.Refresh(ctx, tok("race"), tok(fmt.Sprint("race-", i)), time.Hour, 0); err == nil {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Errorf("20 refreshes of one token at once: %d won, want 1", won.Load())
	}
}
