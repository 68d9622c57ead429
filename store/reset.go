package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ResetChannel is the channel a password reset request is announced on
// (pg_notify), for the app's mail worker to LISTEN to. The payload is a
// JSON object {"user", "token", "expires_at"}: the plain token, which
// spends itself once, so the channel is as sensitive as the mail.
const ResetChannel = "authd_password_reset"

// ErrResetTokenInvalid is returned for a reset token that is unknown,
// spent, expired or replaced by a newer one.
var ErrResetTokenInvalid = errors.New("invalid or expired reset token")

// IssueResetToken stores tokenHash as username's one reset token, valid
// for ttl, and deletes the user's earlier ones: a newer request kills the
// older token. With notify, plain is announced on ResetChannel in the
// same transaction, so the worker hears of it once it is committed and
// only then. The user's row is locked first, so that of two concurrent
// requests the later one sees, and deletes, the earlier one's token.
//
// An unknown or disabled user gets no token and no notification, for the
// same statements: issued is false, err nil.
func (db *DB) IssueResetToken(ctx context.Context, username, plain string, tokenHash []byte, ttl time.Duration, notify bool) (issued bool, expiresAt time.Time, err error) {
	err = pgx.BeginFunc(ctx, db.p(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			select 1 from auth.user where username = $1 and disabled_at is null for no key update`, username); err != nil {
			return wrapf(err, "lock the user")
		}
		// A new statement: it sees a token committed while we waited.
		rows, _ := tx.Query(ctx, `
			with u as (
			    select username from auth.user where username = $1 and disabled_at is null
			), old as (
			    delete from auth.password_reset p using u where p.username = u.username
			), t as (
			    insert into auth.password_reset (token_hash, username, expires_at)
			    select $2, u.username, now() + make_interval(secs => $3) from u
			    returning username, expires_at
			)
			select t.expires_at,
			       case when $4 then pg_catalog.pg_notify($5, json_build_object(
			           'user', t.username, 'token', $6::text, 'expires_at', t.expires_at)::text) end
			  from t`,
			username, tokenHash, ttl.Seconds(), notify, ResetChannel, plain)
		var n int
		_, err := pgx.ForEachRow(rows, []any{&expiresAt, new(any)}, func() error { n++; return nil })
		if err != nil {
			return wrapf(err, "store the reset token")
		}
		issued = n > 0
		return nil
	})
	if err != nil {
		return false, time.Time{}, fmt.Errorf("issue a reset token for %q: %w", username, err)
	}
	return issued, expiresAt, nil
}

// ResetTokenUser is the user of the live reset token with hash tokenHash:
// unspent and unexpired. ErrResetTokenInvalid if none.
func (db *DB) ResetTokenUser(ctx context.Context, tokenHash []byte) (string, error) {
	var user string
	err := db.p().QueryRow(ctx, `
		select username from auth.password_reset
		 where token_hash = $1 and used_at is null and expires_at > now()`, tokenHash).Scan(&user)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrResetTokenInvalid
	}
	if err != nil {
		return "", wrapf(err, "look up a reset token")
	}
	return user, nil
}

// ResetPassword spends the reset token with hash tokenHash, if it is
// still live and username's, and sets username's password hash to
// newHash in the same statement: a token sets one password at most. The
// database revokes every session of the user (trigger user_changed,
// reason password_change). ErrResetTokenInvalid if the token is spent,
// expired or replaced meanwhile, or the user is gone.
func (db *DB) ResetPassword(ctx context.Context, username string, tokenHash []byte, newHash string) error {
	tag, err := db.p().Exec(ctx, `
		with t as (
		    update auth.password_reset set used_at = now()
		     where token_hash = $1 and username = $2 and used_at is null and expires_at > now()
		    returning username
		)
		update auth.user u set password_hash = $3, updated_at = now()
		  from t where u.username = t.username`, tokenHash, username, newHash)
	if err != nil {
		return wrapf(err, "reset the password of %q", username)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("reset the password of %q: %w", username, ErrResetTokenInvalid)
	}
	return nil
}
