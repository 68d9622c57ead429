package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// authTables are the tables the migration creates.
var authTables = []string{"auth.user", "auth.session", "auth.refresh_token"}

// checkSchema asserts that the auth schema and its tables all exist, or
// that none of them does.
func checkSchema(t *testing.T, url string, want bool) {
	t.Helper()
	var ns *string
	queryRow(t, url, `select to_regnamespace('auth')::text`, nil, &ns)
	if (ns != nil) != want {
		t.Errorf("schema auth exists: got %v, want %v", ns != nil, want)
	}
	for _, tbl := range authTables {
		var reg *string
		queryRow(t, url, `select to_regclass($1)::text`, []any{tbl}, &reg)
		if (reg != nil) != want {
			t.Errorf("table %s exists: got %v, want %v", tbl, reg != nil, want)
		}
	}
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
	if !strings.Contains(r.stdout, "00001_create_auth_schema.sql") {
		t.Errorf("migrate up: got %q, want it to name the applied file", r.stdout)
	}
	checkSchema(t, url, true)

	r = mustRun(t, env, "", "migrate", "status")
	if got := statusState(t, r.stdout, "1"); got != "applied" {
		t.Errorf("status after up: got %q, want %q\n%s", got, "applied", r.stdout)
	}
	if !strings.Contains(r.stdout, "00001_create_auth_schema.sql") {
		t.Errorf("status: got %q, want it to name the file", r.stdout)
	}

	r = mustRun(t, env, "", "migrate", "up")
	if !strings.Contains(r.stdout, "already up to date") {
		t.Errorf("second up: got %q, want %q", r.stdout, "already up to date")
	}

	r = mustRun(t, env, "", "migrate", "down")
	if !strings.Contains(r.stdout, "00001_create_auth_schema.sql") {
		t.Errorf("migrate down: got %q, want it to name the reverted file", r.stdout)
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
	mustRun(t, env, "pw\n", "user", "add", "alice", "--role", role)

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown subcommand", []string{"migrate", "sideways"}, `unknown migrate command "sideways"`},
		{"no subcommand", []string{"migrate"}, "usage: authd migrate up|down|status"},
		{"two subcommands", []string{"migrate", "up", "down"}, "usage: authd migrate up|down|status"},
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

// TestGooseCLI runs the migrations with the stock goose CLI, then checks
// that authd agrees with it: one version table, goose_db_version.
func TestGooseCLI(t *testing.T) {
	t.Parallel()
	// The drivers other than postgres need cgo or large modules; goose's
	// cmd/goose has a build tag to leave out each of them (v3.30.0:
	// no_clickhouse, no_libsql, no_mssql (with azuresql), no_mysql,
	// no_sqlite3, no_vertica, no_ydb).
	goose := goBuild(t, "goose", "github.com/pressly/goose/v3/cmd/goose",
		"-tags", "no_clickhouse no_libsql no_mssql no_mysql no_sqlite3 no_vertica no_ydb")
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
	authdStatus := func() string {
		t.Helper()
		return statusState(t, mustRun(t, env, "", "migrate", "status").stdout, "1")
	}

	out := runGoose("up")
	if !strings.Contains(out, "00001_create_auth_schema.sql") {
		t.Errorf("goose up: got %q, want it to name the file", out)
	}
	checkSchema(t, url, true)
	if got := authdStatus(); got != "applied" {
		t.Errorf("authd status after goose up: got %q, want %q", got, "applied")
	}
	if n := count(t, url, `select count(*) from goose_db_version where version_id = 1 and is_applied`); n != 1 {
		t.Errorf("goose_db_version rows for version 1: got %d, want 1", n)
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
	mustRun(t, env, "", "migrate", "down")
	if out := runGoose("version"); !strings.Contains(out, "version 0") {
		t.Errorf("goose version after authd migrate down: got %q, want version 0", out)
	}
	mustRun(t, env, "", "migrate", "up")
	if out := runGoose("version"); !strings.Contains(out, "version 1") {
		t.Errorf("goose version after authd migrate up: got %q, want version 1", out)
	}
	if n := count(t, url, `select count(*) from pg_tables where tablename like '%goose%' or tablename like '%migration%'`); n != 1 {
		t.Errorf("version tables: got %d, want only goose_db_version", n)
	}
}
