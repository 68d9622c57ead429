package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
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
	// RoleRefusal says why Role may not be the role of a token (such as
	// "it is a superuser"), as the database's auth.role_refusal decides
	// right now; "" when it may.
	RoleRefusal string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// DisabledAt is when the user was disabled; nil when they are not.
	DisabledAt *time.Time
	// MFA reports whether the user has a verified second factor: a login
	// then opens a session that waits for it.
	MFA bool
}

// userColumns selects a User, in field order, from auth.user u.
const userColumns = `
	u.username, u.password_hash, u.role,
	exists (select 1 from pg_roles r where r.rolname = u.role) as role_exists,
	coalesce((select reason from auth.role_refusals(u.role)), '') as role_refusal,
	u.created_at, u.updated_at, u.disabled_at,
	exists (select 1 from auth.mfa_factor f where f.username = u.username and f.verified_at is not null) as mfa`

// ErrUserExists is returned when adding a username that is taken.
var ErrUserExists = errors.New("user already exists")

// RoleMissingError reports a role that is not in pg_roles.
type RoleMissingError struct{ Role string }

func (e *RoleMissingError) Error() string { return fmt.Sprintf("role %q does not exist", e.Role) }

// RolePrivilegedError reports a role that no token may carry: a superuser,
// a role that can log in, a predefined pg_* role, a member of one of
// those... Reason is the database's (auth.role_refusal), such as "it is a
// superuser".
type RolePrivilegedError struct{ Role, Reason string }

func (e *RolePrivilegedError) Error() string {
	return fmt.Sprintf("role %q may not be the role of a token: %s", e.Role, e.Reason)
}

// ErrUsernameTooShort is returned for usernames under three characters,
// which the auth.user check constraint refuses.
var ErrUsernameTooShort = errors.New("username must be at least 3 characters")

// User loads one user with its password hash and whether its role exists
// and may be in a token.
func (db *DB) User(ctx context.Context, username string) (User, error) {
	rows, _ := db.p().Query(ctx, `
		select `+userColumns+`
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
		select `+userColumns+`
		  from auth.user u
		 order by u.username`)
	users, err := pgx.CollectRows(rows, pgx.RowToStructByPos[User])
	if err != nil {
		return nil, wrapf(err, "list users")
	}
	return users, nil
}

// AddUser inserts a user. The database refuses a role missing from
// pg_roles or too privileged for tokens (constraint trigger) and a short
// username (check constraint); they come back as typed errors.
func (db *DB) AddUser(ctx context.Context, username, passwordHash, role string) error {
	_, err := db.p().Exec(ctx, `
		insert into auth.user (username, password_hash, role)
		values ($1, $2, $3)`, username, passwordHash, role)
	if err != nil {
		return fmt.Errorf("add user %q: %w", username, userError(err, role))
	}
	return nil
}

