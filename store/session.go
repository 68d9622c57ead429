package store

import (
	"context"
	"errors"
	"fmt"
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
	// RefreshTTL is how long the new refresh token lives, measured on the
	// database's clock: the refresh TTL, or less when the session ends
	// sooner. A cookie's Max-Age is taken from it.
	RefreshTTL time.Duration
	// AAL and AMR are the session's assurance, which its access tokens
	// carry (aal1 and ["pwd"] until a second factor steps it up).
	AAL string
	AMR []string
	// MFAPending: the user has a second factor the session has not yet
	// presented; its access tokens are short (AUTHD_MFA_PENDING_TTL).
	MFAPending bool
}

// ErrInvalidRefresh covers every refresh token that earns no new tokens:
// unknown, expired, revoked, of a revoked or ended session or deleted user.
var ErrInvalidRefresh = errors.New("invalid or expired refresh token")

// ErrRefreshReused is returned when a spent refresh token is presented
// after the grace window, or a token that lost a refresh race is presented
// after the winner was used; its whole session has just been revoked.
var ErrRefreshReused = errors.New("refresh token reused: session revoked")

// ErrUserChanged is returned by StartSession when the user's password,
// role or disabled state changed after the password check it follows: the
// check no longer speaks for the user, and no session is opened.
var ErrUserChanged = errors.New("user changed since the password check")

// StartSession opens a session for u, whose password was just checked,
// that ends lifetime from now however often it is refreshed, with its
// first refresh token, valid for ttl or until the session ends if that is
// sooner. It opens none (ErrUserChanged) unless u's row still has the hash
// and role that were checked and u is not disabled: a password change,
// role change or disable that commits during the compare revokes the
// user's sessions, and must not miss the one this login was about to open.
func (db *DB) StartSession(ctx context.Context, u User, tokenHash []byte, ttl, lifetime time.Duration) (Grant, error) {
	return db.StartSessionFrom(ctx, u, LoginClient{}, tokenHash, ttl, lifetime, false, nil)
}

// LoginClient is where a login came from, as the session remembers it
// for its user (/rpc/sessions): the client's address and User-Agent, the
// latter at most MaxUserAgent bytes. Both are the client's word.
type LoginClient struct {
	Addr      string
	UserAgent string
}

// MaxUserAgent bounds the User-Agent a session keeps, in bytes (the
// check constraint session_user_agent_length).
const MaxUserAgent = 200

// StartSessionFrom is StartSession for a login from client; an empty
// field is stored as null. mfaPending opens a session that waits for the
// user's second factor (Grant.MFAPending); lifetime is then the time it
// has to present it (store.VerifyMFA extends it). release, if not nil, is
// the login's reserved failure, given back by the same statement — also
// when it opens no session because the user changed (ErrUserChanged):
// the password was right — and not if it fails.
func (db *DB) StartSessionFrom(ctx context.Context, u User, client LoginClient, tokenHash []byte, ttl, lifetime time.Duration, mfaPending bool, release *LoginRelease) (Grant, error) {
	g := Grant{Username: u.Username, SessionID: uuid.New(), AAL: "aal1", AMR: []string{"pwd"}, MFAPending: mfaPending}
	var releaseKey, perSecond, releaseAt any // null: nothing to give back
	if release != nil {
		releaseKey, perSecond, releaseAt = usernameKey(release.Username), release.Throttle.PerSecond, release.Now
	}
	var now time.Time
	err := db.p().QueryRow(ctx, `
		with released as (`+releaseFailureSQL("$11", "$12", "$13")+`
		), s as (
		    insert into auth.session (id, username, expires_at, client_addr, user_agent, mfa_pending)
		    select $1, u.username, now() + make_interval(secs => $5), nullif($8, ''), nullif($9, ''), $10
		      from auth.user u
		     where u.username = $2 and u.password_hash = $6 and u.role = $7
		       and u.disabled_at is null
		       for share of u
		    returning id, expires_at
		)
		insert into auth.refresh_token (token_hash, session_id, expires_at)
		select $3, s.id, least(now() + make_interval(secs => $4), s.expires_at) from s
		returning expires_at, now()`,
		g.SessionID, u.Username, tokenHash, ttl.Seconds(), lifetime.Seconds(), u.PasswordHash, u.Role,
		client.Addr, client.UserAgent, mfaPending, releaseKey, perSecond, releaseAt).Scan(&g.RefreshExpiresAt, &now)
	if errors.Is(err, pgx.ErrNoRows) {
		return Grant{}, ErrUserChanged
	}
	if err != nil {
		return Grant{}, wrapf(err, "start session for %q", u.Username)
	}
	g.RefreshTTL = g.RefreshExpiresAt.Sub(now)
	return g, nil
}

