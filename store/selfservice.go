package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ErrSessionEnded is returned when the session a self-service request
// names (the caller's own) is revoked or has ended.
var ErrSessionEnded = errors.New("session revoked or ended")

// ChangePassword stores newHash for u, whose password was just checked,
// and keeps u's session sessionID alive while every other session of u
// is revoked (trigger user_changed, reason password_change, told which
// session to keep by the transaction setting authd.keep_session). The
// kept session's live refresh tokens are revoked too (reason
// password_change) and tokenHash becomes its one refresh token, valid for
// ttl or until the session ends: the caller gets fresh tokens, and a
// refresh token taken before the change dies with the others.
//
// Nothing changes, and ErrUserChanged is returned, unless u's row still
// has the hash and role that were checked and u is not disabled (as for
// StartSession); ErrSessionEnded when sessionID is not a live session of
// u. The user's row is locked before the session's, the order of every
// other password change (the trigger), so the two cannot deadlock.
func (db *DB) ChangePassword(ctx context.Context, u User, newHash string, sessionID uuid.UUID, tokenHash []byte, ttl time.Duration) (Grant, error) {
	g := Grant{Username: u.Username, Role: u.Role, SessionID: sessionID}
	err := pgx.BeginFunc(ctx, db.p(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `select set_config('authd.keep_session', $1, true)`, sessionID.String()); err != nil {
			return wrapf(err, "mark the session to keep")
		}
		tag, err := tx.Exec(ctx, `
			update auth.user set password_hash = $4, updated_at = now()
			 where username = $1 and password_hash = $2 and role = $3 and disabled_at is null`,
			u.Username, u.PasswordHash, u.Role, newHash)
		if err != nil {
			return wrapf(err, "set password")
		}
		if tag.RowsAffected() == 0 {
			return ErrUserChanged
		}
		var now time.Time
		err = tx.QueryRow(ctx, `
			with s as (
			    select s.id, s.expires_at, s.aal, s.amr, s.mfa_pending from auth.session s
			     where s.id = $1 and s.username = $2
			       and s.revoked_at is null and s.expires_at > now()
			       for no key update
			), old as (
			    update auth.refresh_token t set revoked_at = now(), revoked_reason = 'password_change'
			      from s
			     where t.session_id = s.id and t.revoked_at is null and t.expires_at > now()
			)
			insert into auth.refresh_token (token_hash, session_id, expires_at)
			select $3, s.id, least(now() + make_interval(secs => $4), s.expires_at) from s
			returning expires_at, now(), (select aal from s), (select amr from s), (select mfa_pending from s)`,
			sessionID, u.Username, tokenHash, ttl.Seconds()).Scan(&g.RefreshExpiresAt, &now, &g.AAL, &g.AMR, &g.MFAPending)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrSessionEnded
		}
		if err != nil {
			return wrapf(err, "rotate the kept session's refresh token")
		}
		g.RefreshTTL = g.RefreshExpiresAt.Sub(now)
		return nil
	})
	if errors.Is(err, ErrUserChanged) || errors.Is(err, ErrSessionEnded) {
		return Grant{}, fmt.Errorf("change password of %q: %w", u.Username, err)
	}
	if err != nil {
		return Grant{}, wrapf(err, "change password of %q", u.Username)
	}
	return g, nil
}

// LiveSession is one live session of a user, as the user sees it: no
// token material.
type LiveSession struct {
	ID        uuid.UUID
	CreatedAt time.Time
	// RefreshedAt is when it was last refreshed; nil if never.
	RefreshedAt *time.Time
	// ExpiresAt is when it ends however often it is refreshed.
	ExpiresAt time.Time
	// ClientAddr and UserAgent are the login's; "" when unknown (a
	// session from before they were stored).
	ClientAddr string
	UserAgent  string
	// AAL is the session's assurance level: aal2 once a second factor
	// stepped it up.
	AAL string
}

// LiveSessions lists username's sessions that are neither revoked nor
// ended, oldest first; none for an unknown user.
func (db *DB) LiveSessions(ctx context.Context, username string) ([]LiveSession, error) {
	rows, _ := db.p().Query(ctx, `
		select s.id, s.created_at,
		       -- the login's own token is issued with the session
		       (select max(t.issued_at) from auth.refresh_token t
		         where t.session_id = s.id and t.issued_at > s.created_at),
		       s.expires_at, coalesce(s.client_addr, ''), coalesce(s.user_agent, ''), s.aal
		  from auth.session s
		 where s.username = $1 and s.revoked_at is null and s.expires_at > now()
		 order by s.created_at, s.id`, username)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LiveSession])
	if err != nil {
		return nil, wrapf(err, "list live sessions of %q", username)
	}
	return out, nil
}

// RevokeSessionOf ends session sessionID if it is username's, with its
// live refresh tokens (reason logout). ErrSessionNotFound when username
// has no such session, revoked or not: the answer does not say whether
// the id is another user's. Ending an ended session is not an error.
func (db *DB) RevokeSessionOf(ctx context.Context, username string, sessionID uuid.UUID) error {
	var found bool
	err := db.p().QueryRow(ctx, `
		select exists (select 1 from auth.session s where s.id = $2 and s.username = $1),
		       auth.revoke_user_sessions($1, 'logout', $2)`, username, sessionID).Scan(&found, new(int))
	if err != nil {
		return wrapf(err, "revoke session of %q", username)
	}
	if !found {
		return fmt.Errorf("revoke session of %q: %w", username, ErrSessionNotFound)
	}
	return nil
}

// RevokeUserSessionsOf ends every session of the user whose live session
// is named by sessionID (a zero UUID names none) or by the live refresh
// token with hash refreshHash (nil names none) — all but that session
// when keepCurrent — for a logout with scope "others" or "global". A
// revoked or ended session, or a spent refresh token, names nobody: a
// stale credential may end its own session (RevokeSessions), not all of
// its user's.
func (db *DB) RevokeUserSessionsOf(ctx context.Context, sessionID uuid.UUID, refreshHash []byte, keepCurrent bool) error {
	_, err := db.p().Exec(ctx, `
		select auth.revoke_user_sessions(s.username, 'logout', null, case when $3 then s.id end)
		  from auth.session s
		 where s.revoked_at is null and s.expires_at > now()
		   and (s.id = $1
		        or s.id = (select t.session_id from auth.refresh_token t
		                    where t.token_hash = $2 and t.revoked_at is null and t.expires_at > now()))`,
		sessionID, refreshHash, keepCurrent)
	if err != nil {
		return wrapf(err, "revoke the user's sessions")
	}
	return nil
}
