package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// authTables are the tables migration 00001 creates, apiKeyTables those
// of 00002, natsTables those of 00003.
var (
	authTables   = []string{"auth.user", "auth.session", "auth.refresh_token"}
	apiKeyTables = []string{"auth.plan", "auth.api_key"}
	natsTables   = []string{"auth.nats_permission", "auth.nats_role"}
)

// checkSchema asserts that the auth schema and the tables of every
// migration all exist, or that none of them does.
func checkSchema(t *testing.T, url string, want bool) {
	t.Helper()
	var ns *string
	queryRow(t, url, `select to_regnamespace('auth')::text`, nil, &ns)
	if (ns != nil) != want {
		t.Errorf("schema auth exists: got %v, want %v", ns != nil, want)
	}
	checkTables(t, url, authTables, want)
	checkTables(t, url, apiKeyTables, want)
	checkTables(t, url, natsTables, want)
}

// checkTables asserts that each of tables exists, or that none does.
func checkTables(t *testing.T, url string, tables []string, want bool) {
	t.Helper()
	for _, tbl := range tables {
		var reg *string
		queryRow(t, url, `select to_regclass($1)::text`, []any{tbl}, &reg)
		if (reg != nil) != want {
			t.Errorf("table %s exists: got %v, want %v", tbl, reg != nil, want)
		}
	}
}

// migrationFiles are the migrations, in version order.
var migrationFiles = []string{"00001_create_auth_schema.sql", "00002_create_api_keys.sql", "00003_create_nats_permissions.sql", "00004_purge_friendly_refresh_parent.sql", "00005_user_admin_and_role_safety.sql", "00006_login_throttle.sql", "00007_add_session_expiry_and_contested_tokens.sql", "00008_app_role_least_privilege.sql", "00009_refuse_app_role_in_tokens.sql", "00010_nats_workload_mapping.sql", "00011_add_session_client_and_keep_session.sql", "00012_create_audit_log.sql", "00013_create_password_reset.sql", "00014_create_mfa.sql", "00016_share_api_key_rate.sql", "00017_inline_role_refusal.sql"}

// versionOf is the version of migration file f, its number: numbers may
// skip (a branch's migration merged later).
func versionOf(t *testing.T, f string) int {
	t.Helper()
	v, err := strconv.Atoi(f[:5])
	if err != nil {
		t.Fatalf("migration file %s: no version number", f)
	}
	return v
}

