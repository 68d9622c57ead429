package store

import (
	"context"
)

// Purged counts what one PurgeBatch removed.
type Purged struct{ Sessions, Tokens, Throttles, Resets int64 }

// PurgeBatch deletes at most batch dead sessions (revoked over an hour
// ago, or with no unexpired refresh token left; their tokens go with them)
// at most batch expired refresh tokens of live sessions, at most batch
// drained login throttle buckets (auth.login_throttle, which holds the
// per-user reset limit too), and at most batch password reset tokens
// spent or expired (auth.password_reset): such a token is refused
// whether or not its row is there. Rows another
// instance is purging are skipped (skip locked), so several authd
// processes can run it at once. Spent but unexpired tokens stay: they are
// what recognises a replayed token. Each statement commits on its own: on an
// error, the Purged returned counts what the earlier ones deleted.
func (db *DB) PurgeBatch(ctx context.Context, batch int) (Purged, error) {
	var p Purged
	for _, step := range []struct {
		what, sql string
		n         *int64
	}{
		{"sessions", purgeSessionsSQL, &p.Sessions},
		{"refresh tokens", purgeTokensSQL, &p.Tokens},
		{"login throttle buckets", purgeThrottlesSQL, &p.Throttles},
		{"password reset tokens", purgeResetsSQL, &p.Resets},
	} {
		tag, err := db.p().Exec(ctx, step.sql, batch)
		if err != nil {
			return p, wrapf(err, "purge %s", step.what)
		}
		*step.n = tag.RowsAffected()
	}
	return p, nil
}

// The purge statements, each of at most $1 rows, skipping rows another
// instance is purging.
const (
	// Revoked over an hour ago, or with no unexpired token left; their
	// tokens go with them.
	purgeSessionsSQL = `
		with dead as (
		    select s.id from auth.session s
		     where s.revoked_at < now() - interval '1 hour'
		        or not exists (select 1 from auth.refresh_token t
		                        where t.session_id = s.id and t.expires_at > now())
		     limit $1
		       for update skip locked
		)
		delete from auth.session s using dead where s.id = dead.id`
	purgeTokensSQL = `
		with expired as (
		    select t.id from auth.refresh_token t
		     where t.expires_at < now()
		     limit $1
		       for update skip locked
		)
		delete from auth.refresh_token t using expired where t.id = expired.id`
	purgeThrottlesSQL = `
		with drained as (
		    select key from auth.login_throttle
		     where empty_at < now()
		     limit $1
		       for update skip locked
		)
		delete from auth.login_throttle t using drained where t.key = drained.key`
	purgeResetsSQL = `
		with dead as (
		    select token_hash from auth.password_reset
		     where used_at is not null or expires_at < now()
		     limit $1
		       for update skip locked
		)
		delete from auth.password_reset p using dead where p.token_hash = dead.token_hash`
)
