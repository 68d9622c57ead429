package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Grant is what a successful login or refresh hands out: who the tokens
// are for and until when the new refresh token is valid.
type Grant struct {
	Username         string
	Role             string
	SessionID        uuid.UUID
	RefreshExpiresAt time.Time
}

// ErrInvalidRefresh covers every refresh token that earns no new tokens:
// unknown, expired, revoked, of a revoked session or deleted user.
var ErrInvalidRefresh = errors.New("invalid or expired refresh token")

// ErrRefreshReused is returned when a spent refresh token is presented
// after the grace window; its whole session has just been revoked.
var ErrRefreshReused = errors.New("refresh token reused: session revoked")

// StartSession opens a session for username with its first refresh token.
func (db *DB) StartSession(ctx context.Context, username string, tokenHash []byte, ttl time.Duration) (Grant, error) {
	g := Grant{Username: username, SessionID: uuid.New()}
	err := db.p().QueryRow(ctx, `
		with s as (
		    insert into auth.session (id, username) values ($1, $2)
		    returning id
		)
		insert into auth.refresh_token (token_hash, session_id, expires_at)
		select $3, s.id, now() + make_interval(secs => $4) from s
		returning expires_at`,
		g.SessionID, username, tokenHash, ttl.Seconds()).Scan(&g.RefreshExpiresAt)
	if err != nil {
		return Grant{}, wrapf(err, "start session for %q", username)
	}
	return g, nil
}

// Refresh spends the refresh token whose hash is oldHash and stores its
// successor newHash, valid for ttl. The happy path is one statement; a
// token that fails it costs one more, which tells why and acts on it:
//
//   - spent less than grace ago (two tabs, or SSR, refreshing at once): a
//     sibling token is issued and nothing is revoked;
//   - spent longer ago: a replay (RFC 9700 §4.14.2). The session is revoked,
//     the newest token with it, and ErrRefreshReused is returned;
//   - the user's role was dropped: *RoleMissingError, nothing spent;
//   - the user's role may not be in a token (a superuser, say, given to
//     the user before the database refused such roles):
//     *RolePrivilegedError, nothing spent;
//   - anything else, a disabled user's token included: ErrInvalidRefresh.
//
// The role check costs the happy path no round trip: it is a condition of
// the same statement (auth.role_refusal).
func (db *DB) Refresh(ctx context.Context, oldHash, newHash []byte, ttl, grace time.Duration) (Grant, error) {
	g, err := db.rotate(ctx, oldHash, newHash, ttl)
	if !errors.Is(err, pgx.ErrNoRows) {
		return g, err
	}
	return db.refreshSlowPath(ctx, oldHash, newHash, ttl, grace)
}

// rotateSQL is the refresh happy path's one statement: spend the token
// with hash $1 if it is live, insert its child with hash $2 valid for $3
// seconds, return the grant.
const rotateSQL = `
		with spent as (
		    update auth.refresh_token t
		       set revoked_at = now(), revoked_reason = 'rotated'
		      from auth.session s
		      join auth.user u on u.username = s.username
		      join pg_roles r on r.rolname = u.role
		     where t.token_hash = $1
		       and t.revoked_at is null
		       and t.expires_at > now()
		       and s.id = t.session_id
		       and s.revoked_at is null
		       and u.disabled_at is null
		       and auth.role_refusal(u.role) is null
		    returning t.id, t.session_id, u.username, u.role
		), child as (
		    insert into auth.refresh_token (token_hash, session_id, parent_id, expires_at)
		    select $2, spent.session_id, spent.id, now() + make_interval(secs => $3) from spent
		    returning expires_at
		)
		select spent.username, spent.role, spent.session_id, child.expires_at
		  from spent, child`

// rotate is the happy path. Concurrent refreshes of one token all try to
// update the same row; the row lock makes them queue, and each waiter
// re-checks "revoked_at is null" after the winner commits, so exactly one
// of them gets a row back — on one authd or many.
func (db *DB) rotate(ctx context.Context, oldHash, newHash []byte, ttl time.Duration) (Grant, error) {
	var g Grant
	err := db.p().QueryRow(ctx, rotateSQL,
		oldHash, newHash, ttl.Seconds()).Scan(&g.Username, &g.Role, &g.SessionID, &g.RefreshExpiresAt)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return Grant{}, err
		}
		return Grant{}, wrapf(err, "rotate refresh token")
	}
	return g, nil
}

