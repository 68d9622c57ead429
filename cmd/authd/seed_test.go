package main

import (
	"strings"
	"testing"

	"authd/store"
	"authd/store/storetest"
)

func TestSeed(t *testing.T) {
	t.Parallel()
	// The seed's roles have fixed, cluster-wide names, and other tests
	// (the README's session) seed them at the same time, so they are left
	// in place: dropping them here could take a role from under a login
	// elsewhere. They are nologin roles that `make run` creates anyway.
	// The user table is in this test's own database.

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
	for _, role := range seedRoles {
		if n := count(t, storetest.AdminURL(), `select count(*) from pg_roles where rolname = $1`, role); n != 1 {
			t.Errorf("role %s: got %d rows in pg_roles, want 1", role, n)
		}
	}
	const plansSQL = `select string_agg(format('%s %s %s %s', name, role, requests_per_minute, coalesce(key_lifetime::text, 'none')), ', ' order by name) from auth.plan`
	var plans string
	queryRow(t, url, plansSQL, nil, &plans)
	if want := "free web_anon 60 none, free_trial web_trial 60 30 days, pro web_paid 600 none"; plans != want {
		t.Errorf("plans: got %q, want %q", plans, want)
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
	var plans2 string
	queryRow(t, url, plansSQL, nil, &plans2)
	if plans2 != plans {
		t.Errorf("plans after the second seed: got %q, want %q", plans2, plans)
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
	mustRun(t, env, "changed-pw\n", "user", "passwd", "demo")
	changed := passwordHash(t, url, "demo")
	mustRun(t, env, "", "seed")
	if h := passwordHash(t, url, "demo"); h != changed {
		t.Errorf("seed overwrote a changed password: got %q, want %q", h, changed)
	}

	// So is a plan an operator changed.
	storetest.Exec(t, url, `update auth.plan set requests_per_minute = 1000 where name = 'pro'`)
	mustRun(t, env, "", "seed")
	if n := count(t, url, `select requests_per_minute from auth.plan where name = 'pro'`); n != 1000 {
		t.Errorf("seed overwrote a changed plan: pro has %d requests per minute, want 1000", n)
	}
}

// seedRoles are the roles seed/demo.sql creates when they are missing.
var seedRoles = []string{"basic_subscriber", "web_anon", "web_trial", "web_paid"}

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
