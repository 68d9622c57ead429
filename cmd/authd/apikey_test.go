package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"authd/store"
	"authd/store/storetest"
	"authd/token"
)

// newPlan adds a plan with a unique name to the database at url. lifetime
// is an SQL interval, or "" for keys that do not expire.
func newPlan(t *testing.T, url, role string, rpm int, lifetime string) string {
	t.Helper()
	name := "plan_" + storetest.Unique()
	var lt *string
	if lifetime != "" {
		lt = &lifetime
	}
	storetest.Exec(t, url, `insert into auth.plan (name, role, requests_per_minute, key_lifetime) values ($1, $2, $3, $4::interval)`,
		name, role, rpm, lt)
	return name
}

var (
	keyLineRe = regexp.MustCompile(`(?m)^key: +(\S+)$`)
	idLineRe  = regexp.MustCompile(`(?m)^id: +(\S+)$`)
)

// keyFrom returns the key that `apikey create` or `apikey rotate` printed,
// after checking it was printed exactly once, with its id.
func keyFrom(t *testing.T, r result) (plain, id string) {
	t.Helper()
	m := keyLineRe.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no key: line in stdout %q", r.stdout)
	}
	plain = m[1]
	id, _, ok := token.ParseAPIKey(plain)
	if !ok {
		t.Fatalf("printed key %q is not an API key", plain)
	}
	secret := plain[len(plain)-43:]
	if n := strings.Count(r.stdout+r.stderr, secret); n != 1 {
		t.Errorf("the key's secret appears %d times in the output, want once:\n%s%s", n, r.stdout, r.stderr)
	}
	if m := idLineRe.FindStringSubmatch(r.stdout); m == nil || m[1] != id {
		t.Errorf("stdout %q: want an id: line with %s", r.stdout, id)
	}
	if !strings.Contains(r.stderr, "cannot be shown again") {
		t.Errorf("stderr %q: want a note that the key cannot be shown again", r.stderr)
	}
	return plain, id
}