// refreshCheckSQL is the refresh slow path's one statement: find the
// token with hash $1 whatever its state; if it was spent by rotation less
// than $4 seconds ago, insert a sibling with hash $2 valid for $3 seconds;
// if longer ago, revoke its session.
const refreshCheckSQL = `
		with found as (
		    select t.id, t.session_id, t.revoked_at, t.revoked_reason, t.expires_at,
		           s.revoked_at as session_revoked_at, u.username, u.role,
		           u.disabled_at is null as enabled,
		           exists (select 1 from pg_roles r where r.rolname = u.role) as role_exists,
		           auth.role_refusal(u.role) as role_refusal
		      from auth.refresh_token t
		      join auth.session s on s.id = t.session_id
		      join auth.user u on u.username = s.username
		     where t.token_hash = $1
		), sibling as (
		    insert into auth.refresh_token (token_hash, session_id, parent_id, expires_at)
		    select $2, f.session_id, f.id, now() + make_interval(secs => $3)
		      from found f
		     where f.revoked_reason = 'rotated'
		       and f.revoked_at >= now() - make_interval(secs => $4)
		       and f.session_revoked_at is null
		       and f.expires_at > now()
		       and f.enabled
		       and f.role_exists
		       and f.role_refusal is null
		    returning expires_at
		), replay as (
		    update auth.session s
		       set revoked_at = now()
		      from found f
		     where s.id = f.session_id
		       and f.revoked_reason = 'rotated'
		       and f.revoked_at < now() - make_interval(secs => $4)
		       and s.revoked_at is null
		    returning s.id
		)
		select f.username, f.role, f.session_id, f.role_exists, coalesce(f.role_refusal, ''),
		       f.revoked_at is null and f.expires_at > now() and f.session_revoked_at is null and f.enabled,
		       (select expires_at from sibling),
		       exists (select 1 from replay)
		  from found f`

// refreshSlowPath classifies a token that rotate did not accept, and in
// the same statement either issues a sibling (grace) or revokes the
// session (replay).
func (db *DB) refreshSlowPath(ctx context.Context, oldHash, newHash []byte, ttl, grace time.Duration) (Grant, error) {
	var (
		g          Grant
		active     bool // unspent, unexpired, session live, user enabled
		roleExists bool
		refusal    string
		sibling    *time.Time
		revoked    bool
		foundRows  = true
	)
	err := db.p().QueryRow(ctx, refreshCheckSQL,
		oldHash, newHash, ttl.Seconds(), grace.Seconds()).Scan(
		&g.Username, &g.Role, &g.SessionID, &roleExists, &refusal, &active, &sibling, &revoked)
	if errors.Is(err, pgx.ErrNoRows) {
		foundRows = false
	} else if err != nil {
		return Grant{}, wrapf(err, "check refresh token")
	}
	switch {
	case !foundRows:
		return Grant{}, ErrInvalidRefresh
	case revoked:
		return Grant{}, ErrRefreshReused
	case sibling != nil:
		g.RefreshExpiresAt = *sibling
		return g, nil
	case !roleExists && active:
		return Grant{}, &RoleMissingError{Role: g.Role}
	case refusal != "" && active:
		return Grant{}, &RolePrivilegedError{Role: g.Role, Reason: refusal}
	}
	return Grant{}, ErrInvalidRefresh
}

// RevokeSessions ends the session named by sessionID (a zero UUID names
// none) and the one the refresh token with hash refreshHash belongs to
// (nil names none), whether or not that token is still usable: one
// statement for a browser's logout, which carries both. Revoking a revoked
// or unknown session is not an error.
//
// The revoked session alone stops its tokens. Its live tokens (unspent,
// unexpired) are marked revoked too, with reason 'logout', so that the row
// says why it stopped working; a child that a refresh running at the same
// moment inserts may stay unmarked, stopped by its session all the same.
// Refresh treats a 'logout' token as any token of a revoked session: only
// a 'rotated' one can be a replay or earn a grace sibling.
func (db *DB) RevokeSessions(ctx context.Context, sessionID uuid.UUID, refreshHash []byte) error {
	_, err := db.p().Exec(ctx, `
		with ended as (
		    update auth.session s set revoked_at = now()
		     where s.revoked_at is null
		       and (s.id = $1
		            or s.id = (select t.session_id from auth.refresh_token t where t.token_hash = $2))
		    returning s.id
		)
		update auth.refresh_token t set revoked_at = now(), revoked_reason = 'logout'
		  from ended
		 where t.session_id = ended.id
		   and t.revoked_at is null
		   and t.expires_at > now()`,
		sessionID, refreshHash)
	if err != nil {
		return wrapf(err, "revoke session")
	}
	return nil
}