// AddUserWithSession inserts a user, as AddUser does (with its typed
// errors), and opens their first session, as StartSession does, in one
// statement: a sign-up leaves both or neither. The foreign keys and the
// role trigger are checked at the end of the statement, when the user's
// row is there.
func (db *DB) AddUserWithSession(ctx context.Context, username, passwordHash, role string, client LoginClient, tokenHash []byte, ttl, lifetime time.Duration) (Grant, error) {
	g := Grant{Username: username, Role: role, SessionID: uuid.New(), AAL: "aal1", AMR: []string{"pwd"}}
	var now time.Time
	err := db.p().QueryRow(ctx, `
		with u as (
		    insert into auth.user (username, password_hash, role)
		    values ($2, $6, $7)
		    returning username
		), s as (
		    insert into auth.session (id, username, expires_at, client_addr, user_agent)
		    select $1, u.username, now() + make_interval(secs => $5), nullif($8, ''), nullif($9, '') from u
		    returning id, expires_at
		)
		insert into auth.refresh_token (token_hash, session_id, expires_at)
		select $3, s.id, least(now() + make_interval(secs => $4), s.expires_at) from s
		returning expires_at, now()`,
		g.SessionID, username, tokenHash, ttl.Seconds(), lifetime.Seconds(), passwordHash, role,
		client.Addr, client.UserAgent).Scan(&g.RefreshExpiresAt, &now)
	if err != nil {
		if typed := userError(err, role); typed != err {
			return Grant{}, fmt.Errorf("add user %q with a session: %w", username, typed)
		}
		return Grant{}, wrapf(err, "add user %q with a session", username)
	}
	g.RefreshTTL = g.RefreshExpiresAt.Sub(now)
	return g, nil
}

// Refresh spends the refresh token whose hash is oldHash and stores its
// successor newHash, valid for ttl or until the session ends if sooner.
// The happy path is one statement; a token that fails it costs one more,
// which tells why and acts on it:
//
//   - spent less than grace ago (two tabs, or SSR, refreshing at once):
//     a sibling of its child is issued, and the family is marked
//     contested (see refreshInGrace): the first member of it to be
//     rotated ends the others, so a race — or a thief replaying within
//     the window — never leaves two live chains in one session;
//   - spent longer ago, or a contested token that lost (its sibling was
//     rotated first): a replay (RFC 9700 §4.14.2). The session is revoked,
//     the newest token with it, and ErrRefreshReused is returned, with a
//     Grant that names only the user and the session (for the log);
//   - a contested token, still live: rotated as on the happy path, its
//     siblings superseded (rotateContested);
//   - the user's role was dropped: *RoleMissingError, nothing spent;
//   - the user's role may not be in a token (a superuser, say, given to
//     the user before the database refused such roles):
//     *RolePrivilegedError, nothing spent;
//   - anything else, a disabled user's token or an ended session's
//     included: ErrInvalidRefresh.
//
// The role check costs the happy path no round trip: it is a condition of
// the same statement (auth.role_refusals, which PostgreSQL inlines into
// the statement's kept plan; see migration 00017).
func (db *DB) Refresh(ctx context.Context, oldHash, newHash []byte, ttl, grace time.Duration) (Grant, error) {
	g, err := db.rotateGrouped(ctx, oldHash, newHash, ttl)
	if !errors.Is(err, pgx.ErrNoRows) {
		return g, err
	}
	return db.refreshSlowPath(ctx, oldHash, newHash, ttl, grace, true)
}

// rotateSQL spends the token with hash $1 if it is live and not
// contested, inserts its child with hash $2, valid for $3 seconds or until
// the session ends, and returns the grant: refresh's happy path, one
// statement. rotateContestedSQL is the same for a contested token, under
// its session's lock (rotateContested): it also supersedes every other
// live token of the session, the token's siblings from a refresh race.
//
// They are two statements, not one with a switch parameter, so that
// PostgreSQL keeps the happy path's plan. With a switch, a generic plan
// has to cost the superseding update that a custom plan for "not
// contested" prunes; once a session holds a few dozen tokens that update
// looks dearer than planning, and PostgreSQL planned the statement again
// at every refresh — 1.28 ms of backend CPU a rotation instead of 0.27 ms,
// measured on tables of 186,000 tokens in 2,000 sessions.
var (
	rotateSQL          = rotateStatement(false)
	rotateContestedSQL = rotateStatement(true)
)

