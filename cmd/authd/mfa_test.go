package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"authd/store/storetest"
)

// TestUserMFAReset: `authd user mfa-reset NAME` removes the user's factor
// and recovery codes, ends every session of theirs (reason mfa_reset) and
// is in the audit log; an unknown user is an error.
func TestUserMFAReset(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	mustRun(t, env, "pw-of-bob\n", "user", "add", "bob", "--role", role)
	db := storetest.Open(t, url)
	ctx := context.Background()
	startSessions(t, db, "alice", "alice", "bob")
	for _, name := range []string{"alice", "bob"} {
		if err := db.EnrollMFA(ctx, name, uuid.New(), "JBSWY3DPEHPK3PXP"); err != nil {
			t.Fatal(err)
		}
	}
	storetest.Exec(t, url, `update auth.mfa_factor set verified_at = now()`)
	storetest.Exec(t, url, `insert into auth.mfa_recovery_code (code_hash, username)
		select sha256(convert_to(u || n, 'utf8')), u from unnest(array['alice', 'bob']) u, generate_series(1, 10) n`)

	r := mustRun(t, env, "", "user", "mfa-reset", "alice")
	if want := `user "alice": second factor removed; 2 session(s) ended`; !strings.Contains(r.stdout, want) {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	for _, c := range []struct {
		sql  string
		want int
	}{
		{`select count(*) from auth.mfa_factor where username = 'alice'`, 0},
		{`select count(*) from auth.mfa_recovery_code where username = 'alice'`, 0},
		{`select count(*) from auth.session where username = 'alice' and revoked_at is null`, 0},
		{`select count(*) from auth.refresh_token t join auth.session s on s.id = t.session_id
		   where s.username = 'alice' and t.revoked_reason = 'mfa_reset'`, 2},
		{`select count(*) from auth.mfa_factor where username = 'bob'`, 1},
		{`select count(*) from auth.mfa_recovery_code where username = 'bob'`, 10},
		{`select count(*) from auth.session where username = 'bob' and revoked_at is null`, 1},
		{`select count(*) from auth.audit_log where event = 'mfa_reset' and username = 'alice'
		   and details ->> 'factor_removed' = 'true' and details ->> 'sessions' = '2'`, 1},
	} {
		if got := count(t, url, c.sql); got != c.want {
			t.Errorf("%s: got %d, want %d", c.sql, got, c.want)
		}
	}
	if u, err := db.User(ctx, "alice"); err != nil || u.MFA {
		t.Errorf("alice after mfa-reset: MFA %v (%v), want false", u.MFA, err)
	}

	r = mustRun(t, env, "", "user", "mfa-reset", "alice")
	if want := `user "alice": had no second factor; 0 session(s) ended`; !strings.Contains(r.stdout, want) {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	r = runCLI(t, env, "", "user", "mfa-reset", "nobody")
	if r.err == nil || !strings.Contains(r.err.Error(), `user "nobody" does not exist`) {
		t.Errorf("mfa-reset of an unknown user: got %v, want an error saying it does not exist", r.err)
	}
}

// TestNATSRequireMFACLI: `authd nats require-mfa ROLE on|off` sets the
// role's require_mfa, listed by nats list, without touching its response
// settings; a bad mode or a missing role is an error.
func TestNATSRequireMFACLI(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	db := storetest.Open(t, url)

	mustRun(t, env, "", "nats", "grant", role, "--sub", "ops.>", "--allow-responses")
	r := mustRun(t, env, "", "nats", "require-mfa", role, "on")
	if !strings.Contains(r.stdout, "admitted only with an aal2 access token") {
		t.Errorf("stdout %q", r.stdout)
	}
	p := natsPermissions(t, db, role)
	if !p.RequireMFA || !p.AllowResponses {
		t.Errorf("after require-mfa on: %+v, want RequireMFA and AllowResponses", p)
	}
	out := mustRun(t, env, "", "nats", "list", role).stdout
	if !strings.Contains(out, "ROLE") || !strings.Contains(strings.Join(strings.Fields(out), " "), role+" required (aal2)") {
		t.Errorf("nats list:\n%s\nwant %s listed as requiring MFA", out, role)
	}
	// Revoking responses keeps the row, with require_mfa.
	mustRun(t, env, "", "nats", "revoke", role, "--responses")
	if p := natsPermissions(t, db, role); !p.RequireMFA || p.AllowResponses {
		t.Errorf("after revoke --responses: %+v, want RequireMFA without responses", p)
	}
	mustRun(t, env, "", "nats", "require-mfa", role, "off")
	if p := natsPermissions(t, db, role); p.RequireMFA {
		t.Errorf("after require-mfa off: %+v, want no RequireMFA", p)
	}
	if n := count(t, url, `select count(*) from auth.audit_log where event = 'nats_require_mfa'`); n != 2 {
		t.Errorf("got %d nats_require_mfa audit rows, want 2", n)
	}

	if r := runCLI(t, env, "", "nats", "require-mfa", role, "yes"); r.err == nil || !strings.Contains(r.err.Error(), "MODE is on or off") {
		t.Errorf("bad mode: got %v", r.err)
	}
	missing := "no_such_role_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if r := runCLI(t, env, "", "nats", "require-mfa", missing, "on"); r.err == nil || !strings.Contains(r.err.Error(), "does not exist") {
		t.Errorf("missing role: got %v", r.err)
	}
}