// sha is the SHA-256 of s.
func sha(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// rowsContaining counts the rows of every table of the database at url
// whose text form contains s.
func rowsContaining(t *testing.T, url, s string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := connect(t, url)
	rows, _ := conn.Query(ctx, `
		select format('%I.%I', table_schema, table_name)
		  from information_schema.tables
		 where table_type = 'BASE TABLE'
		   and table_schema not in ('pg_catalog', 'information_schema')`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) == 0 {
		t.Fatalf("list tables: %v, %v", tables, err)
	}
	total := 0
	for _, tbl := range tables {
		var n int
		if err := conn.QueryRow(ctx, `select count(*) from `+tbl+` x where strpos(x::text, $1) > 0`, s).Scan(&n); err != nil {
			t.Fatalf("search %s: %v", tbl, err)
		}
		total += n
	}
	return total
}

func TestAPIKeyCreate(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	db := storetest.Open(t, url)
	freeRole, trialRole, otherRole := storetest.NewRole(t), storetest.NewRole(t), storetest.NewRole(t)
	free := newPlan(t, url, freeRole, 60, "")
	trial := newPlan(t, url, trialRole, 120, "30 days")
	const day = 24 * time.Hour

	tests := []struct {
		name     string
		args     []string
		role     string
		plan     string
		rpm      int
		lifetime time.Duration // 0: never expires
	}{
		{"plan's role, no expiry", []string{"--plan", free}, freeRole, free, 60, 0},
		{"plan's 30-day expiry", []string{"--plan", trial}, trialRole, trial, 120, 30 * day},
		{"--role before --plan overrides the plan's role", []string{"--role", otherRole, "--plan", free}, otherRole, free, 60, 0},
		{"--role after --plan", []string{"--plan", trial, "--role", otherRole}, otherRole, trial, 120, 30 * day},
		{"--expires 12h", []string{"--plan", free, "--expires", "12h"}, freeRole, free, 60, 12 * time.Hour},
		{"--expires 7d overrides the plan's", []string{"--plan", trial, "--expires", "7d"}, trialRole, trial, 120, 7 * day},
		{"--flag=value, 1d12h", []string{"--expires=1d12h", "--plan=" + free, "--role=" + otherRole}, otherRole, free, 60, 36 * time.Hour},
		{"--expires 30d", []string{"--plan", free, "--expires", "30d"}, freeRole, free, 60, 30 * day},
	}
	var keys []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			r := mustRun(t, env, "", append([]string{"apikey", "create"}, tt.args...)...)
			after := time.Now()
			plain, id := keyFrom(t, r)
			keys = append(keys, plain)
			for _, line := range []string{"role:    " + tt.role, "plan:    " + tt.plan} {
				if !strings.Contains(r.stdout, line+"\n") {
					t.Errorf("stdout %q: want the line %q", r.stdout, line)
				}
			}
			if strings.Contains(r.stdout, "expires: never") != (tt.lifetime == 0) {
				t.Errorf("stdout %q: want expires: never only for keys that do not expire", r.stdout)
			}

			k, err := db.APIKey(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if k.ID != id || k.Role != tt.role || k.Plan != tt.plan || !k.RoleExists || k.RequestsPerMinute != tt.rpm || !k.Enabled || k.LastUsedAt != nil {
				t.Errorf("stored key: got %+v, want id %s, role %s, plan %s, %d rpm, enabled, never used", k, id, tt.role, tt.plan, tt.rpm)
			}
			if !bytes.Equal(k.SecretHash, sha(plain)) {
				t.Errorf("stored hash %x is not the SHA-256 of the printed key", k.SecretHash)
			}
			// Same machine, so the clocks of the test and of PostgreSQL
			// agree to well within this slack.
			const slack = 5 * time.Second
			if k.CreatedAt.Before(before.Add(-slack)) || k.CreatedAt.After(after.Add(slack)) {
				t.Errorf("created_at %v, want between %v and %v", k.CreatedAt, before, after)
			}
			switch {
			case tt.lifetime == 0:
				if k.ExpiresAt != nil {
					t.Errorf("expires_at: got %v, want none", k.ExpiresAt)
				}
			case k.ExpiresAt == nil:
				t.Errorf("expires_at: got none, want about now + %s", tt.lifetime)
			default:
				// A plan's "30 days" is calendar days in the session's
				// time zone: an hour off 720 h across a DST change.
				lo, hi := before.Add(tt.lifetime-time.Hour-slack), after.Add(tt.lifetime+time.Hour+slack)
				if k.ExpiresAt.Before(lo) || k.ExpiresAt.After(hi) {
					t.Errorf("expires_at: got %v, want about now + %s", k.ExpiresAt, tt.lifetime)
				}
			}
		})
	}

	// The plan's default expiry is taken from the row's own created_at.
	if n := count(t, url, `
		select count(*) from auth.api_key k join auth.plan p on p.name = k.plan
		 where p.name = $1 and k.role = $2 and k.expires_at = k.created_at + p.key_lifetime`, trial, trialRole); n != 1 {
		t.Errorf("keys of %s with expires_at = created_at + key_lifetime: got %d, want 1", trial, n)
	}

	// Neither a key nor its secret is stored anywhere, while its hash is
	// (which shows the search sees auth.api_key at all).
	for _, plain := range keys {
		if n := rowsContaining(t, url, plain[len(plain)-43:]); n != 0 {
			t.Errorf("key %s: its secret is in %d rows of the database", plain[:18], n)
		}
		if n := rowsContaining(t, url, hex.EncodeToString(sha(plain))); n != 1 {
			t.Errorf("key %s: its hash is in %d rows of the database, want 1", plain[:18], n)
		}
	}
	if n := count(t, url, `select count(*) from auth.api_key`); n != len(tests) {
		t.Errorf("keys: got %d, want %d", n, len(tests))
	}
}