// keyedLookups joins the token t to its session s and user u, each read
// by its key for the one row it is given: a lateral subquery with a limit
// is planned on its own, never merged into the join, so PostgreSQL cannot
// start from the sessions. Joined plainly, with no statistics yet (a new
// database, autovacuum off, after a restore or pg_upgrade) it took every
// session whose "revoked_at is null" it guessed to be 1 in 200, and ran
// the per-user role check for each: on the 2-CPU machine of
// docs/performance.md a refresh cost 5.9 ms of PostgreSQL's CPU with 560
// sessions (0.27 ms with the lookups keyed), and would grow with every
// session stored.
const keyedLookups = `
		      cross join lateral (
		          select s.expires_at, s.revoked_at, s.username, s.aal, s.amr, s.mfa_pending
		            from auth.session s where s.id = t.session_id limit 1) s
		      cross join lateral (
		          select u.username, u.role, u.disabled_at
		            from auth.user u where u.username = s.username limit 1) u`

func rotateStatement(contested bool) string {
	notContested, superseded := "and not t.contested", ""
	if contested {
		notContested = ""
		superseded = `, superseded as (
		    update auth.refresh_token o
		       set revoked_at = now(), revoked_reason = 'superseded'
		      from spent
		     where o.session_id = spent.session_id
		       and o.id <> spent.id
		       and o.revoked_at is null
		)`
	}
	return `
		with live as materialized (
		    select t.id, t.session_id, s.expires_at as session_expires_at, u.username, u.role,
		           s.aal, s.amr, s.mfa_pending
		      from auth.refresh_token t` + keyedLookups + `
		     where t.token_hash = $1
		       and t.revoked_at is null
		       ` + notContested + `
		       and t.expires_at > now()
		       and s.revoked_at is null
		       and s.expires_at > now()
		       and u.disabled_at is null
		       and exists (select from pg_roles r where r.rolname = u.role)
		       and not exists (select from auth.role_refusals(u.role))
		), spent as (
		    -- The id as a value, not a join: joined, the token could be
		    -- looked for by scanning the table (as above, for the sessions).
		    update auth.refresh_token t
		       set revoked_at = now(), revoked_reason = 'rotated'
		     where t.id = (select id from live)
		       and t.revoked_at is null
		       ` + notContested + `
		    returning t.id, t.session_id
		)` + superseded + `, child as (
		    insert into auth.refresh_token (token_hash, session_id, parent_id, expires_at)
		    select $2, spent.session_id, spent.id,
		           least(now() + make_interval(secs => $3), live.session_expires_at)
		      from spent, live
		    returning expires_at
		)
		select live.username, live.role, spent.session_id, child.expires_at, now(),
		       live.aal, live.amr, live.mfa_pending
		  from spent, live, child`
}

// queryRower is a pool or a transaction.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// rotate runs rotateSQL, or rotateContestedSQL if contested. Concurrent
// refreshes of one token all try to update the same row; the row lock
// makes them queue, and each waiter re-checks "revoked_at is null" (and
// "not contested") after the winner commits, so exactly one of them gets
// a row back — on one authd or many.
func (db *DB) rotate(ctx context.Context, q queryRower, oldHash, newHash []byte, ttl time.Duration, contested bool) (Grant, error) {
	sql := rotateSQL
	if contested {
		sql = rotateContestedSQL
	}
	return scanRotation(q.QueryRow(ctx, sql, oldHash, newHash, ttl.Seconds()))
}

// scanRotation reads rotateSQL's row: pgx.ErrNoRows as it is (the token
// is not live: the slow path decides why), any other error wrapped.
func scanRotation(row pgx.Row) (Grant, error) {
	var (
		g   Grant
		now time.Time
	)
	err := row.Scan(&g.Username, &g.Role, &g.SessionID, &g.RefreshExpiresAt, &now, &g.AAL, &g.AMR, &g.MFAPending)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return Grant{}, err
		}
		return Grant{}, wrapf(err, "rotate refresh token")
	}
	g.RefreshTTL = g.RefreshExpiresAt.Sub(now)
	return g, nil
}

