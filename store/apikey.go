package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// APIKey is a row of auth.api_key with what a gateway check needs from
// elsewhere: its plan's rate and whether its role exists.
type APIKey struct {
	ID, Role, Plan string
	// RoleExists reports whether Role is in pg_roles right now: a key
	// whose role was dropped after the fact must get no token.
	RoleExists bool
	// RoleRefusal says why Role may not be the role of a token (such as
	// "it is a superuser"); "" when it may. See auth.role_refusal.
	RoleRefusal       string
	RequestsPerMinute int
	Enabled           bool
	ExpiresAt         *time.Time // nil: never
	CreatedAt         time.Time
	LastUsedAt        *time.Time // nil: never used
	SecretHash        []byte     // SHA-256 of the whole key
}

// ErrPlanNotFound is returned when creating a key for a plan that does not
// exist.
var ErrPlanNotFound = errors.New("plan not found")

// apiKeyColumns selects an APIKey, in field order, from auth.api_key k
// joined to auth.plan p.
const apiKeyColumns = `
	k.id, k.role, k.plan,
	exists (select 1 from pg_roles r where r.rolname = k.role) as role_exists,
	coalesce((select reason from auth.role_refusals(k.role)), '') as role_refusal,
	p.requests_per_minute, k.enabled, k.expires_at, k.created_at, k.last_used_at,
	k.secret_hash`

// CreateAPIKey stores a key for plan and returns it as APIKey would load
// it. An empty role means the plan's role; a nil expiresAt means the
// plan's key_lifetime after creation (no expiry if the plan has none). An
// unknown plan is ErrPlanNotFound, a role missing from pg_roles
// *RoleMissingError, one too privileged for tokens *RolePrivilegedError.
//
// One statement takes the plan's defaults, inserts, and reads the new row
// back with its plan's rate (a returning clause cannot join, so the insert
// is a CTE): a plan changed meanwhile cannot mix old and new, and what the
// caller prints is what was written.
func (db *DB) CreateAPIKey(ctx context.Context, id string, hash []byte, role, plan string, expiresAt *time.Time) (APIKey, error) {
	rows, _ := db.p().Query(ctx, `
		with k as (
		    insert into auth.api_key (id, secret_hash, role, plan, expires_at)
		    select $1, $2, coalesce(nullif($3::text, ''), p.role), p.name,
		           coalesce($5::timestamptz, now() + p.key_lifetime)
		      from auth.plan p
		     where p.name = $4
		    returning *
		)
		select `+apiKeyColumns+`
		  from k
		  join auth.plan p on p.name = k.plan`,
		id, hash, role, plan, expiresAt)
	k, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[APIKey])
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrPlanNotFound
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("create api key %s: %w", id, db.apiKeyError(ctx, err, role, plan))
	}
	return k, nil
}

// apiKeyError turns the constraint errors of auth.api_key into typed
// errors. The role trigger does not say which role it refused when the
// key took its plan's, so that one is looked up.
func (db *DB) apiKeyError(ctx context.Context, err error, role, plan string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if pgErr.Code == "23503" && pgErr.ConstraintName == "api_key_plan_fkey" { // the plan was deleted under the insert
		return ErrPlanNotFound
	}
	if role == "" && roleError(pgErr, role) != nil {
		_ = db.p().QueryRow(ctx, `select role from auth.plan where name = $1`, plan).Scan(&role)
	}
	if refused := roleError(pgErr, role); refused != nil {
		return refused
	}
	return err
}

// APIKey loads one key with its plan's rate. An unknown id is ErrNotFound.
func (db *DB) APIKey(ctx context.Context, id string) (APIKey, error) {
	rows, _ := db.p().Query(ctx, `
		select `+apiKeyColumns+`
		  from auth.api_key k
		  join auth.plan p on p.name = k.plan
		 where k.id = $1`, id)
	k, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[APIKey])
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, ErrNotFound
	}
	if err != nil {
		return APIKey{}, wrapf(err, "load api key %s", id)
	}
	return k, nil
}

// APIKeys lists every key, oldest first.
func (db *DB) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, _ := db.p().Query(ctx, `
		select `+apiKeyColumns+`
		  from auth.api_key k
		  join auth.plan p on p.name = k.plan
		 order by k.created_at, k.id`)
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByPos[APIKey])
	if err != nil {
		return nil, wrapf(err, "list api keys")
	}
	return keys, nil
}

// DisableAPIKey disables a key for good (disabling twice is not an error).
// The update notifies authd_api_key, so caches may drop the key at once.
func (db *DB) DisableAPIKey(ctx context.Context, id string) error {
	tag, err := db.p().Exec(ctx, `update auth.api_key set enabled = false where id = $1`, id)
	if err != nil {
		return wrapf(err, "disable api key %s", id)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("disable api key %s: %w", id, ErrNotFound)
	}
	return nil
}

// RotateAPIKey replaces a key's secret: same id, role, plan, expiry and
// enabled flag; the old secret stops matching when this commits.
func (db *DB) RotateAPIKey(ctx context.Context, id string, newHash []byte) error {
	tag, err := db.p().Exec(ctx, `update auth.api_key set secret_hash = $2 where id = $1`, id, newHash)
	if err != nil {
		return wrapf(err, "rotate api key %s", id)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rotate api key %s: %w", id, ErrNotFound)
	}
	return nil
}

// TouchAPIKeys sets last_used_at to now for every key in ids, in one
// statement. Unknown ids are ignored. It sends no notification (see the
// migration).
//
// Rows another transaction holds are skipped rather than waited for: two
// callers touching overlapping sets of keys in different orders would
// otherwise deadlock, and a last-used time a few seconds stale is harmless.
func (db *DB) TouchAPIKeys(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.p().Exec(ctx, `
		update auth.api_key k set last_used_at = now()
		  from (select id from auth.api_key where id = any($1) for update skip locked) l
		 where k.id = l.id`, ids)
	if err != nil {
		return wrapf(err, "touch %d api keys", len(ids))
	}
	return nil
}
