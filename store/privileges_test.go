package store_test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"authd/migrations"
	"authd/store"
	"authd/store/storetest"
)

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestAppRoleGrants: authd_app holds, on every table and sequence in auth
// and on goose's version table, exactly what `authd serve` uses (none on
// sequences: TestServeAsAppRole inserts refresh tokens without it), only
// SELECT on the tables serve only reads (auth.nats_workload), and no
// UPDATE on the audit log, which serve appends to and purges, nor
// anything on the view of a user's own audit history. A later
// migration that adds a table without its grant fails here.
func TestAppRoleGrants(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	conn := storetest.Connect(t, url)
	ctx := context.Background()

	var login, super, inherit bool
	if err := conn.QueryRow(ctx, `select rolcanlogin, rolsuper, rolinherit from pg_roles where rolname = $1`,
		storetest.AppRole).Scan(&login, &super, &inherit); err != nil {
		t.Fatalf("role %s: %v", storetest.AppRole, err)
	}
	if login || super {
		t.Errorf("%s: login %v, superuser %v; want a NOLOGIN group role", storetest.AppRole, login, super)
	}

	// What each kind of object must and must not allow.
	want := map[string]map[string]bool{
		"r": {"select": true, "insert": true, "update": true, "delete": true, "truncate": false, "references": false, "trigger": false},
		// Identity columns need no privilege on their sequence.
		"S": {"usage": false, "select": false, "update": false},
	}
	rows, err := conn.Query(ctx, `
		select c.relname, c.relkind::text from pg_class c
		 where c.relnamespace = 'auth'::regnamespace and c.relkind in ('r', 'p', 'v', 'S')
		 order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	type rel struct{ Name, Kind string }
	rels, err := pgx.CollectRows(rows, pgx.RowToStructByPos[rel])
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) < 8 {
		t.Fatalf("auth has %d tables and sequences, want at least 8: %v", len(rels), rels)
	}
	check := func(object, fn string, privs map[string]bool) {
		t.Helper()
		for priv, ok := range privs {
			var got bool
			if err := conn.QueryRow(ctx, `select `+fn+`($1, $2, $3)`, storetest.AppRole, object, priv).Scan(&got); err != nil {
				t.Fatalf("%s(%s, %s): %v", fn, object, priv, err)
			}
			if got != ok {
				t.Errorf("%s on %s: %s is %v, want %v", storetest.AppRole, object, priv, got, ok)
			}
		}
	}
	// Tables serve only reads: the admin commands write them as the owner.
	readOnly := map[string]bool{"nats_workload": true}
	for _, r := range rels {
		kind := r.Kind
		if kind != "S" {
			kind = "r"
		}
		fn := "has_table_privilege"
		if kind == "S" {
			fn = "has_sequence_privilege"
		}
		privs := want[kind]
		if readOnly[r.Name] {
			privs = map[string]bool{"select": true, "insert": false, "update": false, "delete": false, "truncate": false, "references": false, "trigger": false}
		}
		switch r.Name {
		case "audit_log":
			privs = map[string]bool{"select": true, "insert": true, "update": false, "delete": true, "truncate": false, "references": false, "trigger": false}
		case "own_audit_log": // for the users' roles, through PostgREST; serve never reads it
			privs = map[string]bool{"select": false, "insert": false, "update": false, "delete": false, "truncate": false, "references": false, "trigger": false}
		}
		check(pgx.Identifier{"auth", r.Name}.Sanitize(), fn, privs)
	}
	for _, name := range append(slices.Collect(maps.Keys(readOnly)), "audit_log", "password_reset") {
		if !slices.ContainsFunc(rels, func(r rel) bool { return r.Name == name }) {
			t.Errorf("auth.%s is missing", name)
		}
	}
	check("goose_db_version", "has_table_privilege", map[string]bool{
		"select": true, "insert": false, "update": false, "delete": false, "truncate": false,
	})
	check("auth", "has_schema_privilege", map[string]bool{"usage": true, "create": false})
	var dbCreate bool
	if err := conn.QueryRow(ctx, `select has_database_privilege($1, current_database(), 'create')`, storetest.AppRole).Scan(&dbCreate); err != nil {
		t.Fatal(err)
	}
	if dbCreate {
		t.Errorf("%s may create schemas in the database, want not", storetest.AppRole)
	}
}

// TestAppRoleCannotChangeSchema: a login role that is only a member of
// authd_app reads and writes authd's rows, and every change to the schema,
// its triggers or the migration history is refused with 42501.
func TestAppRoleCannotChangeSchema(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	app := storetest.NewAppURL(t, url)
	db := storetest.Open(t, app)
	ctx := context.Background()

	// The rows authd writes, through store, as the app role.
	storetest.AddUser(t, db, "alice", "pw")
	g := storetest.StartSession(t, db, "alice", "first")
	if _, err := db.Refresh(ctx, storetest.TokenHash("first"), storetest.TokenHash("second"), time.Hour, 0); err != nil {
		t.Fatalf("refresh as the app role: %v", err)
	}
	if _, err := db.RevokeSessions(ctx, g.SessionID, storetest.TokenHash("second")); err != nil {
		t.Fatalf("logout as the app role: %v", err)
	}
	if _, err := db.PurgeBatch(ctx, 1000); err != nil {
		t.Fatalf("purge as the app role: %v", err)
	}
	if pending, err := db.Pending(ctx); err != nil || pending {
		t.Fatalf("pending migrations as the app role: %v, %v; want false, nil", pending, err)
	}

	conn := storetest.Connect(t, app)
	for _, sql := range []string{
		`create table auth.x (i int)`,
		`drop table auth.user`,
		`alter table auth.user add column x int`,
		`alter table auth.user disable trigger user_changed`,
		`drop trigger user_changed on auth.user`,
		`truncate auth.session`,
		`create function auth.f() returns int language sql as 'select 1'`,
		`create or replace function auth.role_refusal(role name) returns text language sql as 'select null::text'`,
		`insert into goose_db_version (version_id, is_applied) values (99999, true)`,
		`delete from goose_db_version`,
		`create schema x`,
		`create table public.x (i int)`,
		`set role postgres`,
	} {
		_, err := conn.Exec(ctx, sql)
		if got := sqlState(err); got != "42501" {
			t.Errorf("%s: got %v (SQLSTATE %q), want 42501 insufficient_privilege", sql, err, got)
		}
	}
}

// TestAuthFunctionsPinSearchPath: every function in auth runs with
// search_path = pg_catalog, pg_temp, or has a SQL-standard body (BEGIN
// ATOMIC, names bound when it was created), so a session cannot shadow
// what they read. Unpinned, a temporary table named pg_roles (temporary
// relations come before pg_catalog unless pg_temp is listed) made the
// role check accept a superuser as a user's role.
func TestAuthFunctionsPinSearchPath(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	ctx := context.Background()

	admin := storetest.Connect(t, url)
	rows, err := admin.Query(ctx, `
		select p.oid::regprocedure::text, coalesce(array_to_string(p.proconfig, ';'), ''), p.prosqlbody is not null
		  from pg_proc p where p.pronamespace = 'auth'::regnamespace order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		Name, Config string
		Atomic       bool
	}
	fns, err := pgx.CollectRows(rows, pgx.RowToStructByPos[fn])
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) == 0 {
		t.Fatal("no functions in auth")
	}
	atomic := 0
	for _, f := range fns {
		if f.Atomic && f.Config == "" {
			atomic++
			continue
		}
		if want := "search_path=pg_catalog, pg_temp"; f.Config != want {
			t.Errorf("%s: proconfig %q, want %q", f.Name, f.Config, want)
		}
	}

	hash, err := store.HashPassword("a-long-password", 4)
	if err != nil {
		t.Fatal(err)
	}
	conn := storetest.Connect(t, storetest.NewAppURL(t, url))
	if _, err := conn.Exec(ctx, `
		create temp table pg_roles as
		select oid, rolname, false as rolsuper, false as rolbypassrls, false as rolcreaterole,
		       false as rolcreatedb, false as rolreplication, false as rolcanlogin
		  from pg_catalog.pg_roles
		 where not starts_with(rolname, 'pg_')`); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `insert into auth.user (username, password_hash, role) values ('mallory', $1, 'postgres')`, hash)
	if got := sqlState(err); got != "23514" {
		t.Errorf("a user with role postgres behind a temporary pg_roles: got %v (SQLSTATE %q), want 23514 role_not_privileged", err, got)
	}
	// auth.role_refusals, inlined into authd's statements (00017), reads
	// the real pg_roles from a session that shadows it too.
	if atomic == 0 {
		t.Error("no function in auth has a SQL-standard body: auth.role_refusals (00017) is missing")
	}
	var reason string
	if err := conn.QueryRow(ctx, `select reason from auth.role_refusals('postgres')`).Scan(&reason); err != nil || reason != "it is a superuser" {
		t.Errorf("auth.role_refusals('postgres') behind a temporary pg_roles: %q, %v; want %q", reason, err, "it is a superuser")
	}
}