// refreshCheckSQL is the refresh slow path's one statement: find the
// token with hash $1 whatever its state, with its session and user; if it
// is a replay (spent by rotation more than $2 seconds ago, or superseded),
// revoke its session.
const refreshCheckSQL = `
		with found as (
		    select t.id, t.session_id, t.revoked_at, t.revoked_reason, t.contested,
		           t.expires_at > now() and s.revoked_at is null and s.expires_at > now()
		               and u.disabled_at is null as usable,
		           u.username, u.role, s.aal, s.amr, s.mfa_pending,
		           exists (select 1 from pg_roles r where r.rolname = u.role) as role_exists,
		           (select reason from auth.role_refusals(u.role)) as role_refusal
		      from auth.refresh_token t` + keyedLookups + `
		     where t.token_hash = $1
		), replay as (
		    update auth.session s
		       set revoked_at = now()
		      from found f
		     where s.id = f.session_id
		       and s.revoked_at is null
		       and (f.revoked_reason = 'superseded'
		            or (f.revoked_reason = 'rotated' and f.revoked_at < now() - make_interval(secs => $2)))
		    returning s.id
		)
		select f.id, f.username, f.role, f.aal, f.amr, f.mfa_pending, f.session_id, f.role_exists, coalesce(f.role_refusal, ''),
		       f.usable, f.revoked_at is null, coalesce(f.revoked_reason = 'rotated'
		           and f.revoked_at >= now() - make_interval(secs => $2), false),
		       f.contested, exists (select 1 from replay)
		  from found f`

// refreshSlowPath classifies a token that rotate did not accept, revoking
// the session in the same statement when it is a replay, and hands a
// token that may still earn tokens to refreshInGrace or, if
// tryContested, rotateContested.
func (db *DB) refreshSlowPath(ctx context.Context, oldHash, newHash []byte, ttl, grace time.Duration, tryContested bool) (Grant, error) {
	var (
		g          Grant
		tokenID    int64
		usable     bool // unexpired, session live and not ended, user enabled
		live       bool // unspent
		inGrace    bool // spent by a rotation less than grace ago
		contested  bool
		roleExists bool
		refusal    string
		revoked    bool
	)
	err := db.p().QueryRow(ctx, refreshCheckSQL,
		oldHash, grace.Seconds()).Scan(
		&tokenID, &g.Username, &g.Role, &g.AAL, &g.AMR, &g.MFAPending, &g.SessionID, &roleExists, &refusal,
		&usable, &live, &inGrace, &contested, &revoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Grant{}, ErrInvalidRefresh
	case err != nil:
		return Grant{}, wrapf(err, "check refresh token")
	case revoked:
		// Who and which session, for the caller's log; nothing is granted.
		return Grant{Username: g.Username, SessionID: g.SessionID}, ErrRefreshReused
	case !usable:
		return Grant{}, ErrInvalidRefresh
	case inGrace && roleExists && refusal == "":
		return db.refreshInGrace(ctx, g, tokenID, newHash, ttl)
	case live && !roleExists:
		return Grant{}, &RoleMissingError{Role: g.Role}
	case live && refusal != "":
		return Grant{}, &RolePrivilegedError{Role: g.Role, Reason: refusal}
	case live && contested && tryContested:
		return db.rotateContested(ctx, g.SessionID, oldHash, newHash, ttl, grace)
	}
	return Grant{}, ErrInvalidRefresh
}

// inLockedSession runs fn in a transaction that holds session sessionID's
// row lock, or returns ErrInvalidRefresh if the session is revoked or has
// ended. Everything that adds a member to a contested family or decides
// one takes this lock first, so those steps queue, and always in the same
// order (session, then tokens). "For no key update" does not block the
// happy path, whose insert only takes the foreign key's "key share" lock.
func (db *DB) inLockedSession(ctx context.Context, sessionID uuid.UUID, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.p(), func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `
			select 1 from auth.session
			 where id = $1 and revoked_at is null and expires_at > now()
			   for no key update`, sessionID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrInvalidRefresh
		}
		if err != nil {
			return wrapf(err, "lock session")
		}
		return fn(tx)
	})
}

