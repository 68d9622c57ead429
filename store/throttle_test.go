package store_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/store/storetest"
)

// TestReserveLoginFailureHoldsUnderConcurrency: of a burst of concurrent
// reservations, exactly the limit's worth succeed, whichever instance's
// clock each carries (up to 60 ms apart); every other one is told to wait.
func TestReserveLoginFailureHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	th := store.LoginThrottle{Limit: 10, PerSecond: 10.0 / 60}
	for round := range 5 {
		now := time.Now()
		var reserved atomic.Int32
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Go(func() {
				d, err := db.ReserveLoginFailure(ctx, "alice", th, now.Add(time.Duration(i%7)*10*time.Millisecond))
				if err != nil {
					t.Error(err)
				}
				if d < 0 {
					t.Errorf("wait %s", d)
				}
				if d == 0 {
					reserved.Add(1)
				}
			})
		}
		wg.Wait()
		if n := reserved.Load(); n != 10 {
			t.Errorf("round %d: %d of 60 concurrent reservations succeeded, want 10", round, n)
		}
		if _, err := db.Pool().Exec(ctx, `delete from auth.login_throttle`); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoginFailuresDrainAndRelease: a refusal says how long until the
// next attempt fits; a released reservation is given back; a drained
// bucket is purged.
func TestLoginFailuresDrainAndRelease(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	th := store.LoginThrottle{Limit: 2, PerSecond: 2.0 / 60} // one per 30 s
	now := time.Now().Add(-time.Hour)
	reserve := func(at time.Time) time.Duration {
		t.Helper()
		d, err := db.ReserveLoginFailure(ctx, "bob", th, at)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	reserve(now)
	reserve(now)
	if d := reserve(now); d != 30*time.Second {
		t.Errorf("third attempt: wait %s, want 30s", d)
	}
	if d := reserve(now.Add(10 * time.Second)); d != 20*time.Second {
		t.Errorf("10 s later: wait %s, want 20s", d)
	}
	if err := db.ReleaseLoginFailure(ctx, "bob", th, now.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := reserve(now.Add(10 * time.Second)); d != 0 {
		t.Errorf("after a release: wait %s, want none", d)
	}
	// The bucket drained within a minute of now, an hour ago.
	p, err := db.PurgeBatch(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if p.Throttles != 1 {
		t.Errorf("purged %d throttle buckets, want 1", p.Throttles)
	}
}

// TestReserveResetRequest: the per-user reset limit has buckets of its
// own: it refuses past its limit, and neither it nor the login throttle
// spends the other's.
func TestReserveResetRequest(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	now := time.Now()
	th := store.LoginThrottle{Limit: 2, PerSecond: 2.0 / 3600}
	for i := range 2 {
		if d, err := db.ReserveResetRequest(ctx, "alice", th, now); err != nil || d != 0 {
			t.Fatalf("request %d: wait %s, %v; want 0", i+1, d, err)
		}
	}
	if d, err := db.ReserveResetRequest(ctx, "alice", th, now); err != nil || d < 25*time.Minute {
		t.Fatalf("third request: wait %s, %v; want about 30m (one request drains in 1800 s)", d, err)
	}
	if d, err := db.ReserveLoginFailure(ctx, "alice", th, now); err != nil || d != 0 {
		t.Errorf("a login failure after the reset limit: wait %s, %v; want 0", d, err)
	}
	if d, err := db.ReserveResetRequest(ctx, "bob", th, now); err != nil || d != 0 {
		t.Errorf("another user: wait %s, %v; want 0", d, err)
	}
}

// TestReservationDoesNotWaitForTheFlush: a reservation commits with
// synchronous_commit off, for its own transaction only — the connection
// goes back to the pool with the setting it had, so no other statement
// (a rotation, a session) loses its durable commit.
func TestReservationDoesNotWaitForTheFlush(t *testing.T) {
	t.Parallel()
	db := storetest.NewDBOneConnection(t) // every statement below on one connection
	ctx := context.Background()
	setting := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) string {
		t.Helper()
		var v string
		if err := q.QueryRow(ctx, "show synchronous_commit").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := setting(db.Pool()); v != "on" {
		t.Fatalf("synchronous_commit before = %q; want the server's default, on", v)
	}

	for name, stmt := range map[string]struct {
		sql  string
		args []any
	}{
		"reservation":               {store.ReserveSQL, []any{storetest.TokenHash("alice"), 10.0, 1.0, time.Now()}},
		"reservation and user read": {store.ReserveAndUserSQL, []any{storetest.TokenHash("alice"), 10.0, 1.0, time.Now(), "alice"}},
	} {
		tx, err := db.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, stmt.sql, stmt.args...)
		if err != nil {
			t.Fatal(err)
		}
		var first []any
		if rows.Next() {
			first, err = rows.Values()
		}
		if err != nil || len(first) == 0 || first[0] != true {
			t.Errorf("%s: row %v, %v; want one whose first column, reserved, is true", name, first, err)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if v := setting(tx); v != "off" {
			t.Errorf("synchronous_commit in the %s's transaction = %q; want off", name, v)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}

	th := store.LoginThrottle{Limit: 1, PerSecond: 1.0 / 60}
	if d, err := db.ReserveLoginFailure(ctx, "alice", th, time.Now()); err != nil || d != 0 {
		t.Fatalf("reserve: wait %s, %v; want 0", d, err)
	}
	if d, _, _, err := db.ReserveLoginFailureAndLoadUser(ctx, "alice", th, time.Now()); err != nil || d == 0 {
		t.Fatalf("a second reservation over a limit of 1: wait %s, %v; want a wait: the first one counts at once", d, err)
	}
	if v := setting(db.Pool()); v != "on" {
		t.Errorf("synchronous_commit on the pool's connection after reservations = %q; want on", v)
	}
}

// TestReserveLoginFailureAndLoadUser: a login's first statement counts
// its failure as ReserveLoginFailure does and reads its user as User does
// — also when the count is refused, and for a user that does not exist.
func TestReserveLoginFailureAndLoadUser(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "alice", "correct horse")
	want, err := db.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	th := store.LoginThrottle{Limit: 2, PerSecond: 2.0 / 60}
	for i := range 3 {
		d, u, found, err := db.ReserveLoginFailureAndLoadUser(ctx, "alice", th, now)
		if err != nil {
			t.Fatal(err)
		}
		if !found || !reflect.DeepEqual(u, want) {
			t.Errorf("attempt %d: user %+v, found %v; want %+v, as User reads it", i+1, u, found, want)
		}
		switch {
		case i < 2 && d != 0:
			t.Errorf("attempt %d of a limit of 2: wait %s; want 0", i+1, d)
		case i == 2 && (d < 25*time.Second || d > 31*time.Second):
			t.Errorf("attempt 3 of a limit of 2: wait %s; want about 30s (one failure drains in 30 s)", d)
		}
	}
	// The count is the one ReserveLoginFailure keeps.
	if d, err := db.ReserveLoginFailure(ctx, "alice", th, now); err != nil || d == 0 {
		t.Errorf("ReserveLoginFailure after the limit: wait %s, %v; want a wait", d, err)
	}

	d, u, found, err := db.ReserveLoginFailureAndLoadUser(ctx, "nobody", th, now)
	if err != nil || d != 0 || found || !reflect.DeepEqual(u, store.User{}) {
		t.Errorf("unknown user: wait %s, user %+v, found %v, %v; want 0, none", d, u, found, err)
	}
	if d, err := db.ReserveLoginFailure(ctx, "nobody", store.LoginThrottle{Limit: 1, PerSecond: 1.0 / 60}, now); err != nil || d == 0 {
		t.Errorf("an unknown user's failure was not counted: wait %s, %v", d, err)
	}
}

// TestStartSessionGivesBackTheLoginFailure: the failure a login reserved
// is given back by the statement that opens its session, also when the
// user changed since the check (no session, but the password was right),
// and not when the statement fails or there is nothing to give back.
func TestStartSessionGivesBackTheLoginFailure(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	storetest.AddUser(t, db, "rita", "pw-of-rita")
	u, err := db.User(ctx, "rita")
	if err != nil {
		t.Fatal(err)
	}
	th := store.LoginThrottle{Limit: 1, PerSecond: 1.0 / 3600}
	now := time.Now()
	release := &store.LoginRelease{Username: "rita", Throttle: th, Now: now}
	full := func() bool {
		t.Helper()
		d, err := db.ReserveLoginFailure(ctx, "rita", th, now)
		if err != nil {
			t.Fatal(err)
		}
		return d > 0
	}
	if full() {
		t.Fatal("first reservation refused")
	}
	start := func(u store.User, tok string, r *store.LoginRelease) error {
		_, err := db.StartSessionFrom(ctx, u, store.LoginClient{}, []byte(tok), time.Hour, 24*time.Hour, false, r)
		return err
	}
	if err := start(u, string(storetest.TokenHash("t1")), release); err != nil {
		t.Fatal(err)
	}
	if full() {
		t.Fatal("the session's statement did not give the failure back")
	}
	changed := u
	changed.PasswordHash = "$2a$04$changed"
	if err := start(changed, string(storetest.TokenHash("t2")), release); !errors.Is(err, store.ErrUserChanged) {
		t.Fatalf("user changed: %v, want ErrUserChanged", err)
	}
	if full() {
		t.Fatal("a statement that found the user changed did not give the failure back")
	}
	// A token hash of the wrong length fails the statement: nothing of it
	// stands, the failure neither.
	if err := start(u, "short", release); err == nil || errors.Is(err, store.ErrUserChanged) {
		t.Fatalf("bad token hash: %v, want the statement to fail", err)
	}
	if !full() {
		t.Fatal("a failed statement gave the failure back")
	}
	if err := start(u, string(storetest.TokenHash("t3")), nil); err != nil {
		t.Fatal(err)
	}
	if !full() {
		t.Fatal("a session opened with no release gave a failure back")
	}
}
