package store_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// TestTakeAPIKeyAllowanceIsShared: concurrent takers of a key's rate, as
// several instances would be, get no more than the bucket holds in all;
// the bucket refills at its rate (a clock behind the last writer's sees no
// time pass), an empty one says how long to wait, and the row goes with
// its key.
func TestTakeAPIKeyAllowanceIsShared(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	addKey(t, db, "k1")
	r := store.KeyRate{Capacity: 60, PerSecond: 1}
	now := time.Now()
	var total atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			// Up to 60 ms of clock skew between the takers.
			g, wait, err := db.TakeAPIKeyAllowance(ctx, "k1", r, 3, now.Add(time.Duration(i%7)*10*time.Millisecond))
			if err != nil {
				t.Error(err)
			}
			if g == 0 && wait <= 0 || g > 0 && wait != 0 || g > 3 {
				t.Errorf("granted %d, wait %s", g, wait)
			}
			total.Add(int64(g))
		})
	}
	wg.Wait()
	// 60 at once, and at most the 60 ms of skew's refill.
	if got := total.Load(); got != 60 {
		t.Errorf("40 concurrent takers of 3 got %d in all from a bucket of 60, want 60", got)
	}
	g, wait, err := db.TakeAPIKeyAllowance(ctx, "k1", r, 3, now)
	if err != nil || g != 0 || wait <= 0 || wait > time.Second {
		t.Errorf("empty bucket: got %d, wait %s, err %v; want 0 and a wait up to 1s", g, wait, err)
	}
	g, _, err = db.TakeAPIKeyAllowance(ctx, "k1", r, 3, now.Add(2*time.Second+100*time.Millisecond))
	if err != nil || g != 2 {
		t.Errorf("2.1 s later: got %d (%v), want the 2 that refilled", g, err)
	}
	g, _, err = db.TakeAPIKeyAllowance(ctx, "k1", r, 3, now.Add(-time.Hour))
	if err != nil || g != 0 {
		t.Errorf("a clock an hour behind: got %d (%v), want 0 (no time passes)", g, err)
	}
	if _, err := db.Pool().Exec(ctx, `delete from auth.api_key where id = 'k1'`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool().QueryRow(ctx, `select count(*) from auth.api_key_rate`).Scan(&n); err != nil || n != 0 {
		t.Errorf("rate rows after the key was deleted: %d (%v), want 0", n, err)
	}
}

// addKey adds API key id, on a plan of 60 requests a minute for a new
// role, which it returns.
func addKey(t *testing.T, db *store.DB, id string) (role string) {
	t.Helper()
	ctx := context.Background()
	role = storetest.NewRole(t)
	if _, err := db.Pool().Exec(ctx, `insert into auth.plan (name, role, requests_per_minute) values ('p', $1, 60)`, role); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateAPIKey(ctx, id, bytes.Repeat([]byte{1}, 32), "", "p", nil); err != nil {
		t.Fatal(err)
	}
	return role
}