// TestAPIKeyCreateAuthenticatorWarning: the key is created either way, and
// the warning names AUTHD_AUTHENTICATOR_ROLE's role and the grant that fixes
// it, as for user add.
func TestAPIKeyCreateAuthenticatorWarning(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	auth, role := storetest.NewRole(t), storetest.NewRole(t)
	plan := newPlan(t, url, role, 60, "")
	env := baseEnv(url)
	env["AUTHD_AUTHENTICATOR_ROLE"] = auth
	const storeLine = "Store the key now: it cannot be shown again."

	r := mustRun(t, env, "", "apikey", "create", "--plan", plan)
	keyFrom(t, r)
	want := storeLine + "\n" + fmt.Sprintf(`warning: role %q cannot switch to %q, so PostgREST will refuse this key's tokens; fix with: grant "%s" to "%s";`, auth, role, role, auth) + "\n"
	if r.stderr != want {
		t.Errorf("stderr: got %q, want %q", r.stderr, want)
	}

	storetest.Exec(t, storetest.AdminURL(), "grant "+role+" to "+auth)
	if r = mustRun(t, env, "", "apikey", "create", "--plan", plan); r.stderr != storeLine+"\n" {
		t.Errorf("stderr once granted: got %q, want %q", r.stderr, storeLine+"\n")
	}

	// An authenticator that does not exist is not warned about.
	env["AUTHD_AUTHENTICATOR_ROLE"] = "authd_no_such_authenticator_xyz"
	if r = mustRun(t, env, "", "apikey", "create", "--plan", plan, "--role", storetest.NewRole(t)); r.stderr != storeLine+"\n" {
		t.Errorf("stderr without an authenticator role: got %q, want %q", r.stderr, storeLine+"\n")
	}
	if n := count(t, url, `select count(*) from auth.api_key`); n != 3 {
		t.Errorf("keys: got %d, want 3, warned about or not", n)
	}
}

