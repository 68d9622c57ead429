package main

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"authd/store"
	"authd/store/storetest"
)

// natsListing is what `authd nats list` printed: the grants as
// "ROLE KIND SUBJECT" and the response settings as "ROLE RESPONSES MAX
// TTL", one string per row with single spaces.
type natsListing struct{ grants, responses []string }

func listNATS(t *testing.T, env map[string]string, args ...string) natsListing {
	t.Helper()
	out := mustRun(t, env, "", append([]string{"nats", "list"}, args...)...).stdout
	grants, responses, _ := strings.Cut(out, "\n\n")
	l := natsListing{grants: tableRows(t, "nats list", grants, "ROLE KIND SUBJECT")}
	if responses != "" {
		l.responses = tableRows(t, "nats list", responses, "ROLE RESPONSES MAX TTL")
	}
	return l
}

// tableRows is the rows of a table cmd printed under header, each with
// single spaces between its columns.
func tableRows(t *testing.T, cmd, block, header string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(block, "\n"), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != header {
		t.Fatalf("%s: got header %q, want %q in\n%s", cmd, got, header, block)
	}
	var rows []string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	return rows
}

func natsPermissions(t *testing.T, db *store.DB, role string) store.NATSPermissions {
	t.Helper()
	p, err := db.NATSPermissions(context.Background(), role)
	if err != nil {
		t.Fatalf("NATSPermissions(%s): %v", role, err)
	}
	return p
}

func checkPermissions(t *testing.T, db *store.DB, role string, want store.NATSPermissions) {
	t.Helper()
	if got := natsPermissions(t, db, role); !reflect.DeepEqual(got, want) {
		t.Errorf("NATSPermissions(%s):\ngot  %+v\nwant %+v", role, got, want)
	}
}

// none is the permissions of a role without grants: empty lists, not nil.
var none = store.NATSPermissions{PubAllow: []string{}, PubDeny: []string{}, SubAllow: []string{}, SubDeny: []string{}}

