package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/store/storetest"
)

// TestOwnAuditLog: auth.own_audit_log shows a role granted SELECT on it
// exactly the rows of the user named by the request's JWT claims (as
// PostgREST sets them), nothing without claims, and the role cannot read
// auth.audit_log itself.
func TestOwnAuditLog(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	db := storetest.Open(t, url)
	ctx := context.Background()
	if err := db.WriteAudit(ctx, []store.AuditEvent{
		{Event: "login", Outcome: "ok", Username: "alice", Client: "203.0.113.1"},
		{Event: "login", Outcome: "failed", Username: "alice", Details: map[string]string{"reason": "wrong_password"}},
		{Event: "login", Outcome: "ok", Username: "bob"},
		{Event: "login", Outcome: "failed", Details: map[string]string{"reason": "unknown_user"}},
	}); err != nil {
		t.Fatal(err)
	}
	role := storetest.NewRole(t)
	r := pgx.Identifier{role}.Sanitize()
	storetest.Exec(t, url, "grant usage on schema auth to "+r)
	storetest.Exec(t, url, "grant select on auth.own_audit_log to "+r)

	conn := storetest.Connect(t, url)
	count := func(claims, from string) (int, error) {
		t.Helper()
		var n int
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "select set_config('request.jwt.claims', $1, true), set_config('role', $2, true)", claims, role); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "select count(*) from "+from).Scan(&n)
		})
		return n, err
	}
	for _, tt := range []struct {
		claims string
		want   int
	}{
		{`{"role":"x","username":"alice"}`, 2},
		{`{"role":"x","username":"bob"}`, 1},
		{`{"role":"x","username":"carol"}`, 0},
		{`{"role":"x"}`, 0},
		{``, 0},
	} {
		n, err := count(tt.claims, "auth.own_audit_log")
		if err != nil {
			t.Fatalf("claims %q: %v", tt.claims, err)
		}
		if n != tt.want {
			t.Errorf("claims %q: got %d rows, want %d", tt.claims, n, tt.want)
		}
	}
	if _, err := count(`{"username":"alice"}`, "auth.audit_log"); err == nil {
		t.Errorf("the role reads auth.audit_log itself, want permission denied")
	}
}
