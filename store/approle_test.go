package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/store/storetest"
)

// TestAppRoleIsNoTokenRole: authd_app, which may read every password hash,
// and any role that is a member of it, cannot be given to a user (the
// database's role trigger refuses it), and a user who had such a role
// before is refused a token (User reports the refusal).
func TestAppRoleIsNoTokenRole(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	role := storetest.NewRole(t)
	storetest.AddUser(t, db, "mallory", "pw-of-mallory") // a plain role: accepted
	if _, err := db.Pool().Exec(ctx, `update auth.user set role = $1 where username = 'mallory'`, role); err != nil {
		t.Fatal(err)
	}
	storetest.Exec(t, storetest.AdminURL(), "grant authd_app to "+pgx.Identifier{role}.Sanitize())

	u, err := db.User(ctx, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	if want := `it is a member of "authd_app", which is authd's own database role (authd_app)`; u.RoleRefusal != want {
		t.Errorf("refusal of a member of authd_app: %q, want %q", u.RoleRefusal, want)
	}
	h, _ := store.HashPassword("pw-of-eve-00", 4)
	for _, r := range []string{role, "authd_app"} {
		var pe *store.RolePrivilegedError
		if err := db.AddUser(ctx, "eve", h, r); !errors.As(err, &pe) {
			t.Errorf("add a user with role %s: %v, want it refused as privileged", r, err)
		}
	}
}