// upSection is the Up part of the migration file matching pattern, with
// role renamed to as: the same statements, on a role of the test's own.
func upSection(t *testing.T, pattern, role, as string) string {
	t.Helper()
	names, err := fs.Glob(migrations.FS, pattern)
	if err != nil || len(names) != 1 {
		t.Fatalf("migration %s: %v, %v", pattern, names, err)
	}
	b, err := fs.ReadFile(migrations.FS, names[0])
	if err != nil {
		t.Fatal(err)
	}
	_, up, ok := strings.Cut(string(b), "-- +goose Up")
	if !ok {
		t.Fatalf("%s: no Up section", names[0])
	}
	up, _, _ = strings.Cut(up, "-- +goose Down")
	return strings.ReplaceAll(up, role, as)
}

// TestAppRoleMigrationRace: roles are cluster-wide, so two databases
// migrated at once both see no authd_app and both create it; the second
// waits on the first's uncommitted row and must carry on once it commits,
// not fail with 23505. Run on a role named for this test, with the
// migration's own statements.
func TestAppRoleMigrationRace(t *testing.T) {
	t.Parallel()
	role := storetest.Prefix() + "app_" + storetest.Unique()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Registered before the databases, so it runs after they are dropped
	// (and the grants on the role with them).
	t.Cleanup(func() {
		if t.Failed() {
			return // the kept databases still grant it their objects
		}
		storetest.Exec(t, storetest.AdminURL(), "drop role if exists "+pgx.Identifier{role}.Sanitize())
	})
	up := upSection(t, "00008_*.sql", storetest.AppRole, role)
	a, b := storetest.NewURL(t), storetest.NewURL(t)
	connA, connB := storetest.Connect(t, a), storetest.Connect(t, b)
	admin := storetest.Connect(t, storetest.AdminURL())

	txA, err := connA.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txA.Exec(ctx, up); err != nil {
		t.Fatalf("first migration: %v", err)
	}
	pidB := connB.PgConn().PID()
	doneB := make(chan error, 1)
	go func() {
		_, err := connB.Exec(ctx, up)
		doneB <- err
	}()
	// B blocks on A's uncommitted role; wait until it does.
	for {
		var waiting bool
		if err := admin.QueryRow(ctx, `select exists (select from pg_locks where pid = $1 and not granted)`, pidB).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case err := <-doneB:
			t.Fatalf("second migration finished before the first committed: %v", err)
		case <-ctx.Done():
			t.Fatal("second migration never waited for the first")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatalf("commit the first migration: %v", err)
	}
	if err := <-doneB; err != nil {
		t.Errorf("second migration, racing the first: got %v (SQLSTATE %q), want success", err, sqlState(err))
	}
	for _, url := range []string{a, b} {
		var ok bool
		conn := storetest.Connect(t, url)
		if err := conn.QueryRow(ctx, `select has_table_privilege($1, 'auth.session', 'delete')`, role).Scan(&ok); err != nil || !ok {
			t.Errorf("%s: %s may delete from auth.session: %v, %v; want true", url, role, ok, err)
		}
	}
}

// TestAppRoleMigrationNeedsCreateRole: migrating as a role that may not
// create roles, on a cluster without authd_app, fails saying what a
// superuser must run first.
func TestAppRoleMigrationNeedsCreateRole(t *testing.T) {
	t.Parallel()
	role := storetest.Prefix() + "app_" + storetest.Unique() // never created
	up := upSection(t, "00008_*.sql", storetest.AppRole, role)
	owner := storetest.NewAppURL(t, storetest.NewURL(t)) // a login role without CREATEROLE
	_, err := storetest.Connect(t, owner).Exec(context.Background(), up)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("migrate without CREATEROLE: got %v, want 42501", err)
	}
	if want := "create role " + role + " nologin;"; !strings.Contains(pgErr.Hint, want) {
		t.Errorf("hint %q, want it to contain %q", pgErr.Hint, want)
	}
}