func TestNATSGrantListRevoke(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	db := storetest.Open(t, url)
	svc, web := storetest.NewRole(t), storetest.NewRole(t)

	checkPermissions(t, db, svc, none)
	if l := listNATS(t, env); len(l.grants) != 0 || len(l.responses) != 0 {
		t.Errorf("nats list of an empty table: got %+v", l)
	}

	// Flags before, between and after the role, repeated, and --flag=value.
	r := mustRun(t, env, "", "nats", "grant", "--pub", "orders.*", svc, "--pub", "events.>",
		"--sub=>", "--deny-pub", "orders.secret", "--deny-sub", "events.internal.>", "--pub", "$JS.API.>",
		"--allow-responses", "--max-responses", "5", "--response-ttl", "1m")
	for _, line := range []string{
		"granted NATS pub_allow orders.* to " + svc,
		"granted NATS pub_allow events.> to " + svc,
		"granted NATS pub_allow $JS.API.> to " + svc,
		"granted NATS sub_allow > to " + svc,
		"granted NATS pub_deny orders.secret to " + svc,
		"granted NATS sub_deny events.internal.> to " + svc,
		"granted NATS allow_responses to " + svc + " (max 5, ttl 1m0s)",
	} {
		if !strings.Contains(r.stdout, line+"\n") {
			t.Errorf("nats grant: stdout %q: want the line %q", r.stdout, line)
		}
	}
	mustRun(t, env, "", "nats", "grant", web, "--sub", "_INBOX.>", "--allow-responses")

	wantSvc := store.NATSPermissions{
		PubAllow:       []string{"$JS.API.>", "events.>", "orders.*"}, // sorted bytewise
		PubDeny:        []string{"orders.secret"},
		SubAllow:       []string{">"},
		SubDeny:        []string{"events.internal.>"},
		AllowResponses: true,
		ResponseMax:    5,
		ResponseTTL:    time.Minute,
	}
	checkPermissions(t, db, svc, wantSvc)
	wantWeb := none
	wantWeb.SubAllow = []string{"_INBOX.>"}
	wantWeb.AllowResponses = true
	checkPermissions(t, db, web, wantWeb)

	svcRows := []string{
		svc + " pub_allow $JS.API.>",
		svc + " pub_allow events.>",
		svc + " pub_allow orders.*",
		svc + " pub_deny orders.secret",
		svc + " sub_allow >",
		svc + " sub_deny events.internal.>",
	}
	webRows := []string{web + " sub_allow _INBOX.>"}
	svcResp := svc + " allowed 5 1m0s"
	webResp := web + " allowed 1 (default) 2m0s (default)"
	all := natsListing{append(append([]string{}, svcRows...), webRows...), []string{svcResp, webResp}}
	if svc > web {
		all = natsListing{append(append([]string{}, webRows...), svcRows...), []string{webResp, svcResp}}
	}
	if got := listNATS(t, env); !reflect.DeepEqual(got, all) {
		t.Errorf("nats list:\ngot  %q\nwant %q", got, all)
	}
	if got, want := listNATS(t, env, svc), (natsListing{svcRows, []string{svcResp}}); !reflect.DeepEqual(got, want) {
		t.Errorf("nats list %s:\ngot  %q\nwant %q", svc, got, want)
	}
	if got := listNATS(t, env, "authd_no_such_role_xyz"); len(got.grants) != 0 || len(got.responses) != 0 {
		t.Errorf("nats list of an unknown role: got %q, want no rows", got)
	}

	// Granting again is not an error and changes nothing, not even the
	// creation time; new limits replace the old ones.
	var created time.Time
	queryRow(t, url, `select created_at from auth.nats_permission where role = $1 and subject = 'orders.*'`, []any{svc}, &created)
	mustRun(t, env, "", "nats", "grant", svc, "--pub", "orders.*", "--pub", "orders.*", "--sub", ">")
	checkPermissions(t, db, svc, wantSvc)
	var again time.Time
	queryRow(t, url, `select created_at from auth.nats_permission where role = $1 and subject = 'orders.*'`, []any{svc}, &again)
	if !again.Equal(created) {
		t.Errorf("created_at after granting again: got %v, want %v", again, created)
	}
	mustRun(t, env, "", "nats", "grant", svc, "--allow-responses", "--response-ttl", "30s")
	wantSvc.ResponseMax, wantSvc.ResponseTTL = 0, 30*time.Second
	checkPermissions(t, db, svc, wantSvc)

	// revoke
	r = mustRun(t, env, "", "nats", "revoke", svc, "--pub", "orders.*", "--deny-sub", "events.internal.>", "--responses")
	for _, line := range []string{
		"revoked NATS pub_allow orders.* from " + svc,
		"revoked NATS sub_deny events.internal.> from " + svc,
		"revoked NATS allow_responses from " + svc,
	} {
		if !strings.Contains(r.stdout, line+"\n") {
			t.Errorf("nats revoke: stdout %q: want the line %q", r.stdout, line)
		}
	}
	wantSvc = none
	wantSvc.PubAllow = []string{"$JS.API.>", "events.>"}
	wantSvc.PubDeny = []string{"orders.secret"}
	wantSvc.SubAllow = []string{">"}
	checkPermissions(t, db, svc, wantSvc)
	checkPermissions(t, db, web, wantWeb) // the other role keeps its own

	// What is gone cannot be revoked again; nothing else is revoked then.
	r = runCLI(t, env, "", "nats", "revoke", svc, "--pub", "events.>", "--pub", "orders.*")
	if r.err == nil || !strings.Contains(r.err.Error(), `no pub_allow grant of "orders.*"`) || !strings.Contains(r.err.Error(), "nothing to revoke") {
		t.Errorf("revoking a revoked grant: got %v, want nothing to revoke", r.err)
	}
	checkPermissions(t, db, svc, wantSvc)

	mustRun(t, env, "", "nats", "revoke", svc, "--pub", "$JS.API.>", "--pub", "events.>", "--deny-pub", "orders.secret", "--sub", ">", "--sub", ">")
	checkPermissions(t, db, svc, none)
	if got, want := listNATS(t, env), (natsListing{webRows, []string{webResp}}); !reflect.DeepEqual(got, want) {
		t.Errorf("nats list after revoking everything of %s:\ngot  %q\nwant %q", svc, got, want)
	}

	// A role dropped after its grants keeps them until they are revoked,
	// and shows as missing.
	storetest.Exec(t, storetest.AdminURL(), `drop role `+web)
	if got, want := listNATS(t, env), (natsListing{[]string{web + " (missing) sub_allow _INBOX.>"}, []string{web + " (missing) allowed 1 (default) 2m0s (default)"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("nats list after dropping %s:\ngot  %q\nwant %q", web, got, want)
	}
	mustRun(t, env, "", "nats", "revoke", web, "--sub", "_INBOX.>", "--responses")
	if n := count(t, url, `select (select count(*) from auth.nats_permission) + (select count(*) from auth.nats_role)`); n != 0 {
		t.Errorf("rows left after revoking everything: %d", n)
	}
}

func TestNATSErrors(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	role := storetest.NewRole(t)
	mustRun(t, env, "", "nats", "grant", role, "--pub", "orders.*")

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing role", []string{"nats", "grant", "authd_no_such_role_xyz", "--pub", "orders.*"},
			`nats grant: role "authd_no_such_role_xyz" does not exist (create it first: create role "authd_no_such_role_xyz";)`},
		{"missing role, responses only", []string{"nats", "grant", "authd_no_such_role_xyz", "--allow-responses"},
			`nats grant: role "authd_no_such_role_xyz" does not exist`},
		{"empty token", []string{"nats", "grant", role, "--pub", "foo..bar"}, `nats grant: --pub: bad NATS subject "foo..bar": empty token`},
		{"> not last", []string{"nats", "grant", role, "--sub", "foo.>.bar"}, `nats grant: --sub: bad NATS subject "foo.>.bar": '>' must be the last token`},
		{"* inside a token", []string{"nats", "grant", role, "--deny-pub", "fo*o"}, `nats grant: --deny-pub: bad NATS subject "fo*o": '*' and '>' must be whole tokens`},
		{"> inside a token", []string{"nats", "grant", role, "--deny-sub", "foo>"}, `bad NATS subject "foo>": '*' and '>' must be whole tokens`},
		{"leading dot", []string{"nats", "grant", role, "--pub", ".foo"}, `bad NATS subject ".foo": empty token`},
		{"trailing dot", []string{"nats", "grant", role, "--pub", "foo."}, `bad NATS subject "foo.": empty token`},
		{"empty subject", []string{"nats", "grant", role, "--pub", ""}, `bad NATS subject "": empty subject`},
		{"space", []string{"nats", "grant", role, "--pub", "foo bar"}, `bad NATS subject "foo bar": whitespace or control character`},
		{"newline", []string{"nats", "grant", role, "--pub", "foo\nbar"}, `bad NATS subject "foo\nbar": whitespace or control character`},
		{"bad subject after good ones", []string{"nats", "grant", role, "--pub", "ok.one", "--sub", "ok.two", "--pub", "foo..bar"}, `--pub: bad NATS subject "foo..bar"`},
		{"bad subject on revoke", []string{"nats", "revoke", role, "--pub", "foo..bar"}, `nats revoke: --pub: bad NATS subject "foo..bar": empty token`},
		{"nothing to revoke", []string{"nats", "revoke", role, "--pub", "orders.>"}, `nats revoke ` + role + `: no pub_allow grant of "orders.>" (--pub): nothing to revoke`},
		{"revoke of another kind", []string{"nats", "revoke", role, "--sub", "orders.*"}, `no sub_allow grant of "orders.*" (--sub): nothing to revoke`},
		{"no responses to revoke", []string{"nats", "revoke", role, "--responses"}, `responses are not allowed (--responses): nothing to revoke`},
		{"revoke from a missing role", []string{"nats", "revoke", "authd_no_such_role_xyz", "--pub", "orders.*"}, `nothing to revoke`},
		{"nothing to grant", []string{"nats", "grant", role}, "nats grant: nothing to grant: give --pub, --sub, --deny-pub, --deny-sub or --allow-responses"},
		{"revoke without flags", []string{"nats", "revoke", role}, "nats revoke: nothing to revoke: give --pub, --sub, --deny-pub, --deny-sub or --responses"},
		{"no role", []string{"nats", "grant", "--pub", "a"}, "nats grant: want ROLE, got 0 argument(s); run 'authd nats grant --help' for usage"},
		{"two roles", []string{"nats", "revoke", role, role, "--pub", "a"}, "nats revoke: want ROLE, got 2 argument(s)"},
		{"max without allow", []string{"nats", "grant", role, "--pub", "a", "--max-responses", "3"}, "nats grant: --max-responses and --response-ttl need --allow-responses"},
		{"ttl without allow", []string{"nats", "grant", role, "--response-ttl", "1m"}, "nats grant: --max-responses and --response-ttl need --allow-responses"},
		{"zero max", []string{"nats", "grant", role, "--allow-responses", "--max-responses", "0"}, "nats grant: bad --max-responses 0: want a positive number"},
		{"negative ttl", []string{"nats", "grant", role, "--allow-responses", "--response-ttl", "-1s"}, "nats grant: bad --response-ttl -1s"},
		{"ttl not a duration", []string{"nats", "grant", role, "--allow-responses", "--response-ttl", "soon"}, `nats grant: invalid value "soon" for flag -response-ttl`},
		{"--responses on grant", []string{"nats", "grant", role, "--responses"}, "nats grant: --responses applies only to nats revoke"},
		{"--allow-responses on revoke", []string{"nats", "revoke", role, "--allow-responses"}, "nats revoke: --allow-responses, --max-responses and --response-ttl apply only to nats grant"},
		{"flag on list", []string{"nats", "list", "--pub", "a"}, "nats list: flag provided but not defined: -pub; run 'authd nats list --help' for usage"},
		{"two roles on list", []string{"nats", "list", "a", "b"}, "nats list: want [ROLE], got 2 argument(s)"},
		{"unknown flag", []string{"nats", "grant", role, "--publish", "a"}, "nats grant: flag provided but not defined: -publish"},
		{"unknown command", []string{"nats", "frob"}, `unknown nats command "frob": want grant, revoke, list, map, unmap, mappings or require-mfa`},
		{"no command", []string{"nats"}, "nats: missing command: want grant, revoke, list, map, unmap, mappings or require-mfa; run 'authd nats --help' for usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, env, "", tt.args...)
			if r.err == nil {
				t.Fatalf("authd %q: got no error (stdout %q), want %q", tt.args, r.stdout, tt.want)
			}
			if msg := r.err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("authd %q: got %q, want one line containing %q", tt.args, msg, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout: got %q, want nothing", r.stdout)
			}
		})
	}
	// Only the first grant is there.
	if n := count(t, url, `select count(*) from auth.nats_permission`); n != 1 {
		t.Errorf("grants after refused commands: got %d, want 1", n)
	}
	if n := count(t, url, `select count(*) from auth.nats_role`); n != 0 {
		t.Errorf("response settings after refused commands: got %d, want 0", n)
	}
}

