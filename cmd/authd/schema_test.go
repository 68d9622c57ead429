package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/crypto/bcrypt"

	"authd/store/storetest"
)

// TestSchemaRefusesBadUsers writes auth.user with plain SQL, as an
// operator with psql or a SuperStack-era script would: the database itself
// refuses what authd's CLI refuses.
func TestSchemaRefusesBadUsers(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	hash := string(h)
	storetest.Exec(t, url, `insert into auth.user (username, password_hash, role) values ('alice', $1, $2)`, hash, role)

	tests := []struct {
		name, sql      string
		args           []any
		code           string
		constraintName string
	}{
		{"insert with a missing role",
			`insert into auth.user (username, password_hash, role) values ('abc', $1, 'no_such_role_xyz')`,
			[]any{hash}, "23503", ""},
		{"update to a missing role",
			`update auth.user set role = 'no_such_role_xyz' where username = 'alice'`,
			nil, "23503", ""},
		{"insert with a superuser role",
			`insert into auth.user (username, password_hash, role) values ('abc', $1, 'postgres')`,
			[]any{hash}, "23514", "role_not_privileged"},
		{"update to a predefined role",
			`update auth.user set role = 'pg_read_server_files' where username = 'alice'`,
			nil, "23514", "role_not_privileged"},
		{"plaintext password",
			`insert into auth.user (username, password_hash, role) values ('bob', 'wonderland', $1)`,
			[]any{role}, "23514", "user_password_hash_is_bcrypt"},
		{"plaintext password by update",
			`update auth.user set password_hash = 'wonderland' where username = 'alice'`,
			nil, "23514", "user_password_hash_is_bcrypt"},
		{"truncated bcrypt hash",
			`insert into auth.user (username, password_hash, role) values ('bob', $1, $2)`,
			[]any{hash[:len(hash)-1], role}, "23514", "user_password_hash_is_bcrypt"},
		{"two-character username",
			`insert into auth.user (username, password_hash, role) values ('ab', $1, $2)`,
			[]any{hash, role}, "23514", "user_username_check"},
		{"duplicate username",
			`insert into auth.user (username, password_hash, role) values ('alice', $1, $2)`,
			[]any{hash, role}, "23505", "user_pkey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn := connect(t, url)
			_, err := conn.Exec(ctx, tt.sql, tt.args...)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%s: got %v, want SQLSTATE %s", tt.sql, err, tt.code)
			}
			if pgErr.Code != tt.code {
				t.Errorf("SQLSTATE: got %q, want %q (%s)", pgErr.Code, tt.code, pgErr.Message)
			}
			if pgErr.ConstraintName != tt.constraintName {
				t.Errorf("constraint: got %q, want %q", pgErr.ConstraintName, tt.constraintName)
			}
		})
	}
	if n := count(t, url, `select count(*) from auth.user`); n != 1 {
		t.Errorf("users: got %d, want 1", n)
	}
	var gotRole, gotHash string
	queryRow(t, url, `select role, password_hash from auth.user where username = 'alice'`, nil, &gotRole, &gotHash)
	if gotRole != role || gotHash != hash {
		t.Errorf("alice after refused updates: got (%q, %q), want (%q, %q)", gotRole, gotHash, role, hash)
	}

	t.Run("valid writes pass", func(t *testing.T) {
		other := storetest.NewRole(t)
		for _, sql := range []string{
			`update auth.user set role = '` + other + `' where username = 'alice'`,
			`insert into auth.user (username, password_hash, role) values ('abc', '` + hash + `', '` + role + `')`,
			// $2b$ and $2y$ hashes (other bcrypt libraries) are bcrypt too.
			`insert into auth.user (username, password_hash, role) values ('b2b', '$2b` + hash[3:] + `', '` + role + `')`,
			`insert into auth.user (username, password_hash, role) values ('b2y', '$2y` + hash[3:] + `', '` + role + `')`,
			// A role created in the same transaction counts: the
			// constraint trigger runs at the end of the statement.
			`begin; create role ` + other + `_tx; insert into auth.user (username, password_hash, role) values ('txuser', '` + hash + `', '` + other + `_tx'); rollback`,
		} {
			storetest.Exec(t, url, sql)
		}
	})

	t.Run("deferred role check", func(t *testing.T) {
		// A role dropped after the fact is not the trigger's business
		// (user list shows it as missing), but re-setting a user's role
		// to a dropped one is refused.
		gone := storetest.NewRole(t)
		storetest.Exec(t, url, `insert into auth.user (username, password_hash, role) values ('ghost', $1, $2)`, hash, gone)
		storetest.Exec(t, storetest.AdminURL(), `drop role `+gone)
		storetest.Exec(t, url, `update auth.user set password_hash = $1 where username = 'ghost'`, hash)
		ctx := context.Background()
		_, err := connect(t, url).Exec(ctx, `update auth.user set role = role where username = 'ghost'`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23503" {
			t.Errorf("update of role to a dropped role: got %v, want SQLSTATE 23503", err)
		}
	})
}
