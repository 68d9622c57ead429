package store

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// UserState is what decides whether a user's access tokens still pass:
// the user, their role as it stands, and their live sessions.
type UserState struct {
	User
	// LiveSessions are the ids of the user's sessions not revoked.
	LiveSessions []string
}

// UserState loads username's state, or ErrNotFound: one statement, for the
// liveness cache of /auth/verify and the NATS callout.
func (db *DB) UserState(ctx context.Context, username string) (UserState, error) {
	var s UserState
	u := &s.User
	err := db.p().QueryRow(ctx, `select `+userColumns+`,
		       array(select s.id::text from auth.session s
		              where s.username = u.username and s.revoked_at is null)
		  from auth.user u where u.username = $1`, username).Scan(
		&u.Username, &u.PasswordHash, &u.Role, &u.RoleExists, &u.RoleRefusal,
		&u.CreatedAt, &u.UpdatedAt, &u.DisabledAt, &u.MFA, &s.LiveSessions)
	if errors.Is(err, pgx.ErrNoRows) {
		return UserState{}, ErrNotFound
	}
	if err != nil {
		return UserState{}, wrapf(err, "load the state of user %q", username)
	}
	s.PasswordHash = "" // not needed to judge a token; not kept in a cache
	return s, nil
}