// TestNATSGrantAllOrNothing: a subject that passes the CLI's check but that
// the database refuses (bytes that are not UTF-8, which a shell passes on
// as they are) makes nats grant fail as a whole: the good subject given
// before it and the response setting after it are not written either.
func TestNATSGrantAllOrNothing(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	db := storetest.Open(t, url)
	role := storetest.NewRole(t)
	const refused = "bad.\xff"
	if err := store.CheckNATSSubject(refused); err != nil {
		t.Fatalf("CheckNATSSubject(%q): %v, want it to pass so that the database decides", refused, err)
	}

	r := runCLI(t, env, "", "nats", "grant", role, "--pub", "ok.subject", "--sub", "ok.>", "--pub", refused, "--allow-responses")
	var pgErr *pgconn.PgError
	if !errors.As(r.err, &pgErr) || pgErr.Code != "22021" {
		t.Fatalf("nats grant with a subject that is not UTF-8: got %v, want SQLSTATE 22021 (invalid byte sequence)", r.err)
	}
	if msg := r.err.Error(); !strings.Contains(msg, `"bad.\xff"`) || strings.Contains(msg, "\n") {
		t.Errorf("error: got %q, want one line naming the subject", msg)
	}
	if r.stdout != "" {
		t.Errorf("stdout: got %q, want nothing granted", r.stdout)
	}
	if n := count(t, url, `select count(*) from auth.nats_permission`); n != 0 {
		t.Errorf("grants after the refused command: got %d rows, want 0", n)
	}
	if n := count(t, url, `select count(*) from auth.nats_role`); n != 0 {
		t.Errorf("response settings after the refused command: got %d rows, want 0", n)
	}
	checkPermissions(t, db, role, none)

	// The same through the store, and a revocation that lacks its last
	// rule gives back what it deleted first.
	ctx := context.Background()
	ok := store.NATSRule{Kind: store.NATSPubAllow, Subject: "ok.subject"}
	err := db.GrantNATSRules(ctx, role, []store.NATSRule{ok, {Kind: store.NATSPubAllow, Subject: refused}}, nil)
	if !errors.As(err, &pgErr) || pgErr.Code != "22021" {
		t.Errorf("GrantNATSRules with a refused subject: got %v, want SQLSTATE 22021", err)
	}
	checkPermissions(t, db, role, none)
	if err := db.GrantNATSRules(ctx, role, []store.NATSRule{ok}, &store.NATSResponseLimits{}); err != nil {
		t.Fatal(err)
	}
	want := none
	want.PubAllow, want.AllowResponses = []string{"ok.subject"}, true
	checkPermissions(t, db, role, want)
	var missing *store.NATSNotGrantedError
	err = db.RevokeNATSRules(ctx, role, []store.NATSRule{ok, {Kind: store.NATSSubAllow, Subject: "ok.subject"}}, true)
	if !errors.As(err, &missing) || missing.Rule.Kind != store.NATSSubAllow || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeNATSRules of a rule the role lacks: got %v, want *NATSNotGrantedError for sub_allow", err)
	}
	checkPermissions(t, db, role, want)
	if err := db.RevokeNATSRules(ctx, role, nil, true); err != nil {
		t.Fatal(err)
	}
	err = db.RevokeNATSRules(ctx, role, []store.NATSRule{ok}, true)
	if !errors.As(err, &missing) || !missing.Responses {
		t.Errorf("RevokeNATSRules of responses not allowed: got %v, want *NATSNotGrantedError for responses", err)
	}
	want.AllowResponses = false
	checkPermissions(t, db, role, want)
}

