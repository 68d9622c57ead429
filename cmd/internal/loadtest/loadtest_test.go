package loadtest

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"

	"authd/store/storetest"
)

// TestAuthdEnv: a developer's own authd, JWT and PostgREST settings do
// not reach the server under test; everything else does.
func TestAuthdEnv(t *testing.T) {
	for k, v := range map[string]string{"AUTHD_ADDR": ":9999", "JWT_SECRET": "leaked", "PGRST_JWT_SECRET": "leaked", "DATABASE_URL": "postgres://prod", "DATABASE_URL_OTHER": "kept"} {
		t.Setenv(k, v)
	}
	env := authdEnv([]string{"DATABASE_URL=postgres://bench"})
	for _, kv := range env[:len(env)-1] {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AUTHD_") || strings.HasPrefix(k, "JWT_") || strings.HasPrefix(k, "PGRST_") || k == "DATABASE_URL" {
			t.Errorf("authdEnv kept %q", kv)
		}
	}
	if !slices.Contains(env, "DATABASE_URL_OTHER=kept") || env[len(env)-1] != "DATABASE_URL=postgres://bench" {
		t.Errorf("authdEnv = %q, want DATABASE_URL_OTHER kept and the setting given last", env)
	}
}

// The pacer tests run in synctest bubbles: the schedule keeps its clock
// whatever the machine's load.
func TestPacer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 1000/s for 20 ms is 20 slots; two calls that hang for the whole
		// window take two of them, and the other 18 find no room.
		release := make(chan struct{})
		time.AfterFunc(time.Second, func() { close(release) })
		var calls atomic.Int64
		dropped := Pacer{Rate: 1000, MaxInflight: 2}.Run(context.Background(), time.Now(), 20*time.Millisecond, func(context.Context) {
			calls.Add(1)
			<-release
		})
		if calls.Load() != 2 || dropped != 18 {
			t.Errorf("%d calls, %d dropped; want 2, 18", calls.Load(), dropped)
		}
		// A schedule that started a second ago: without MaxLag the missed
		// slots are all sent at once, with it they are dropped.
		count := func(context.Context) { calls.Add(1) }
		start := time.Now().Add(-time.Second)
		for _, c := range []struct {
			lag      time.Duration
			min, max int64
		}{{0, 102, 102}, {100 * time.Millisecond, 1, 10}} {
			calls.Store(0)
			Pacer{Rate: 100, MaxInflight: 1000, MaxLag: c.lag}.Run(context.Background(), start, time.Second+20*time.Millisecond, count)
			if n := calls.Load(); n < c.min || n > c.max {
				t.Errorf("MaxLag %s: %d calls, want %d to %d", c.lag, n, c.min, c.max)
			}
		}
		// The context's end ends the schedule.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		calls.Store(0)
		if dropped := (Pacer{Rate: 200, MaxInflight: 4}).Run(ctx, time.Now(), time.Hour, count); dropped != 0 || calls.Load() < 1 || calls.Load() > 11 {
			t.Errorf("%d calls, %d dropped in 50 ms at 200/s; want about 10, none dropped", calls.Load(), dropped)
		}
	})
}

// TestSetup makes a harness on the real PostgreSQL server as the commands
// do, and checks that Close drops the database and role again, after the
// caller's own cleanups; and that a Setup that fails part way leaves
// nothing behind.
func TestSetup(t *testing.T) {
	adminURL := storetest.AdminURL()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Setenv("TMPDIR", t.TempDir())
	for _, bad := range []Config{{AdminURL: "http://not-postgres/"}, {AdminURL: adminURL, DBPrefix: strings.Repeat("p", 40)}} {
		bad.Name, bad.Log = "authd-loadtest", t.Output()
		if h, err := Setup(ctx, bad); h != nil || err == nil {
			t.Errorf("Setup(%+v) = %v, %v; want an error", bad, h, err)
		}
	}
	if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 0 {
		t.Errorf("a failed Setup left %v in TMPDIR", left)
	}
	h, err := Setup(ctx, Config{Name: "authd-loadtest", AdminURL: adminURL, DBPrefix: storetest.Prefix(), Users: 2, Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	var callerCleanedUp bool
	h.onClose(func() { callerCleanedUp = true })
	exists := func() (db, role, users bool) {
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(ctx, `select exists (select from pg_database where datname = $1), exists (select from pg_roles where rolname = $2)`, h.DBName, h.Role).Scan(&db, &role); err != nil {
			t.Fatal(err)
		}
		var n int
		users = db && h.Pool.QueryRow(ctx, "select count(*) from auth.user where role = $1", h.Role).Scan(&n) == nil && n == 2
		return db, role, users
	}
	if db, role, users := exists(); !db || !role || !users {
		t.Errorf("after Setup: database %v, role %v, 2 users %v; want all", db, role, users)
	}
	// A connection left open does not stop the drop (with (force)).
	conn, err := pgx.Connect(ctx, h.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	h.Close()
	if db, role, _ := exists(); db || role || !callerCleanedUp {
		t.Errorf("after Close: database %v, role %v, caller's cleanup run %v; want neither, and run", db, role, callerCleanedUp)
	}
	if _, err := os.Stat(h.Tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory after Close: %v", err)
	}
}