// SetPassword replaces a user's password hash. The database revokes the
// user's sessions in the same statement (trigger user_changed, reason
// password_change).
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
// has oldHash: a password changed meanwhile by an operator wins. The
// password is the same, so the update is marked (authd.rehash, local to
// its transaction) for the trigger that revokes sessions on a password
// change to leave them alone. upgraded is false when the user no longer
// had oldHash.
func (db *DB) UpgradePasswordHash(ctx context.Context, username, oldHash, newHash string) (upgraded bool, err error) {
	err = pgx.BeginFunc(ctx, db.p(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `select set_config('authd.rehash', 'on', true)`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			update auth.user set password_hash = $3
			 where username = $1 and password_hash = $2`, username, oldHash, newHash)
		upgraded = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, wrapf(err, "upgrade password hash of %q", username)
	}
	return upgraded, nil
}

// SetRole gives a user another role. The database refuses a role missing
// from pg_roles or too privileged for tokens, as for AddUser, and revokes
// the user's sessions when the role changes (reason role_change).
func (db *DB) SetRole(ctx context.Context, username, role string) error {
	tag, err := db.p().Exec(ctx, `
		update auth.user set role = $2, updated_at = now()
		 where username = $1`, username, role)
	if err != nil {
		return fmt.Errorf("set role of %q: %w", username, userError(err, role))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set role of %q: %w", username, ErrNotFound)
	}
	return nil
}

// SetDisabled disables a user (their login is refused, their sessions are
// revoked by the database, reason user_disabled) or enables them again.
// Disabling a disabled user keeps the time they were first disabled.
func (db *DB) SetDisabled(ctx context.Context, username string, disabled bool) error {
	tag, err := db.p().Exec(ctx, `
		update auth.user
		   set disabled_at = case when $2 then coalesce(disabled_at, now()) end,
		       updated_at = now()
		 where username = $1`, username, disabled)
	if err != nil {
		return wrapf(err, "set disabled of %q", username)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set disabled of %q: %w", username, ErrNotFound)
	}
	return nil
}

// Session is one login of a user, as an administrator sees it: no token
// material.
type Session struct {
	ID        uuid.UUID
	CreatedAt time.Time
	// LastRefreshedAt is when its newest refresh token was issued by a
	// refresh; nil if it was never refreshed.
	LastRefreshedAt *time.Time
	// ExpiresAt is when its newest refresh token expires; nil if its
	// tokens were purged.
	ExpiresAt *time.Time
	RevokedAt *time.Time
	// RevokedReason is why its live tokens were revoked (logout,
	// password_change, ...); "" when unknown, as for a replayed token.
	RevokedReason string
	// ClientAddr and UserAgent are the login's; "" when unknown (a
	// session from before they were stored).
	ClientAddr, UserAgent string
}

// Sessions lists the sessions of username, oldest first. An unknown user
// is ErrNotFound; a user without sessions has none.
func (db *DB) Sessions(ctx context.Context, username string) ([]Session, error) {
	// One row per session, or one row of nulls for a user without any
	// (left join), so that an unknown user is told from an idle one.
	rows, _ := db.p().Query(ctx, `
		select s.id, s.created_at, t.last_refreshed, t.expires_at, s.revoked_at,
		       coalesce(t.revoked_reason, ''), coalesce(s.client_addr, ''), coalesce(s.user_agent, '')
		  from auth.user u
		  left join auth.session s on s.username = u.username
		  left join lateral (
		      select max(rt.issued_at) filter (where rt.issued_at > s.created_at) as last_refreshed,
		             max(rt.expires_at) as expires_at,
		             (array_agg(rt.revoked_reason order by rt.revoked_at desc)
		                 filter (where rt.revoked_reason <> 'rotated'))[1] as revoked_reason
		        from auth.refresh_token rt
		       where rt.session_id = s.id
		  ) t on true
		 where u.username = $1
		 order by s.created_at, s.id`, username)
	type row struct {
		ID              *uuid.UUID
		CreatedAt       *time.Time
		LastRefreshedAt *time.Time
		ExpiresAt       *time.Time
		RevokedAt       *time.Time
		RevokedReason   string
		ClientAddr      string
		UserAgent       string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return nil, wrapf(err, "list sessions of %q", username)
	}
	if len(got) == 0 {
		return nil, fmt.Errorf("list sessions of %q: %w", username, ErrNotFound)
	}
	var out []Session
	for _, r := range got {
		if r.ID == nil {
			continue
		}
		out = append(out, Session{ID: *r.ID, CreatedAt: *r.CreatedAt, LastRefreshedAt: r.LastRefreshedAt,
			ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt, RevokedReason: r.RevokedReason,
			ClientAddr: r.ClientAddr, UserAgent: r.UserAgent})
	}
	return out, nil
}

// ErrSessionNotFound is returned by LogoutUser for a session id that is not
// one of the user's.
var ErrSessionNotFound = errors.New("no such session of this user")

// LogoutUser ends every live session of username, or only the session
// sessionID (uuid.Nil: all), in one statement: their refresh tokens stop
// working (reason admin_logout). It returns how many sessions it ended;
// ending ended sessions is not an error.
func (db *DB) LogoutUser(ctx context.Context, username string, sessionID uuid.UUID) (int, error) {
	var (
		n     int
		found bool
	)
	err := db.p().QueryRow(ctx, `
		select auth.revoke_user_sessions(u.username, 'admin_logout', nullif($2, '00000000-0000-0000-0000-000000000000'::uuid)),
		       $2 = '00000000-0000-0000-0000-000000000000'::uuid
		       or exists (select 1 from auth.session s where s.id = $2 and s.username = u.username)
		  from auth.user u
		 where u.username = $1`, username, sessionID).Scan(&n, &found)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, fmt.Errorf("log out %q: %w", username, ErrNotFound)
	case err != nil:
		return 0, wrapf(err, "log out %q", username)
	case !found:
		return 0, fmt.Errorf("log out %q: session %s: %w", username, sessionID, ErrSessionNotFound)
	}
	return n, nil
}

// RevokeSession ends session id, whoever's it is, with its live refresh
// tokens (reason admin_logout), and returns its user; ErrSessionNotFound
// for an unknown id. Ending an ended session is not an error.
func (db *DB) RevokeSession(ctx context.Context, id uuid.UUID) (username string, err error) {
	err = db.p().QueryRow(ctx, `
		select s.username from auth.session s,
		       lateral auth.revoke_user_sessions(s.username, 'admin_logout', s.id) n
		 where s.id = $1`, id).Scan(&username)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("revoke session %s: %w", id, ErrSessionNotFound)
	}
	if err != nil {
		return "", wrapf(err, "revoke session %s", id)
	}
	return username, nil
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

// CheckTokenRole returns nil if role may be the role of a token — it
// exists, and auth.role_refusal does not refuse it, as the role trigger
// of auth.user decides — and otherwise *RoleMissingError or
// *RolePrivilegedError.
func (db *DB) CheckTokenRole(ctx context.Context, role string) error {
	var (
		exists  bool
		refusal string
	)
	err := db.p().QueryRow(ctx, `
		select exists (select 1 from pg_roles where rolname = $1),
		       coalesce((select reason from auth.role_refusals($1)), '')`, role).Scan(&exists, &refusal)
	switch {
	case err != nil:
		return wrapf(err, "check role %q", role)
	case !exists:
		return &RoleMissingError{Role: role}
	case refusal != "":
		return &RolePrivilegedError{Role: role, Reason: refusal}
	}
	return nil
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

// roleNotPrivileged is the constraint name the role trigger
// (auth.check_role_exists) gives its refusal of a privileged role.
const roleNotPrivileged = "role_not_privileged"

// roleError turns a refusal of the role trigger (auth.check_role_exists)
// into *RoleMissingError or *RolePrivilegedError, or returns nil for
// another error.
func roleError(pgErr *pgconn.PgError, role string) error {
	switch {
	case pgErr.Code == "23503" && pgErr.ConstraintName == "":
		return &RoleMissingError{Role: role}
	case pgErr.Code == "23514" && pgErr.ConstraintName == roleNotPrivileged:
		return &RolePrivilegedError{Role: role, Reason: pgErr.Detail}
	}
	return nil
}

// userError turns the constraint errors of auth.user into typed errors.
func userError(err error, role string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if refused := roleError(pgErr, role); refused != nil {
		return refused
	}
	switch {
	case pgErr.Code == "23505":
		return ErrUserExists
	case pgErr.Code == "23514" && pgErr.ConstraintName == "user_username_check":
		return ErrUsernameTooShort
	}
	return err
}