// natsSubjects are subject patterns and whether they are valid, for both
// store.CheckNATSSubject and the database's auth.is_nats_subject.
var natsSubjects = []struct {
	subject string
	valid   bool
}{
	{"orders.*", true},
	{"events.>", true},
	{">", true},
	{"*", true},
	{"*.*.>", true},
	{"orders", true},
	{"$JS.API.>", true},
	{"_INBOX.>", true},
	{"a-b_c.d:e/f", true},
	{"ünïcode.日本", true},
	{"zero\u200bwidth", true}, // not whitespace for Go nor for NATS
	{"foo..bar", false},
	{"foo.>.bar", false},
	{">.foo", false},
	{"a.>.>", false},
	{"fo*o", false},
	{"foo>", false},
	{"foo.*>", false},
	{"**", false},
	{".foo", false},
	{"foo.", false},
	{".", false},
	{"", false},
	{"foo bar", false},
	{" foo", false},
	{"foo\tbar", false},
	{"foo\rbar", false},
	{"foo\x7fbar", false},
	{"foo\u0085bar", false},
	{"foo\u00a0bar", false},
	{"foo\u2028bar", false},
	{"foo\u3000bar", false},
}

// TestNATSSchema writes auth.nats_permission and auth.nats_role with plain
// SQL: the database itself refuses what the CLI refuses.
func TestNATSSchema(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	conn := connect(t, url)
	ctx := context.Background()

	// Go and SQL agree on every subject.
	for _, s := range natsSubjects {
		var sqlOK bool
		if err := conn.QueryRow(ctx, `select auth.is_nats_subject($1)`, s.subject).Scan(&sqlOK); err != nil {
			t.Fatal(err)
		}
		goErr := store.CheckNATSSubject(s.subject)
		if sqlOK != s.valid || (goErr == nil) != s.valid {
			t.Errorf("subject %q: auth.is_nats_subject %v, CheckNATSSubject %v; want valid %v", s.subject, sqlOK, goErr, s.valid)
		}
		var subjErr *store.NATSSubjectError
		if goErr != nil && (!errors.As(goErr, &subjErr) || subjErr.Subject != s.subject || subjErr.Reason == "") {
			t.Errorf("CheckNATSSubject(%q): got %#v, want a *NATSSubjectError", s.subject, goErr)
		}
	}

	for _, subject := range []string{"orders.*", "events.>", ">"} {
		storetest.Exec(t, url, `insert into auth.nats_permission (role, kind, subject) values ($1, 'pub_allow', $2)`, role, subject)
	}
	storetest.Exec(t, url, `insert into auth.nats_role (role, allow_responses, max_responses, response_ttl) values ($1, true, 2, '90 seconds')`, role)

	tests := []struct {
		name, sql  string
		args       []any
		code       string
		constraint string
	}{
		{"grant to a missing role",
			`insert into auth.nats_permission (role, kind, subject) values ('authd_no_such_role_xyz', 'sub_allow', 'a')`, nil, "23503", ""},
		{"grant moved to a missing role",
			`update auth.nats_permission set role = 'authd_no_such_role_xyz' where subject = '>'`, nil, "23503", ""},
		{"responses of a missing role",
			`insert into auth.nats_role (role, allow_responses) values ('authd_no_such_role_xyz', true)`, nil, "23503", ""},
		{"responses moved to a missing role",
			`update auth.nats_role set role = 'authd_no_such_role_xyz' where role = $1`, []any{role}, "23503", ""},
		{"unknown kind",
			`insert into auth.nats_permission (role, kind, subject) values ($1, 'pub', 'a')`, []any{role}, "23514", "nats_permission_kind_check"},
		{"null subject",
			`insert into auth.nats_permission (role, kind, subject) values ($1, 'pub_allow', null)`, []any{role}, "23502", ""},
		{"duplicate grant",
			`insert into auth.nats_permission (role, kind, subject) values ($1, 'pub_allow', '>')`, []any{role}, "23505", "nats_permission_pkey"},
		{"zero max responses",
			`update auth.nats_role set max_responses = 0 where role = $1`, []any{role}, "23514", "nats_role_max_responses_check"},
		{"negative response ttl",
			`update auth.nats_role set response_ttl = '-1 minute' where role = $1`, []any{role}, "23514", "nats_role_response_ttl_check"},
		{"limits without allow_responses",
			`update auth.nats_role set allow_responses = false where role = $1`, []any{role}, "23514", "nats_role_check"},
	}
	for _, s := range natsSubjects {
		if !s.valid {
			tests = append(tests, struct {
				name, sql  string
				args       []any
				code       string
				constraint string
			}{"subject " + s.subject, `insert into auth.nats_permission (role, kind, subject) values ($1, 'sub_deny', $2)`,
				[]any{role, s.subject}, "23514", "nats_permission_subject_check"})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := conn.Exec(ctx, tt.sql, tt.args...)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%s: got %v, want SQLSTATE %s", tt.sql, err, tt.code)
			}
			if pgErr.Code != tt.code || pgErr.ConstraintName != tt.constraint {
				t.Errorf("got SQLSTATE %s, constraint %q (%s); want %s, %q", pgErr.Code, pgErr.ConstraintName, pgErr.Message, tt.code, tt.constraint)
			}
		})
	}
	if n := count(t, url, `select count(*) from auth.nats_permission`); n != 3 {
		t.Errorf("grants after the refused statements: got %d, want 3", n)
	}

	// What plain SQL wrote, the store reads back sorted.
	db := storetest.Open(t, url)
	want := none
	want.PubAllow = []string{">", "events.>", "orders.*"}
	want.AllowResponses, want.ResponseMax, want.ResponseTTL = true, 2, 90*time.Second
	checkPermissions(t, db, role, want)
	checkPermissions(t, db, "authd_no_such_role_xyz", none)
}

