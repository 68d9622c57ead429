package store

import (
	"context"
	"crypto/sha256"
	"strings"
	"time"
)

// LoginThrottle is the shared per-username limit on failed logins: at
// most Limit unreturned failures, draining at PerSecond.
type LoginThrottle struct {
	Limit     float64
	PerSecond float64
}

// ReserveLoginFailure counts one failed login for username in advance, at
// now (a bucket never drains backwards: an instance whose clock is behind
// the last writer's sees no time pass), unless that would exceed t.Limit; then it counts nothing and says
// how long until one would fit (wait > 0). The check and the count are one
// statement: of a concurrent burst, exactly as many as fit get through.
// ReleaseLoginFailure gives the reservation back when the login succeeds.
func (db *DB) ReserveLoginFailure(ctx context.Context, username string, t LoginThrottle, now time.Time) (wait time.Duration, err error) {
	wait, err = db.reserve(ctx, usernameKey(username), t, now)
	if err != nil {
		return 0, wrapf(err, "reserve a login attempt")
	}
	return wait, nil
}

// ReserveResetRequest counts one password reset request for username in
// the same buckets as ReserveLoginFailure, under a key of its own, unless
// that would exceed t.Limit (wait > 0): the per-user reset limit that
// every instance shares. It counts unknown users as known ones, so that
// neither the answer nor its time tells them apart.
func (db *DB) ReserveResetRequest(ctx context.Context, username string, t LoginThrottle, now time.Time) (wait time.Duration, err error) {
	wait, err = db.reserve(ctx, resetKey(username), t, now)
	if err != nil {
		return 0, wrapf(err, "reserve a password reset request")
	}
	return wait, nil
}

// reserve adds one to the bucket of key at now, unless that would exceed
// t.Limit; then it says how long until one would fit.
//
// Its commit does not wait for the flush to disk (synchronous_commit off
// for its own transaction only: reserveSQL). The count is visible to
// every other transaction at once, as with any commit, so the limit holds
// exactly; what a crash of PostgreSQL can lose is the counts of the last
// moments, and only those of failed attempts: any durable commit flushes
// all the WAL before it — the statement that opens a successful login's
// session, a refresh, the audit batch recording the failures (every
// 100 ms) — and PostgreSQL flushes on its own within three times
// wal_writer_delay. A guesser whose burst a crash happens to follow gains
// at most the guesses of those moments, a limit's worth. In exchange a
// login waits for one flush instead of two: on a machine whose CPUs are
// busy with compares, a flush cost the reservation 300 µs of PostgreSQL's
// CPU and 20 ms of wall time (docs/performance.md).
func (db *DB) reserve(ctx context.Context, key []byte, t LoginThrottle, now time.Time) (wait time.Duration, err error) {
	var (
		reserved bool
		current  float64
	)
	err = db.p().QueryRow(ctx, reserveSQL, key, t.Limit, t.PerSecond, now).Scan(&reserved, &current)
	if err != nil {
		return 0, err
	}
	return reservedWait(reserved, current, t), nil
}

// reservedWait is 0 for a reservation made, and for one refused how long
// until the bucket has drained to t.Limit - 1. current is as of the
// statement's snapshot, which may predate the reservations that filled
// the bucket: never 0 (go ahead) for a refusal.
func reservedWait(reserved bool, current float64, t LoginThrottle) time.Duration {
	if reserved {
		return 0
	}
	wait := time.Duration((current + 1 - t.Limit) / t.PerSecond * float64(time.Second))
	return max(wait, time.Millisecond)
}

// ReserveLoginFailureAndLoadUser is ReserveLoginFailure and User in one
// statement: what a login does before its compare, in one round trip
// instead of two. The user is read whether or not the failure was
// reserved (a throttled login ignores it); found is false when there is
// no such user. username must be a name PostgreSQL's text can hold
// (identity.WellFormed).
func (db *DB) ReserveLoginFailureAndLoadUser(ctx context.Context, username string, t LoginThrottle, now time.Time) (wait time.Duration, u User, found bool, err error) {
	var (
		reserved         bool
		current          float64
		name, hash, role *string // null: no such user
		created, updated *time.Time
	)
	err = db.p().QueryRow(ctx, reserveAndUserSQL, usernameKey(username), t.Limit, t.PerSecond, now, username).Scan(
		&reserved, &current, &name, &hash, &role, &u.RoleExists, &u.RoleRefusal, &created, &updated, &u.DisabledAt, &u.MFA)
	if err != nil {
		return 0, User{}, false, wrapf(err, "reserve a login attempt and load its user")
	}
	if name == nil {
		return reservedWait(reserved, current, t), User{}, false, nil
	}
	u.Username, u.PasswordHash, u.Role, u.CreatedAt, u.UpdatedAt = *name, *hash, *role, *created, *updated
	return reservedWait(reserved, current, t), u, true, nil
}