func TestAPIKeyCreateErrors(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	role := storetest.NewRole(t)
	plan := newPlan(t, url, role, 60, "")
	gone := storetest.NewRole(t)
	orphan := newPlan(t, url, gone, 60, "")
	storetest.Exec(t, storetest.AdminURL(), `drop role `+gone)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown plan", []string{"apikey", "create", "--plan", "authd_no_such_plan"}, `apikey create: plan "authd_no_such_plan" does not exist`},
		{"missing role", []string{"apikey", "create", "--role", "authd_no_such_role_xyz", "--plan", plan}, `apikey create: role "authd_no_such_role_xyz" does not exist`},
		{"plan's role missing", []string{"apikey", "create", "--plan", orphan}, fmt.Sprintf("apikey create: role %q does not exist", gone)},
		{"no plan", []string{"apikey", "create", "--role", role}, "apikey create: --plan PLAN is required"},
		{"bad --expires unit", []string{"apikey", "create", "--plan", plan, "--expires", "30x"}, `apikey create: bad --expires "30x"`},
		{"--expires without unit", []string{"apikey", "create", "--plan", plan, "--expires", "30"}, `bad --expires "30"`},
		{"negative --expires", []string{"apikey", "create", "--plan", plan, "--expires", "-1h"}, `bad --expires "-1h"`},
		{"zero --expires", []string{"apikey", "create", "--plan", plan, "--expires", "0d"}, `bad --expires "0d"`},
		{"fractional days", []string{"apikey", "create", "--plan", plan, "--expires", "1.5d"}, `bad --expires "1.5d"`},
		{"days alone", []string{"apikey", "create", "--plan", plan, "--expires", "d"}, `bad --expires "d"`},
		{"unknown flag", []string{"apikey", "create", "--plan", plan, "--secret", "x"}, "apikey create: flag provided but not defined: -secret"},
		{"argument to create", []string{"apikey", "create", "--plan", plan, "extra"}, `apikey create: takes no arguments, got ["extra"]; run 'authd apikey create --help' for usage`},
		{"flag on list", []string{"apikey", "list", "--plan", plan}, "apikey list: flag provided but not defined: -plan"},
		{"unknown command", []string{"apikey", "frob"}, `unknown apikey command "frob"`},
		{"no command", []string{"apikey"}, "apikey: missing command: want create, list, disable or rotate; run 'authd apikey --help' for usage"},
		{"disable without id", []string{"apikey", "disable"}, "apikey disable: want ID, got 0 argument(s)"},
		{"disable unknown id", []string{"apikey", "disable", "aaaaaaaaaaaa"}, "api key aaaaaaaaaaaa does not exist"},
		{"rotate unknown id", []string{"apikey", "rotate", "aaaaaaaaaaaa"}, "api key aaaaaaaaaaaa does not exist"},
		{"disable a full key", []string{"apikey", "disable", "authd_aaaaaaaaaaaa_" + strings.Repeat("A", 43)}, "apikey disable: give the key's id (aaaaaaaaaaaa), not the key itself"},
		{"rotate a malformed id", []string{"apikey", "rotate", "AAAA"}, `apikey rotate: "AAAA" is not an api key id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, env, "", tt.args...)
			if r.err == nil {
				t.Fatalf("authd %s: got no error (stdout %q), want %q", strings.Join(tt.args, " "), r.stdout, tt.want)
			}
			if msg := r.err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("authd %s: got %q, want one line containing %q", strings.Join(tt.args, " "), msg, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout: got %q, want nothing", r.stdout)
			}
		})
	}
	if n := count(t, url, `select count(*) from auth.api_key`); n != 0 {
		t.Errorf("keys after refused commands: got %d, want 0", n)
	}
}

func TestAPIKeyListDisableRotate(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	db := storetest.Open(t, url)
	ctx := context.Background()
	role, doomed := storetest.NewRole(t), storetest.NewRole(t)
	free := newPlan(t, url, role, 60, "")
	trial := newPlan(t, url, role, 60, "30 days")

	key1, id1 := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", free))
	key2, id2 := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", trial))
	key3, id3 := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", free, "--role", doomed, "--expires", "1h"))
	storetest.Exec(t, storetest.AdminURL(), `drop role `+doomed)
	storetest.Exec(t, url, `update auth.api_key set expires_at = now() - interval '1 minute' where id = $1`, id3)
	if err := db.TouchAPIKeys(ctx, []string{id1, "unknownunkno"}); err != nil {
		t.Fatal(err)
	}
	if err := db.TouchAPIKeys(ctx, nil); err != nil {
		t.Fatal(err)
	}

	list := func() map[string]string {
		t.Helper()
		r := mustRun(t, env, "", "apikey", "list")
		for _, plain := range []string{key1, key2, key3} {
			if strings.Contains(r.stdout, plain[len(plain)-43:]) || strings.Contains(r.stdout, hex.EncodeToString(sha(plain))) {
				t.Errorf("apikey list shows a secret or a hash:\n%s", r.stdout)
			}
		}
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if got := strings.Fields(lines[0]); strings.Join(got, " ") != "ID ROLE PLAN ENABLED EXPIRES LAST USED CREATED" {
			t.Errorf("header: got %q", lines[0])
		}
		rows := map[string]string{}
		for _, l := range lines[1:] {
			rows[strings.Fields(l)[0]] = l
		}
		return rows
	}
	rows := list()
	if len(rows) != 3 {
		t.Fatalf("apikey list: got %d keys, want 3: %v", len(rows), rows)
	}
	for _, c := range []struct{ id, want string }{
		{id1, role + " +" + free + " +yes +never +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\d{4}-"}, // last used, created
		{id2, role + " +" + trial + " +yes +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +never +\\d{4}-"},
		{id3, doomed + ` \(missing\) +` + free + ` +yes +\S+ \S+ \(expired\) +never`},
	} {
		if !regexp.MustCompile(`^` + c.id + ` +` + c.want).MatchString(rows[c.id]) {
			t.Errorf("list row of %s: got %q, want it to match %q", c.id, rows[c.id], c.want)
		}
	}
	if k, err := db.APIKey(ctx, id3); err != nil || k.RoleExists {
		t.Errorf("key with a dropped role: got RoleExists %v, %v; want false", k.RoleExists, err)
	}

	// disable
	r := mustRun(t, env, "", "apikey", "disable", id2)
	if !strings.Contains(r.stdout, id2) {
		t.Errorf("disable: got %q, want it to name %s", r.stdout, id2)
	}
	if k, err := db.APIKey(ctx, id2); err != nil || k.Enabled {
		t.Errorf("after disable: got enabled %v, %v; want false", k.Enabled, err)
	}
	mustRun(t, env, "", "apikey", "disable", id2) // twice is not an error
	if row := list()[id2]; !regexp.MustCompile(`^` + id2 + ` +\S+ +\S+ +no `).MatchString(row) {
		t.Errorf("list row of the disabled key: got %q, want ENABLED no", row)
	}
	if k, err := db.APIKey(ctx, id1); err != nil || !k.Enabled {
		t.Errorf("the other key after disable: got enabled %v, %v; want true", k.Enabled, err)
	}

	// rotate
	before, err := db.APIKey(ctx, id1)
	if err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, env, "", "apikey", "rotate", id1)
	newKey, newID := keyFrom(t, r)
	if newID != id1 || newKey == key1 {
		t.Errorf("rotate: got key %s…, want a new secret for the id %s", newKey[:18], id1)
	}
	if strings.Contains(r.stdout+r.stderr, key1[len(key1)-43:]) {
		t.Errorf("rotate printed the old key")
	}
	after, err := db.APIKey(ctx, id1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after.SecretHash, sha(newKey)) {
		t.Errorf("hash after rotate is not the SHA-256 of the new key")
	}
	if n := count(t, url, `select count(*) from auth.api_key where secret_hash = $1`, sha(key1)); n != 0 {
		t.Errorf("rows with the old key's hash after rotate: got %d, want 0", n)
	}
	before.SecretHash, after.SecretHash = nil, nil
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("rotate changed more than the secret:\nbefore %+v\nafter  %+v", before, after)
	}
	if n := rowsContaining(t, url, newKey[len(newKey)-43:]); n != 0 {
		t.Errorf("the rotated key's secret is in %d rows", n)
	}
}

// TestAPIKeySchema writes auth.plan and auth.api_key with plain SQL: the
// database itself refuses what authd's CLI refuses.
func TestAPIKeySchema(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	plan := newPlan(t, url, role, 60, "")
	h := sha("x")
	storetest.Exec(t, url, `insert into auth.api_key (id, secret_hash, role, plan) values ('aaaaaaaaaaaa', $1, $2, $3)`, h, role, plan)

	tests := []struct {
		name, sql  string
		args       []any
		code       string
		constraint string
	}{
		{"key with a missing role",
			`insert into auth.api_key (id, secret_hash, role, plan) values ('bbbbbbbbbbbb', $1, 'authd_no_such_role_xyz', $2)`,
			[]any{sha("y"), plan}, "23503", ""},
		{"key updated to a missing role",
			`update auth.api_key set role = 'authd_no_such_role_xyz' where id = 'aaaaaaaaaaaa'`, nil, "23503", ""},
		{"plan with a missing role",
			`insert into auth.plan (name, role, requests_per_minute) values ('p2', 'authd_no_such_role_xyz', 60)`, nil, "23503", ""},
		{"plan updated to a missing role",
			`update auth.plan set role = 'authd_no_such_role_xyz' where name = $1`, []any{plan}, "23503", ""},
		{"key of an unknown plan",
			`insert into auth.api_key (id, secret_hash, role, plan) values ('bbbbbbbbbbbb', $1, $2, 'authd_no_such_plan')`,
			[]any{sha("y"), role}, "23503", "api_key_plan_fkey"},
		{"plan in use deleted",
			`delete from auth.plan where name = $1`, []any{plan}, "23503", "api_key_plan_fkey"},
		{"hash of the wrong length",
			`insert into auth.api_key (id, secret_hash, role, plan) values ('bbbbbbbbbbbb', $1, $2, $3)`,
			[]any{h[:31], role, plan}, "23514", "api_key_secret_hash_check"},
		{"plaintext key",
			`insert into auth.api_key (id, secret_hash, role, plan) values ('bbbbbbbbbbbb', convert_to('authd_bbbbbbbbbbbb_secret', 'UTF8'), $1, $2)`,
			[]any{role, plan}, "23514", "api_key_secret_hash_check"},
		{"duplicate hash",
			`insert into auth.api_key (id, secret_hash, role, plan) values ('bbbbbbbbbbbb', $1, $2, $3)`,
			[]any{h, role, plan}, "23505", "api_key_secret_hash_key"},
		{"zero requests per minute",
			`insert into auth.plan (name, role, requests_per_minute) values ('p2', $1, 0)`, []any{role}, "23514", "plan_requests_per_minute_check"},
		{"negative key lifetime",
			`insert into auth.plan (name, role, requests_per_minute, key_lifetime) values ('p2', $1, 60, '-1 day')`, []any{role}, "23514", "plan_key_lifetime_check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := connect(t, url).Exec(context.Background(), tt.sql, tt.args...)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%s: got %v, want SQLSTATE %s", tt.sql, err, tt.code)
			}
			if pgErr.Code != tt.code || pgErr.ConstraintName != tt.constraint {
				t.Errorf("got SQLSTATE %s, constraint %q (%s); want %s, %q", pgErr.Code, pgErr.ConstraintName, pgErr.Message, tt.code, tt.constraint)
			}
		})
	}

	// A renamed plan takes its keys along.
	storetest.Exec(t, url, `update auth.plan set name = 'renamed' where name = $1`, plan)
	if n := count(t, url, `select count(*) from auth.api_key where plan = 'renamed'`); n != 1 {
		t.Errorf("keys of the renamed plan: got %d, want 1", n)
	}

	// Through the store, the missing role and the unknown plan come back
	// typed.
	db := storetest.Open(t, url)
	ctx := context.Background()
	_, err := db.CreateAPIKey(ctx, "cccccccccccc", sha("z"), "authd_no_such_role_xyz", "renamed", nil)
	var missing *store.RoleMissingError
	if !errors.As(err, &missing) || missing.Role != "authd_no_such_role_xyz" {
		t.Errorf("CreateAPIKey with a missing role: got %v, want *RoleMissingError", err)
	}
	if _, err := db.CreateAPIKey(ctx, "cccccccccccc", sha("z"), role, "authd_no_such_plan", nil); !errors.Is(err, store.ErrPlanNotFound) {
		t.Errorf("CreateAPIKey with an unknown plan: got %v, want ErrPlanNotFound", err)
	}
	if _, err := db.APIKey(ctx, "cccccccccccc"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("APIKey of an unknown id: got %v, want ErrNotFound", err)
	}

	// The key CreateAPIKey returns is the row it wrote, with its plan's
	// rate, as APIKey loads it.
	created, err := db.CreateAPIKey(ctx, "dddddddddddd", sha("d"), "", "renamed", nil)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := db.APIKey(ctx, "dddddddddddd")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(created, loaded) || created.Role != role || created.RequestsPerMinute != 60 || !created.RoleExists {
		t.Errorf("CreateAPIKey: got %+v, want %+v (role %s, 60 a minute)", created, loaded, role)
	}
	for name, err := range map[string]error{
		"DisableAPIKey": db.DisableAPIKey(ctx, "cccccccccccc"),
		"RotateAPIKey":  db.RotateAPIKey(ctx, "cccccccccccc", sha("w")),
	} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of an unknown id: got %v, want ErrNotFound", name, err)
		}
	}
}

// TestAPIKeyNotify listens as an authd cache would: a change that decides
// whether or as whom a key passes is announced with the key's id; creating
// a key and recording its use are not.
func TestAPIKeyNotify(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	db := storetest.Open(t, url)
	plan := newPlan(t, url, storetest.NewRole(t), 60, "")

	listener := connect(t, url)
	if _, err := listener.Exec(context.Background(), `listen authd_api_key`); err != nil {
		t.Fatal(err)
	}
	next := func(t *testing.T) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("wait for notification: %v", err)
		}
		if n.Channel != "authd_api_key" {
			t.Errorf("channel: got %q, want authd_api_key", n.Channel)
		}
		return n.Payload
	}
	// Notifications from different transactions arrive in commit order,
	// so a marker sent after some statements shows they sent nothing.
	marker := func(t *testing.T, payload string) {
		t.Helper()
		storetest.Exec(t, url, `select pg_notify('authd_api_key', $1)`, payload)
	}
	expect := func(t *testing.T, step, want string) {
		t.Helper()
		if got := next(t); got != want {
			t.Errorf("%s: got notification %q, want %q", step, got, want)
		}
	}

	_, id := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", plan))
	if err := db.TouchAPIKeys(context.Background(), []string{id}); err != nil {
		t.Fatal(err)
	}
	marker(t, "after create and touch")
	expect(t, "create and touch", "after create and touch")

	mustRun(t, env, "", "apikey", "disable", id)
	expect(t, "disable", id)

	mustRun(t, env, "", "apikey", "disable", id) // already disabled: no change
	marker(t, "after second disable")
	expect(t, "second disable", "after second disable")

	mustRun(t, env, "", "apikey", "rotate", id)
	expect(t, "rotate", id)

	storetest.Exec(t, url, `update auth.api_key set expires_at = now() where id = $1`, id)
	expect(t, "expiry changed", id)

	storetest.Exec(t, url, `delete from auth.api_key where id = $1`, id)
	expect(t, "delete", id)
}

// authObjects lists what lives in schema auth: relations, functions,
// triggers and constraints, one per line.
func authObjects(t *testing.T, url string) string {
	t.Helper()
	var s string
	queryRow(t, url, `
		select string_agg(x, E'\n' order by x) from (
		    select 'relation ' || c.relname || ' ' || c.relkind::text
		      from pg_class c where c.relnamespace = 'auth'::regnamespace
		    union all
		    select 'function ' || p.oid::regprocedure::text
		      from pg_proc p where p.pronamespace = 'auth'::regnamespace
		    union all
		    select 'trigger ' || c.relname || ' ' || tg.tgname
		      from pg_trigger tg join pg_class c on c.oid = tg.tgrelid
		     where c.relnamespace = 'auth'::regnamespace
		       and not tg.tgisinternal -- foreign keys' triggers, named by OID
		    union all
		    select 'constraint ' || co.conname || ' ' || co.contype::text
		      from pg_constraint co where co.connamespace = 'auth'::regnamespace
		) objects (x)`, nil, &s)
	return s
}

// TestAPIKeyMigrationDownUp reverts and reapplies 00002 (after 00003,
// which depends on nothing of it) on a database in use: 00001's schema and
// data come out exactly as 00001 alone leaves them.
func TestAPIKeyMigrationDownUp(t *testing.T) {
	t.Parallel()
	// What 00001 alone creates.
	only1 := storetest.NewEmptyURL(t)
	p, err := storetest.Open(t, only1).Migrator()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	want := authObjects(t, only1)

	url := storetest.NewURL(t)
	env := baseEnv(url)
	role := storetest.NewRole(t)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	mustRun(t, env, "", "apikey", "create", "--plan", newPlan(t, url, role, 60, "1 day"))

	if r := mustRun(t, env, "", "migrate", "down-to", "2"); !strings.Contains(r.stdout, "00003_create_nats_permissions.sql") {
		t.Fatalf("migrate down-to 2: got %q, want it to revert 00003_create_nats_permissions.sql", r.stdout)
	}
	r := mustRun(t, env, "", "migrate", "down")
	if !strings.Contains(r.stdout, "00002_create_api_keys.sql") {
		t.Errorf("migrate down: got %q, want it to revert 00002_create_api_keys.sql", r.stdout)
	}
	checkTables(t, url, apiKeyTables, false)
	checkTables(t, url, authTables, true)
	if got := authObjects(t, url); got != want {
		t.Errorf("schema auth after 00002 down:\n%s\nwant, as after 00001 alone:\n%s", got, want)
	}
	if n := count(t, url, `select count(*) from auth.user where username = 'alice' and role = $1`, role); n != 1 {
		t.Errorf("alice after 00002 down: got %d rows, want 1", n)
	}
	st := mustRun(t, env, "", "migrate", "status").stdout
	if got1, got2 := statusState(t, st, "1"), statusState(t, st, "2"); got1 != "applied" || got2 != "pending" {
		t.Errorf("status after 00002 down: 1 %s, 2 %s; want applied, pending", got1, got2)
	}
	// 00001's role trigger, which 00002 reuses, still guards auth.user.
	_, err = connect(t, url).Exec(context.Background(), `update auth.user set role = 'authd_no_such_role_xyz'`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
		t.Errorf("user with a missing role after 00002 down: got %v, want SQLSTATE 23503", err)
	}

	r = mustRun(t, env, "", "migrate", "up")
	if !strings.Contains(r.stdout, "00002_create_api_keys.sql") || strings.Contains(r.stdout, "00001") {
		t.Errorf("migrate up: got %q, want it to apply 00002_create_api_keys.sql and not 00001", r.stdout)
	}
	checkSchema(t, url, true)
	keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", newPlan(t, url, role, 60, "")))
	mustRun(t, env, "pw-of-alice\n", "user", "passwd", "alice")
}

// TestServeRecordsKeyUseOnStop: the last use of an API key, written in
// the background after its request was answered, is in the database
// once serve has stopped — serve waits for that write before it closes
// its pool, rather than losing it with a warning.
func TestServeRecordsKeyUseOnStop(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	plain, id := keyFrom(t, mustRun(t, baseEnv(url), "", "apikey", "create", "--plan", newPlan(t, url, storetest.NewRole(t), 600, "")))
	srv := startServer(t, url, nil)
	if got := verifyKey(t, srv.base, plain); got != http.StatusOK {
		t.Fatalf("/auth/verify with the API key: got %d, want 200", got)
	}
	logs := srv.stop(t)
	var used bool
	queryRow(t, url, `select last_used_at is not null from auth.api_key where id = $1`, []any{id}, &used)
	if !used {
		t.Error("after stop: the key's last use is not recorded")
	}
	if strings.Contains(logs, "record api key use") {
		t.Errorf("serve's log has a failed write of the key's use:\n%s", logs)
	}
}
