package main

import (
	"strings"
	"testing"

	"authd/store"
	"authd/store/storetest"
)

func TestSeed(t *testing.T) {
	t.Parallel()
	// basic_subscriber is the seed's fixed, cluster-wide role name. Drop
	// it afterwards only if it is this test that created it.
	var existed bool
	queryRow(t, storetest.AdminURL(), `select exists (select 1 from pg_roles where rolname = 'basic_subscriber')`, nil, &existed)
	if !existed {
		t.Cleanup(func() {
			storetest.Exec(t, storetest.AdminURL(), `drop role if exists basic_subscriber`)
		})
	}

	url := storetest.NewURL(t)
	env := baseEnv(url)
	r := mustRun(t, env, "", "seed")
	for _, w := range []string{`"demo"`, `"basic_subscriber"`} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("seed output %q does not contain %s", r.stdout, w)
		}
	}

	var role string
	queryRow(t, url, `select role from auth.user where username = 'demo'`, nil, &role)
	if role != "basic_subscriber" {
		t.Errorf("demo's role: got %q, want %q", role, "basic_subscriber")
	}
	if n := count(t, storetest.AdminURL(), `select count(*) from pg_roles where rolname = 'basic_subscriber'`); n != 1 {
		t.Errorf("role basic_subscriber: got %d rows in pg_roles, want 1", n)
	}
	hash := passwordHash(t, url, "demo")
	if !store.CheckPassword(hash, "demo") {
		t.Errorf("demo's hash %q does not verify the password demo", hash)
	}
	var created string
	queryRow(t, url, `select created_at::text from auth.user where username = 'demo'`, nil, &created)

	// Twice changes nothing.
	mustRun(t, env, "", "seed")
	if n := count(t, url, `select count(*) from auth.user`); n != 1 {
		t.Errorf("users after the second seed: got %d, want 1", n)
	}
	if h := passwordHash(t, url, "demo"); h != hash {
		t.Errorf("demo's hash after the second seed: got %q, want unchanged %q", h, hash)
	}
	var created2 string
	queryRow(t, url, `select created_at::text from auth.user where username = 'demo'`, nil, &created2)
	if created2 != created {
		t.Errorf("demo's row was rewritten: created_at %s, then %s", created, created2)
	}

	// A demo password an operator changed is left alone by a later seed.
	mustRun(t, env, "changed\n", "user", "passwd", "demo")
	changed := passwordHash(t, url, "demo")
	mustRun(t, env, "", "seed")
	if h := passwordHash(t, url, "demo"); h != changed {
		t.Errorf("seed overwrote a changed password: got %q, want %q", h, changed)
	}
}

func TestSeedUnmigrated(t *testing.T) {
	t.Parallel()
	r := runCLI(t, baseEnv(storetest.NewEmptyURL(t)), "", "seed")
	if r.err == nil {
		t.Fatal("seed on a database without the auth schema: got no error")
	}
	if !strings.Contains(r.err.Error(), "seed") {
		t.Errorf("error %q does not say the seed failed", r.err)
	}
}