// reserveCTEs count one in the bucket of key $1 at $4 unless that would
// exceed the limit $2 (up, a row if counted), draining at $3 a second;
// cur is the bucket as the statement found it.
const reserveCTEs = `
		with cur as (
		    select greatest(failures - greatest(extract(epoch from $4::timestamptz - at), 0) * $3, 0) as n
		      from auth.login_throttle where key = $1
		), up as (
		    insert into auth.login_throttle as t (key, failures, at, empty_at)
		    values ($1, 1, $4, $4 + make_interval(secs => 1 / $3))
		    on conflict (key) do update
		       set failures = excluded.failures + greatest(t.failures - greatest(extract(epoch from $4 - t.at), 0) * $3, 0),
		           at = greatest($4, t.at),
		           empty_at = greatest($4, t.at) + make_interval(secs => (1 + greatest(t.failures - greatest(extract(epoch from $4 - t.at), 0) * $3, 0)) / $3)
		     where greatest(t.failures - greatest(extract(epoch from $4 - t.at), 0) * $3, 0) + 1 <= $2
		    returning 1
		)
`

// reserveSQL is reserve's statement. set_config(…, true) lasts until the
// end of the statement's transaction, which is the statement itself (also
// behind a transaction-mode pooler): the connection goes back to the pool
// with synchronous_commit as it was.
const reserveSQL = reserveCTEs + `
		select exists (select from up), coalesce((select n from cur), 0)
		  from set_config('synchronous_commit', 'off', true)`

// reserveAndUserSQL is ReserveLoginFailureAndLoadUser's: reserveSQL, and
// the user named $5 (nulls for none).
const reserveAndUserSQL = reserveCTEs + `
		select exists (select from up), coalesce((select n from cur), 0),` + userColumns + `
		  from set_config('synchronous_commit', 'off', true)
		  left join auth.user u on u.username = $5`

// ReleaseLoginFailure returns the failure ReserveLoginFailure counted for
// username: the login it was reserved for succeeded. A login that opens a
// session gives it back in that session's statement instead
// (StartSessionFrom's release).
func (db *DB) ReleaseLoginFailure(ctx context.Context, username string, t LoginThrottle, now time.Time) error {
	_, err := db.p().Exec(ctx, releaseFailureSQL("$1", "$2", "$3"), usernameKey(username), t.PerSecond, now)
	if err != nil {
		return wrapf(err, "release a login attempt")
	}
	return nil
}

// LoginRelease is a failure ReserveLoginFailure counted for Username, to
// be given back, as of Now, by the statement that opens the login's
// session (StartSessionFrom): one round trip and one commit fewer than
// ReleaseLoginFailure after it.
type LoginRelease struct {
	Username string
	Throttle LoginThrottle
	Now      time.Time
}

// releaseFailureSQL is the update that gives one failure back to the
// bucket whose key is placeholder key, drained at perSecond up to now
// (placeholders, typed here): ReleaseLoginFailure's statement, and a CTE
// of StartSessionFrom's. A null key updates nothing.
func releaseFailureSQL(key, perSecond, now string) string {
	return strings.NewReplacer(":key", key+"::bytea", ":per_second", perSecond+"::float8", ":now", now+"::timestamptz").Replace(`
		update auth.login_throttle
		   set failures = greatest(failures - greatest(extract(epoch from :now - at), 0) * :per_second - 1, 0),
		       at = greatest(:now, at),
		       empty_at = greatest(:now, at) + make_interval(secs => greatest(failures - greatest(extract(epoch from :now - at), 0) * :per_second - 1, 0) / :per_second)
		 where key = :key`)
}

// usernameKey is the throttle's key for username: its SHA-256.
func usernameKey(username string) []byte {
	k := sha256.Sum256([]byte(username))
	return k[:]
}

// resetKey is the key of username's reset requests: the SHA-256 of a
// prefix ending in NUL, which no username holds, and the name.
func resetKey(username string) []byte {
	k := sha256.Sum256([]byte("password_reset\x00" + username))
	return k[:]
}