// statusLine matches the line of migration version in `authd migrate
// status` and captures its state.
func statusState(t *testing.T, out string, version string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + version + `\s+(\S+)\s`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("migrate status: no line for version %s in %q", version, out)
	}
	return m[1]
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	url := storetest.NewEmptyURL(t)
	env := baseEnv(url)

	r := mustRun(t, env, "", "migrate", "status")
	if got := statusState(t, r.stdout, "1"); got != "pending" {
		t.Errorf("status before up: got %q, want %q\n%s", got, "pending", r.stdout)
	}
	checkSchema(t, url, false)

	r = mustRun(t, env, "", "migrate", "up")
	for _, f := range migrationFiles {
		if !strings.Contains(r.stdout, f) {
			t.Errorf("migrate up: got %q, want it to name the applied file %s", r.stdout, f)
		}
	}
	checkSchema(t, url, true)

	r = mustRun(t, env, "", "migrate", "status")
	for _, f := range migrationFiles {
		if got := statusState(t, r.stdout, strconv.Itoa(versionOf(t, f))); got != "applied" {
			t.Errorf("status of %s after up: got %q, want %q\n%s", f, got, "applied", r.stdout)
		}
		if !strings.Contains(r.stdout, f) {
			t.Errorf("status: got %q, want it to name the file %s", r.stdout, f)
		}
	}

	r = mustRun(t, env, "", "migrate", "up")
	if !strings.Contains(r.stdout, "already up to date") {
		t.Errorf("second up: got %q, want %q", r.stdout, "already up to date")
	}

	// Down reverts one migration at a time, newest first, each removing
	// what it made; down-to reverts everything above a version.
	for i := len(migrationFiles) - 1; i >= 3; i-- {
		f := migrationFiles[i]
		r = mustRun(t, env, "", "migrate", "down")
		if !strings.Contains(r.stdout, f) {
			t.Errorf("migrate down: got %q, want it to name %s", r.stdout, f)
		}
		if madeBy(t, url, f) != 0 {
			t.Errorf("what %s made is still there after its down", f)
		}
	}
	mustRun(t, env, "", "migrate", "up")
	r = mustRun(t, env, "", "migrate", "down-to", "2")
	if !strings.Contains(r.stdout, "00004_purge_friendly_refresh_parent.sql") || !strings.Contains(r.stdout, "00003_create_nats_permissions.sql") {
		t.Errorf("migrate down-to 2: got %q, want it to name 00004 and 00003", r.stdout)
	}
	if r := runCLI(t, env, "", "migrate", "down-to", "x"); r.err == nil || !strings.Contains(r.err.Error(), "version number") {
		t.Errorf("migrate down-to x: got %v", r.err)
	}
	mustRun(t, env, "", "migrate", "up")
	mustRun(t, env, "", "migrate", "down-to", "3")
	r = mustRun(t, env, "", "migrate", "down")
	if !strings.Contains(r.stdout, "00003_create_nats_permissions.sql") {
		t.Errorf("first migrate down: got %q, want it to name 00003_create_nats_permissions.sql", r.stdout)
	}
	checkTables(t, url, authTables, true)
	checkTables(t, url, apiKeyTables, true)
	checkTables(t, url, natsTables, false)
	r = mustRun(t, env, "", "migrate", "status")
	for v, want := range map[string]string{"1": "applied", "2": "applied", "3": "pending"} {
		if got := statusState(t, r.stdout, v); got != want {
			t.Errorf("status of %s after one down: got %q, want %q", v, got, want)
		}
	}

	r = mustRun(t, env, "", "migrate", "down")
	if !strings.Contains(r.stdout, "00002_create_api_keys.sql") {
		t.Errorf("second migrate down: got %q, want it to name 00002_create_api_keys.sql", r.stdout)
	}
	checkTables(t, url, authTables, true)
	checkTables(t, url, apiKeyTables, false)
	checkTables(t, url, natsTables, false)
	r = mustRun(t, env, "", "migrate", "status")
	for v, want := range map[string]string{"1": "applied", "2": "pending", "3": "pending"} {
		if got := statusState(t, r.stdout, v); got != want {
			t.Errorf("status of %s after two downs: got %q, want %q", v, got, want)
		}
	}

	r = mustRun(t, env, "", "migrate", "down")
	if !strings.Contains(r.stdout, "00001_create_auth_schema.sql") {
		t.Errorf("third migrate down: got %q, want it to name 00001_create_auth_schema.sql", r.stdout)
	}
	checkSchema(t, url, false)
	r = mustRun(t, env, "", "migrate", "status")
	if got := statusState(t, r.stdout, "1"); got != "pending" {
		t.Errorf("status after down: got %q, want %q", got, "pending")
	}

	mustRun(t, env, "", "migrate", "up")
	checkSchema(t, url, true)
	// The schema works after the round trip.
	role := storetest.NewRole(t)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown subcommand", []string{"migrate", "sideways"}, `unknown migrate command "sideways"`},
		{"no subcommand", []string{"migrate"}, "migrate: missing command: want up, down, down-to or status; run 'authd migrate --help' for usage"},
		{"two subcommands", []string{"migrate", "up", "down"}, `migrate up: takes no arguments, got ["down"]; run 'authd migrate up --help' for usage`},
		{"down-to without a version", []string{"migrate", "down-to"}, "migrate down-to: want VERSION, got 0 argument(s); run 'authd migrate down-to --help' for usage"},
		{"down-to a word", []string{"migrate", "down-to", "two"}, `migrate down-to: want a version number, got "two"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, env, "", tt.args...)
			if r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
				t.Errorf("authd %s: got %v, want an error containing %q", strings.Join(tt.args, " "), r.err, tt.want)
			}
		})
	}
	// Nothing was reverted by the failed commands.
	checkSchema(t, url, true)
}

func TestMigrateDownOnEmpty(t *testing.T) {
	t.Parallel()
	url := storetest.NewEmptyURL(t)
	r := runCLI(t, baseEnv(url), "", "migrate", "down")
	if r.err == nil {
		t.Fatal("migrate down with nothing applied: got no error")
	}
	if !strings.Contains(r.err.Error(), "migrate down") {
		t.Errorf("error %q does not say what failed", r.err)
	}
}

// stockGoose returns the goose CLI that scripts/test-deps.sh builds into
// .dev/bin, after checking that it is the stock cmd/goose of the goose
// version authd itself links. It is built outside this module so that
// cmd/goose's requirements (drivers for a dozen databases) stay out of
// go.mod.
func stockGoose(t *testing.T) string {
	t.Helper()
	const mod, cmd = "github.com/pressly/goose/v3", "github.com/pressly/goose/v3/cmd/goose"
	bin, err := filepath.Abs(filepath.Join("..", "..", ".dev", "bin", "goose"))
	if err != nil {
		t.Fatal(err)
	}
	var want string
	if self, ok := debug.ReadBuildInfo(); ok {
		for _, m := range self.Deps {
			if m.Path == mod {
				want = m.Version
			}
		}
	}
	if want == "" {
		t.Fatalf("the test binary's build info names no %s", mod)
	}
	got, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("goose CLI: %v; run scripts/test-deps.sh (make test-deps) to build it", err)
	}
	if got.Path != cmd || got.Main.Path != mod || got.Main.Version != want {
		t.Fatalf("%s is %s from %s %s, want %s %s; run scripts/test-deps.sh (make test-deps) to build it again",
			bin, got.Path, got.Main.Path, got.Main.Version, cmd, want)
	}
	return bin
}

// TestGooseCLI runs the migrations with the stock goose CLI, then checks
// that authd agrees with it: one version table, goose_db_version.
func TestGooseCLI(t *testing.T) {
	t.Parallel()
	goose := stockGoose(t)
	dir, err := filepath.Abs(filepath.Join("..", "..", "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	url := storetest.NewEmptyURL(t)
	env := baseEnv(url)
	work := t.TempDir() // no .env file for goose to pick up

	runGoose := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, goose, append([]string{"-dir", dir, "postgres", url}, args...)...)
		cmd.Dir = work
		cmd.Env = environ(nil)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("goose %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	// authdStatus is authd's view of the newest migration.
	authdStatus := func() string {
		t.Helper()
		return statusState(t, mustRun(t, env, "", "migrate", "status").stdout, strconv.Itoa(versionOf(t, migrationFiles[len(migrationFiles)-1])))
	}

	out := runGoose("up")
	for _, f := range migrationFiles {
		if !strings.Contains(out, f) {
			t.Errorf("goose up: got %q, want it to name %s", out, f)
		}
	}
	checkSchema(t, url, true)
	if got := authdStatus(); got != "applied" {
		t.Errorf("authd status after goose up: got %q, want %q", got, "applied")
	}
	for _, f := range migrationFiles {
		v := versionOf(t, f)
		if n := count(t, url, `select count(*) from goose_db_version where version_id = $1 and is_applied`, v); n != 1 {
			t.Errorf("goose_db_version rows for version %d: got %d, want 1", v, n)
		}
	}
	if r := mustRun(t, env, "", "migrate", "up"); !strings.Contains(r.stdout, "already up to date") {
		t.Errorf("authd up after goose up: got %q, want %q", r.stdout, "already up to date")
	}

	runGoose("down-to", "0")
	checkSchema(t, url, false)
	if got := authdStatus(); got != "pending" {
		t.Errorf("authd status after goose down-to 0: got %q, want %q", got, "pending")
	}

	runGoose("up")
	checkSchema(t, url, true)
	if got := authdStatus(); got != "applied" {
		t.Errorf("authd status after goose up again: got %q, want %q", got, "applied")
	}

	// And the other way: what authd reverts and applies, goose sees.
	last := len(migrationFiles)
	for i := last - 1; i >= 0; i-- {
		mustRun(t, env, "", "migrate", "down")
		v := 0
		if i > 0 {
			v = versionOf(t, migrationFiles[i-1])
		}
		if out, want := runGoose("version"), fmt.Sprintf("version %d", v); !strings.Contains(out, want) {
			t.Errorf("goose version after %d authd migrate down: got %q, want %s", last-i, out, want)
		}
	}
	checkSchema(t, url, false)
	mustRun(t, env, "", "migrate", "up")
	if out, want := runGoose("version"), fmt.Sprintf("version %d", versionOf(t, migrationFiles[last-1])); !strings.Contains(out, want) {
		t.Errorf("goose version after authd migrate up: got %q, want %s", out, want)
	}
	// goose down reverts the newest migration alone, as authd's does.
	runGoose("down")
	checkTables(t, url, authTables, true)
	checkTables(t, url, apiKeyTables, true)
	checkTables(t, url, natsTables, true)
	if newest := migrationFiles[last-1]; madeBy(t, url, newest) != 0 {
		t.Errorf("what %s made is still there after goose down", newest)
	}
	v := versionOf(t, migrationFiles[last-1])
	if got := statusState(t, mustRun(t, env, "", "migrate", "status").stdout, strconv.Itoa(v)); got != "pending" {
		t.Errorf("authd status of %d after goose down: got %q, want %q", v, got, "pending")
	}
	runGoose("up")
	checkSchema(t, url, true)
	if n := count(t, url, `select count(*) from pg_tables where tablename like '%goose%' or tablename like '%migration%'`); n != 1 {
		t.Errorf("version tables: got %d, want only goose_db_version", n)
	}
}

// migrationMakes counts, for each migration from 00004 on, something its
// Up makes and its Down removes: 0 when it is not applied. Every new
// migration adds its line (TestMigrate fails on a file missing here).
var migrationMakes = map[string]string{
	"00004_purge_friendly_refresh_parent.sql": `select count(*) from pg_indexes where schemaname = 'auth' and indexname = 'refresh_token_expires_idx'`,
	"00005_user_admin_and_role_safety.sql": `select count(*) from information_schema.columns
		 where table_schema = 'auth' and table_name = 'user' and column_name = 'disabled_at'`,
	"00006_login_throttle.sql": `select count(*) from pg_tables where schemaname = 'auth' and tablename = 'login_throttle'`,
	// The role is cluster-wide and stays; its grants here do not.
	"00007_add_session_expiry_and_contested_tokens.sql": `select count(*) from information_schema.columns
		 where table_schema = 'auth' and table_name = 'session' and column_name = 'expires_at'`,
	"00009_refuse_app_role_in_tokens.sql": `select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
		 where n.nspname = 'auth' and p.proname = 'role_refusal' and p.prosrc like '%authd_app%'`,
	"00008_app_role_least_privilege.sql": `select count(*) from information_schema.role_table_grants
		 where grantee = 'authd_app' and table_schema = 'auth' and table_name = 'session' and privilege_type = 'DELETE'`,
	"00010_nats_workload_mapping.sql": `select count(*) from pg_tables where schemaname = 'auth' and tablename = 'nats_workload'`,
	"00011_add_session_client_and_keep_session.sql": `select count(*) from information_schema.columns
		 where table_schema = 'auth' and table_name = 'session' and column_name = 'user_agent'`,
	"00012_create_audit_log.sql":      `select count(*) from pg_tables where schemaname = 'auth' and tablename = 'audit_log'`,
	"00013_create_password_reset.sql": `select count(*) from pg_tables where schemaname = 'auth' and tablename = 'password_reset'`,
	"00014_create_mfa.sql":            `select count(*) from pg_tables where schemaname = 'auth' and tablename = 'mfa_factor'`,
	"00016_share_api_key_rate.sql":    `select count(*) from pg_tables where schemaname = 'auth' and tablename = 'api_key_rate'`,
	"00017_inline_role_refusal.sql":   `select count(*) from pg_proc where pronamespace = 'auth'::regnamespace and proname = 'role_refusals'`,
}

// madeBy is migrationMakes' count for file f.
func madeBy(t *testing.T, url, f string) int {
	t.Helper()
	q, ok := migrationMakes[f]
	if !ok {
		t.Fatalf("migrationMakes has no line for %s", f)
	}
	return count(t, url, q)
}