// refreshInGrace answers a token (parentID) spent less than the grace
// window ago. Both the client that spent it and this one hold a child of
// it: a sibling (hash newHash) is issued only while the race is
// undecided, and the family is marked contested so that the first child
// rotated supersedes the others. If a child has already been rotated the
// race is over, and whoever presents the parent now is replaying it: the
// session is revoked.
func (db *DB) refreshInGrace(ctx context.Context, g Grant, parentID int64, newHash []byte, ttl time.Duration) (Grant, error) {
	var replayed bool
	err := db.inLockedSession(ctx, g.SessionID, func(tx pgx.Tx) error {
		// Marking the live children first takes their row locks: a
		// happy-path rotation of one of them either finished before (and
		// the check below sees it) or waits and then finds it contested.
		if _, err := tx.Exec(ctx, `
			update auth.refresh_token set contested = true
			 where parent_id = $1 and revoked_at is null`, parentID); err != nil {
			return wrapf(err, "mark refresh siblings")
		}
		var (
			exp *time.Time
			now time.Time
		)
		// A new statement, so a new snapshot: it sees any rotation of a
		// child that committed while the update above waited.
		err := tx.QueryRow(ctx, `
			with decided as (
			    select exists (select 1 from auth.refresh_token
			                    where parent_id = $1 and revoked_reason = 'rotated') as yes
			), sibling as (
			    insert into auth.refresh_token (token_hash, session_id, parent_id, expires_at, contested)
			    select $2, s.id, $1, least(now() + make_interval(secs => $3), s.expires_at), true
			      from auth.session s, decided
			     where s.id = $4 and not decided.yes
			    returning expires_at
			), replay as (
			    update auth.session s set revoked_at = now()
			      from decided
			     where s.id = $4 and decided.yes
			    returning s.id
			)
			select (select expires_at from sibling), now(), exists (select 1 from replay)`,
			parentID, newHash, ttl.Seconds(), g.SessionID).Scan(&exp, &now, &replayed)
		if err != nil {
			return wrapf(err, "issue refresh sibling")
		}
		if exp != nil {
			g.RefreshExpiresAt, g.RefreshTTL = *exp, exp.Sub(now)
		}
		return nil
	})
	switch {
	case err != nil:
		return Grant{}, err
	case replayed:
		return Grant{Username: g.Username, SessionID: g.SessionID}, ErrRefreshReused
	}
	return g, nil
}

// rotateContested rotates a live contested token under its session's lock,
// superseding its siblings. If a sibling won while this one waited for the
// lock, the token is superseded now: a replay, and the session is revoked.
func (db *DB) rotateContested(ctx context.Context, sessionID uuid.UUID, oldHash, newHash []byte, ttl, grace time.Duration) (Grant, error) {
	var g Grant
	err := db.inLockedSession(ctx, sessionID, func(tx pgx.Tx) error {
		var err error
		g, err = db.rotate(ctx, tx, oldHash, newHash, ttl, true)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// Changed while it waited for the lock: a sibling won (it is
		// superseded: a replay), the same token was rotated by a request
		// of its own (in grace now), or the user changed. Classify it
		// again, once.
		return db.refreshSlowPath(ctx, oldHash, newHash, ttl, grace, false)
	}
	return g, err
}

// RevokeSessions ends the session named by sessionID (a zero UUID names
// none) and the one the refresh token with hash refreshHash belongs to
// (nil names none), whether or not that token is still usable: one
// statement for a browser's logout, which carries both. Revoking a revoked
// or unknown session is not an error; the sessions it ended are returned.
//
// The revoked session alone stops its tokens. Its live tokens (unspent,
// unexpired) are marked revoked too, with reason 'logout', so that the row
// says why it stopped working; a child that a refresh running at the same
// moment inserts may stay unmarked, stopped by its session all the same.
// Refresh treats a 'logout' token as any token of a revoked session: only
// a 'rotated' one can be a replay or earn a grace sibling.
func (db *DB) RevokeSessions(ctx context.Context, sessionID uuid.UUID, refreshHash []byte) ([]EndedSession, error) {
	rows, err := db.p().Query(ctx, `
		with ended as (
		    update auth.session s set revoked_at = now()
		     where s.revoked_at is null
		       and (s.id = $1
		            or s.id = (select t.session_id from auth.refresh_token t where t.token_hash = $2))
		    returning s.id, s.username
		), tokens as (
		    update auth.refresh_token t set revoked_at = now(), revoked_reason = 'logout'
		      from ended
		     where t.session_id = ended.id
		       and t.revoked_at is null
		       and t.expires_at > now()
		)
		select id, username from ended`,
		sessionID, refreshHash)
	if err != nil {
		return nil, wrapf(err, "revoke session")
	}
	ended, err := pgx.CollectRows(rows, pgx.RowToStructByPos[EndedSession])
	if err != nil {
		return nil, wrapf(err, "revoke session")
	}
	return ended, nil
}

// EndedSession is a session RevokeSessions ended, for the audit log.
type EndedSession struct {
	ID       uuid.UUID
	Username string
}
