package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// User is a row of auth.user.
type User struct {
	Username     string
	PasswordHash string
	Role         string
	// RoleExists reports whether Role is in pg_roles right now: a role
	// dropped after the user was written means no token for that user.
	RoleExists bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// ErrUserExists is returned when adding a username that is taken.
var ErrUserExists = errors.New("user already exists")

// RoleMissingError reports a role that is not in pg_roles.
type RoleMissingError struct{ Role string }

func (e *RoleMissingError) Error() string { return fmt.Sprintf("role %q does not exist", e.Role) }

// ErrUsernameTooShort is returned for usernames under three characters,
// which the auth.user check constraint refuses.
var ErrUsernameTooShort = errors.New("username must be at least 3 characters")

// User loads one user with its password hash and whether its role exists.
func (db *DB) User(ctx context.Context, username string) (User, error) {
	rows, _ := db.p().Query(ctx, `
		select u.username, u.password_hash, u.role,
		       exists (select 1 from pg_roles r where r.rolname = u.role) as role_exists,
		       u.created_at, u.updated_at
		  from auth.user u
		 where u.username = $1`, username)
	u, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[User])
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, wrapf(err, "load user %q", username)
	}
	return u, nil
}

// Users lists every user, by name.
func (db *DB) Users(ctx context.Context) ([]User, error) {
	rows, _ := db.p().Query(ctx, `
		select u.username, u.password_hash, u.role,
		       exists (select 1 from pg_roles r where r.rolname = u.role) as role_exists,
		       u.created_at, u.updated_at
		  from auth.user u
		 order by u.username`)
	users, err := pgx.CollectRows(rows, pgx.RowToStructByPos[User])
	if err != nil {
		return nil, wrapf(err, "list users")
	}
	return users, nil
}

// AddUser inserts a user. The database refuses a role missing from
// pg_roles (constraint trigger) and a short username (check constraint);
// both come back as typed errors.
func (db *DB) AddUser(ctx context.Context, username, passwordHash, role string) error {
	_, err := db.p().Exec(ctx, `
		insert into auth.user (username, password_hash, role)
		values ($1, $2, $3)`, username, passwordHash, role)
	if err != nil {
		return fmt.Errorf("add user %q: %w", username, userError(err, role))
	}
	return nil
}

// SetPassword replaces a user's password hash.
func (db *DB) SetPassword(ctx context.Context, username, passwordHash string) error {
	tag, err := db.p().Exec(ctx, `
		update auth.user set password_hash = $2, updated_at = now()
		 where username = $1`, username, passwordHash)
	if err != nil {
		return wrapf(err, "set password of %q", username)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set password of %q: %w", username, ErrNotFound)
	}
	return nil
}

// UpgradePasswordHash replaces oldHash by newHash, only if the user still
// has oldHash: a password changed meanwhile by an operator wins.
func (db *DB) UpgradePasswordHash(ctx context.Context, username, oldHash, newHash string) error {
	_, err := db.p().Exec(ctx, `
		update auth.user set password_hash = $3
		 where username = $1 and password_hash = $2`, username, oldHash, newHash)
	if err != nil {
		return wrapf(err, "upgrade password hash of %q", username)
	}
	return nil
}

// DeleteUser removes a user; their sessions and refresh tokens go with them.
func (db *DB) DeleteUser(ctx context.Context, username string) error {
	tag, err := db.p().Exec(ctx, `delete from auth.user where username = $1`, username)
	if err != nil {
		return wrapf(err, "delete user %q", username)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete user %q: %w", username, ErrNotFound)
	}
	return nil
}

// RoleExists reports whether role is in pg_roles.
func (db *DB) RoleExists(ctx context.Context, role string) (bool, error) {
	var ok bool
	err := db.p().QueryRow(ctx, `select exists (select 1 from pg_roles where rolname = $1)`, role).Scan(&ok)
	if err != nil {
		return false, wrapf(err, "look up role %q", role)
	}
	return ok, nil
}

// CanSwitchRole reports whether the role authenticator exists and, if so,
// whether it may SET ROLE to role, as PostgREST does for every request.
func (db *DB) CanSwitchRole(ctx context.Context, authenticator, role string) (exists, can bool, err error) {
	err = db.p().QueryRow(ctx, `
		select exists (select 1 from pg_roles where rolname = $1),
		       coalesce((select pg_has_role($1, $2, 'MEMBER')
		                  where exists (select 1 from pg_roles where rolname = $1)
		                    and exists (select 1 from pg_roles where rolname = $2)), false)`,
		authenticator, role).Scan(&exists, &can)
	if err != nil {
		return false, false, wrapf(err, "check %q can switch to %q", authenticator, role)
	}
	return exists, can, nil
}

// userError turns the constraint errors of auth.user into typed errors.
func userError(err error, role string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case pgErr.Code == "23503" && pgErr.ConstraintName == "": // check_role_exists trigger
		return &RoleMissingError{Role: role}
	case pgErr.Code == "23505":
		return ErrUserExists
	case pgErr.Code == "23514" && pgErr.ConstraintName == "user_username_check":
		return ErrUsernameTooShort
	}
	return err
}