// TestNATSStore checks the store's API and its typed errors.
func TestNATSStore(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	role, other := storetest.NewRole(t), storetest.NewRole(t)

	grants := []struct{ kind, subject string }{
		{store.NATSSubAllow, "b.>"}, {store.NATSSubAllow, "B.*"}, {store.NATSSubAllow, "a"},
		{store.NATSPubAllow, "z"}, {store.NATSPubAllow, "_INBOX.>"},
		{store.NATSPubDeny, "z.secret"},
		{store.NATSSubDeny, "b.private.>"},
	}
	for _, g := range grants {
		for range 2 { // idempotent
			if err := db.GrantNATS(ctx, role, g.kind, g.subject); err != nil {
				t.Fatalf("GrantNATS(%s, %s, %s): %v", role, g.kind, g.subject, err)
			}
		}
	}
	if err := db.GrantNATS(ctx, other, store.NATSPubAllow, ">"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetNATSResponses(ctx, role, true, 10, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	want := store.NATSPermissions{
		PubAllow:       []string{"_INBOX.>", "z"},
		PubDeny:        []string{"z.secret"},
		SubAllow:       []string{"B.*", "a", "b.>"}, // bytewise, whatever the collation
		SubDeny:        []string{"b.private.>"},
		AllowResponses: true,
		ResponseMax:    10,
		ResponseTTL:    1500 * time.Millisecond,
	}
	checkPermissions(t, db, role, want)

	all, err := db.NATSGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine []store.NATSGrant
	for _, g := range all {
		if g.Role == role {
			mine = append(mine, g)
		}
	}
	grant := func(kind, subject string) store.NATSGrant {
		return store.NATSGrant{Role: role, Kind: kind, Subject: subject, RoleExists: true}
	}
	wantGrants := []store.NATSGrant{
		grant(store.NATSPubAllow, "_INBOX.>"), grant(store.NATSPubAllow, "z"),
		grant(store.NATSPubDeny, "z.secret"),
		grant(store.NATSSubAllow, "B.*"), grant(store.NATSSubAllow, "a"), grant(store.NATSSubAllow, "b.>"),
		grant(store.NATSSubDeny, "b.private.>"),
	}
	if len(all) != len(grants)+1 || !reflect.DeepEqual(mine, wantGrants) {
		t.Errorf("NATSGrants: got %+v, want %+v and one grant of %s", all, wantGrants, other)
	}
	settings, err := db.NATSResponseSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []store.NATSResponses{{Role: role, RoleExists: true, Allow: true, Max: 10, TTL: 1500 * time.Millisecond}}; !reflect.DeepEqual(settings, want) {
		t.Errorf("NATSResponseSettings: got %+v, want %+v", settings, want)
	}

	// Typed errors.
	var subjErr *store.NATSSubjectError
	if err := db.GrantNATS(ctx, role, store.NATSPubAllow, "foo.>.bar"); !errors.As(err, &subjErr) || subjErr.Subject != "foo.>.bar" {
		t.Errorf("GrantNATS of a bad subject: got %v, want *NATSSubjectError", err)
	}
	var kindErr *store.NATSKindError
	if err := db.GrantNATS(ctx, role, "publish", "a"); !errors.As(err, &kindErr) || kindErr.Kind != "publish" {
		t.Errorf("GrantNATS of a bad kind: got %v, want *NATSKindError", err)
	}
	if err := db.RevokeNATS(ctx, role, "publish", "a"); !errors.As(err, &kindErr) {
		t.Errorf("RevokeNATS of a bad kind: got %v, want *NATSKindError", err)
	}
	var missing *store.RoleMissingError
	if err := db.GrantNATS(ctx, "authd_no_such_role_xyz", store.NATSPubAllow, "a"); !errors.As(err, &missing) || missing.Role != "authd_no_such_role_xyz" {
		t.Errorf("GrantNATS to a missing role: got %v, want *RoleMissingError", err)
	}
	if err := db.SetNATSResponses(ctx, "authd_no_such_role_xyz", true, 0, 0); !errors.As(err, &missing) {
		t.Errorf("SetNATSResponses of a missing role: got %v, want *RoleMissingError", err)
	}
	if err := db.RevokeNATS(ctx, role, store.NATSPubAllow, "not.granted"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeNATS of what is not granted: got %v, want ErrNotFound", err)
	}
	for _, c := range []struct {
		allow bool
		max   int
		ttl   time.Duration
	}{{true, -1, 0}, {true, 0, -time.Second}, {true, 0, time.Nanosecond}, {false, 3, 0}, {false, 0, time.Minute}} {
		if err := db.SetNATSResponses(ctx, role, c.allow, c.max, c.ttl); err == nil {
			t.Errorf("SetNATSResponses(%v, %d, %s): got no error", c.allow, c.max, c.ttl)
		}
	}
	checkPermissions(t, db, role, want) // nothing changed by the refused calls

	// Granting again what a role already has re-checks the role: a role
	// dropped since gets an error, not a silent success.
	storetest.Exec(t, storetest.AdminURL(), `drop role `+other)
	if err := db.GrantNATS(ctx, other, store.NATSPubAllow, ">"); !errors.As(err, &missing) || missing.Role != other {
		t.Errorf("GrantNATS again to a dropped role: got %v, want *RoleMissingError", err)
	}

	// Revoking and turning responses off.
	for _, g := range grants {
		if err := db.RevokeNATS(ctx, role, g.kind, g.subject); err != nil {
			t.Fatalf("RevokeNATS(%s, %s): %v", g.kind, g.subject, err)
		}
	}
	if err := db.SetNATSResponses(ctx, role, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	checkPermissions(t, db, role, none)
	if err := db.SetNATSResponses(ctx, role, false, 0, 0); err != nil { // twice
		t.Fatal(err)
	}
}

// TestNATSNotify listens as a callout caching permissions would: every
// change announces its role, once per transaction.
func TestNATSNotify(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	role, other := storetest.NewRole(t), storetest.NewRole(t)
	listener := connect(t, url)
	if _, err := listener.Exec(context.Background(), `listen authd_nats`); err != nil {
		t.Fatal(err)
	}
	expect := func(step string, want ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, w := range want {
			n, err := listener.WaitForNotification(ctx)
			if err != nil {
				t.Fatalf("%s: wait for notification: %v", step, err)
			}
			if n.Payload != w {
				t.Errorf("%s: got notification %q, want %q", step, n.Payload, w)
			}
		}
	}
	mustRun(t, env, "", "nats", "grant", role, "--pub", "a", "--allow-responses")
	expect("grant", role) // one transaction, so one notification
	storetest.Exec(t, url, `insert into auth.nats_permission (role, kind, subject) values ($1, 'pub_allow', 'b'), ($1, 'pub_allow', 'c')`, role)
	expect("insert of two rows", role)
	storetest.Exec(t, url, `update auth.nats_permission set role = $2 where role = $1 and subject = 'b'`, role, other)
	expect("grant moved to another role", role, other)
	mustRun(t, env, "", "nats", "revoke", role, "--pub", "a", "--responses")
	expect("revoke", role)
	storetest.Exec(t, url, `select pg_notify('authd_nats', 'marker')`)
	expect("nothing else", "marker")
}

// TestNATSMigrationDownUp reverts and reapplies 00003 on a database in
// use: the schema and data of 00001 and 00002 come out exactly as they
// were before 00003.
func TestNATSMigrationDownUp(t *testing.T) {
	t.Parallel()
	// What 00001 and 00002 alone create.
	only2 := storetest.NewEmptyURL(t)
	p, err := storetest.Open(t, only2).Migrator()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	want := authObjects(t, only2)

	url := storetest.NewURL(t)
	env := baseEnv(url)
	role := storetest.NewRole(t)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	_, id := keyFrom(t, mustRun(t, env, "", "apikey", "create", "--plan", newPlan(t, url, role, 60, "1 day")))
	mustRun(t, env, "", "nats", "grant", role, "--pub", "orders.*", "--allow-responses")

	mustRun(t, env, "", "migrate", "down-to", "3") // later migrations first
	r := mustRun(t, env, "", "migrate", "down")
	if !strings.Contains(r.stdout, "00003_create_nats_permissions.sql") {
		t.Errorf("migrate down: got %q, want it to revert 00003_create_nats_permissions.sql", r.stdout)
	}
	checkTables(t, url, natsTables, false)
	checkTables(t, url, authTables, true)
	checkTables(t, url, apiKeyTables, true)
	if got := authObjects(t, url); got != want {
		t.Errorf("schema auth after 00003 down:\n%s\nwant, as after 00001 and 00002 alone:\n%s", got, want)
	}
	if n := count(t, url, `select count(*) from auth.user where username = 'alice' and role = $1`, role); n != 1 {
		t.Errorf("alice after 00003 down: got %d rows, want 1", n)
	}
	if n := count(t, url, `select count(*) from auth.api_key where id = $1 and role = $2`, id, role); n != 1 {
		t.Errorf("api key after 00003 down: got %d rows, want 1", n)
	}
	st := mustRun(t, env, "", "migrate", "status").stdout
	for v, want := range map[string]string{"1": "applied", "2": "applied", "3": "pending"} {
		if got := statusState(t, st, v); got != want {
			t.Errorf("status of %s after 00003 down: got %q, want %q", v, got, want)
		}
	}
	// 00001's role trigger, which 00002 and 00003 reuse, still guards
	// auth.user and auth.api_key.
	for _, sql := range []string{
		`update auth.user set role = 'authd_no_such_role_xyz'`,
		`update auth.api_key set role = 'authd_no_such_role_xyz'`,
	} {
		_, err = connect(t, url).Exec(context.Background(), sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
			t.Errorf("%s after 00003 down: got %v, want SQLSTATE 23503", sql, err)
		}
	}
	if r := runCLI(t, env, "", "nats", "list"); r.err == nil {
		t.Errorf("nats list without 00003: got no error")
	}

	r = mustRun(t, env, "", "migrate", "up")
	if !strings.Contains(r.stdout, "00003_create_nats_permissions.sql") || strings.Contains(r.stdout, "00001") || strings.Contains(r.stdout, "00002") {
		t.Errorf("migrate up: got %q, want it to apply 00003_create_nats_permissions.sql alone", r.stdout)
	}
	checkSchema(t, url, true)
	if got := listNATS(t, env); len(got.grants) != 0 || len(got.responses) != 0 {
		t.Errorf("nats list after 00003 down and up: got %q, want no rows", got)
	}
	mustRun(t, env, "", "nats", "grant", role, "--pub", "orders.*")
	mustRun(t, env, "pw-of-alice\n", "user", "passwd", "alice")
	keyFrom(t, mustRun(t, env, "", "apikey", "rotate", id))
}

// TestNATSMapCLI: nats map, mappings and unmap round trip through the
// database, and refuse a bad pattern, a missing or privileged role and an
// unknown mapping with one line each, writing nothing.
func TestNATSMapCLI(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	env := baseEnv(url)
	db := storetest.Open(t, url)
	team, special := storetest.NewRole(t), storetest.NewRole(t)

	mappings := func() []string {
		t.Helper()
		return tableRows(t, "nats mappings", mustRun(t, env, "", "nats", "mappings").stdout, "PATTERN ROLE")
	}
	if rows := mappings(); len(rows) != 0 {
		t.Errorf("mappings of an empty table: %q", rows)
	}

	if r := mustRun(t, env, "", "nats", "map", "my-app/*", team); r.stdout != "mapped NATS workload my-app/* to "+team+"\n" {
		t.Errorf("nats map: stdout %q", r.stdout)
	}
	mustRun(t, env, "", "nats", "map", "my-app/my-nats-client", special)
	want := []string{"my-app/* " + team, "my-app/my-nats-client " + special}
	if rows := mappings(); !reflect.DeepEqual(rows, want) {
		t.Errorf("nats mappings: got %q, want %q", rows, want)
	}
	ctx := context.Background()
	if role, err := db.NATSWorkloadRole(ctx, "my-app", "my-nats-client"); err != nil || role != special {
		t.Errorf("role of my-app/my-nats-client: got %q, %v; want %q", role, err, special)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"nats", "map", "my-app", team}, `nats map: bad workload pattern "my-app": no '/' (want NAMESPACE/SERVICEACCOUNT or NAMESPACE/*)`},
		{[]string{"nats", "map", "My-App/x", team}, `bad workload pattern "My-App/x": the namespace is not a Kubernetes namespace name`},
		{[]string{"nats", "map", "my-app/x*", team}, `bad workload pattern "my-app/x*": the service account is not a Kubernetes name or *`},
		{[]string{"nats", "map", "my-app/x", "authd_no_such_role_xyz"}, `nats map: role "authd_no_such_role_xyz" does not exist (create it first: create role "authd_no_such_role_xyz";)`},
		{[]string{"nats", "map", "my-app/x", "postgres"}, `role "postgres" may not be the role of a token: it is a superuser`},
		{[]string{"nats", "map", "my-app/x"}, "nats map: want PATTERN ROLE, got 1 argument(s)"},
		{[]string{"nats", "unmap", "my-app/x"}, `nats unmap: no mapping "my-app/x": nothing to unmap`},
		{[]string{"nats", "mappings", "x"}, `nats mappings: takes no arguments`},
	} {
		r := runCLI(t, env, "", tt.args...)
		if r.err == nil || !strings.Contains(r.err.Error(), tt.want) || strings.Contains(r.err.Error(), "\n") {
			t.Errorf("authd %q: got %v, want one line containing %q", tt.args, r.err, tt.want)
		}
		if r.stdout != "" {
			t.Errorf("authd %q: stdout %q, want nothing", tt.args, r.stdout)
		}
	}
	if rows := mappings(); !reflect.DeepEqual(rows, want) {
		t.Errorf("after refused commands: got %q, want %q", rows, want)
	}

	if r := mustRun(t, env, "", "nats", "unmap", "my-app/my-nats-client"); r.stdout != "unmapped NATS workload my-app/my-nats-client (was "+special+")\n" {
		t.Errorf("nats unmap: stdout %q", r.stdout)
	}
	if role, err := db.NATSWorkloadRole(ctx, "my-app", "my-nats-client"); err != nil || role != team {
		t.Errorf("after unmap: got %q, %v; want the namespace's %q", role, err, team)
	}
	// A dropped role is marked, as in nats list.
	storetest.Exec(t, storetest.AdminURL(), "drop role "+pgx.Identifier{team}.Sanitize())
	if rows := mappings(); !reflect.DeepEqual(rows, []string{"my-app/* " + team + " (missing)"}) {
		t.Errorf("after dropping the role: got %q", rows)
	}
}
