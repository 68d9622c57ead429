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

// MFAFactor is a row of auth.mfa_factor: a user's TOTP factor.
type MFAFactor struct {
	ID     uuid.UUID
	Secret string // base32, as in the otpauth URI
	// Verified: a code proved the user has it, and it guards their logins.
	// A factor that is not verified is pending (enrolled, not yet proven).
	Verified bool
}

// ErrMFAEnrolled is returned by EnrollMFA for a user whose factor is
// verified: it must be reset first.
var ErrMFAEnrolled = errors.New("a verified MFA factor exists")

// ErrMFACodeRefused is returned by VerifyMFA when the code's time step
// was accepted before (a replay), the recovery code is unknown or spent,
// or the factor is no longer the one checked (reset or re-enrolled).
var ErrMFACodeRefused = errors.New("MFA code refused")

// EnrollMFA stores a pending factor for username with id and secret,
// replacing a pending one; ErrMFAEnrolled when a verified one exists,
// ErrNotFound for an unknown user.
func (db *DB) EnrollMFA(ctx context.Context, username string, id uuid.UUID, secret string) error {
	var replaced bool
	err := db.p().QueryRow(ctx, `
		insert into auth.mfa_factor (id, username, secret)
		values ($1, $2, $3)
		on conflict (username) do update
		   set id = excluded.id, secret = excluded.secret, created_at = now(), last_step = null
		 where auth.mfa_factor.verified_at is null
		returning true`, id, username, secret).Scan(&replaced)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("enroll MFA for %q: %w", username, ErrMFAEnrolled)
	case isForeignKeyViolation(err):
		return fmt.Errorf("enroll MFA for %q: %w", username, ErrNotFound)
	case err != nil:
		return wrapf(err, "enroll MFA for %q", username)
	}
	return nil
}

// MFAFactorOf is username's factor, pending or verified; ErrNotFound when
// they have none.
func (db *DB) MFAFactorOf(ctx context.Context, username string) (MFAFactor, error) {
	var f MFAFactor
	err := db.p().QueryRow(ctx, `
		select id, secret, verified_at is not null from auth.mfa_factor where username = $1`,
		username).Scan(&f.ID, &f.Secret, &f.Verified)
	if errors.Is(err, pgx.ErrNoRows) {
		return MFAFactor{}, fmt.Errorf("MFA factor of %q: %w", username, ErrNotFound)
	}
	if err != nil {
		return MFAFactor{}, wrapf(err, "load MFA factor of %q", username)
	}
	return f, nil
}

// MFAProof is a second factor a session presents to VerifyMFA: a TOTP
// code of Factor at time step Step, or the recovery code with hash
// RecoveryHash.
type MFAProof struct {
	Username  string
	SessionID uuid.UUID
	Factor    MFAFactor
	Step      int64
	// RecoveryHash, when set, is the proof instead of Step.
	RecoveryHash []byte
	// NewRecoveryHashes are the recovery codes of a pending factor that
	// this proof activates; they replace any the user had.
	NewRecoveryHashes [][]byte
	// AMR is what the stepped-up session's tokens say proved it.
	AMR []string
	// RefreshHash is the session's new refresh token, valid for
	// RefreshTTL or until the session ends. A session that was waiting
	// for its second factor ends Lifetime after it began, instead of its
	// pending time.
	RefreshHash []byte
	RefreshTTL  time.Duration
	Lifetime    time.Duration
}

// VerifyMFA accepts p and steps its session up to aal2, in one
// transaction: the code's time step is stored as the factor's last one,
// only if it is later than the last (a compare-and-set, so two requests
// with one code cannot both pass), or the recovery code is spent; a
// pending factor becomes verified with its new recovery codes; the
// session's live refresh tokens are replaced by p.RefreshHash (reason
// mfa_verified). ErrMFACodeRefused for a replayed step or a spent or
// unknown recovery code, ErrSessionEnded when the session is no longer a
// live session of an enabled user: then nothing changes.
func (db *DB) VerifyMFA(ctx context.Context, p MFAProof) (Grant, error) {
	g := Grant{Username: p.Username, SessionID: p.SessionID, AAL: "aal2", AMR: p.AMR}
	err := pgx.BeginFunc(ctx, db.p(), func(tx pgx.Tx) error {
		var tag interface{ RowsAffected() int64 }
		var err error
		if p.RecoveryHash != nil {
			tag, err = tx.Exec(ctx, `
				update auth.mfa_recovery_code c set used_at = now()
				  from auth.mfa_factor f
				 where c.username = $1 and c.code_hash = $2 and c.used_at is null
				   and f.id = $3 and f.username = c.username and f.verified_at is not null`,
				p.Username, p.RecoveryHash, p.Factor.ID)
		} else {
			// The last accepted step only moves forward: a code (or an
			// older one) is never accepted twice.
			tag, err = tx.Exec(ctx, `
				update auth.mfa_factor
				   set last_step = $3, verified_at = coalesce(verified_at, now())
				 where id = $1 and username = $2 and (verified_at is not null) = $4
				   and (last_step is null or last_step < $3)`,
				p.Factor.ID, p.Username, p.Step, p.Factor.Verified)
		}
		if err != nil {
			return wrapf(err, "accept MFA code")
		}
		if tag.RowsAffected() == 0 {
			return ErrMFACodeRefused
		}
		if !p.Factor.Verified {
			if _, err := tx.Exec(ctx, `
				with old as (delete from auth.mfa_recovery_code where username = $1)
				insert into auth.mfa_recovery_code (code_hash, username)
				select h, $1 from unnest($2::bytea[]) h`, p.Username, p.NewRecoveryHashes); err != nil {
				return wrapf(err, "store recovery codes")
			}
		}
		var now time.Time
		err = tx.QueryRow(ctx, `
			with s as (
			    update auth.session s
			       set aal = 'aal2', amr = $5, mfa_pending = false,
			           expires_at = case when s.mfa_pending
			                             then s.created_at + make_interval(secs => $6)
			                             else s.expires_at end
			      from auth.user u
			     where s.id = $1 and s.username = $2 and u.username = s.username
			       and u.disabled_at is null and s.revoked_at is null and s.expires_at > now()
			    returning s.id, s.expires_at, u.role
			), old as (
			    update auth.refresh_token t set revoked_at = now(), revoked_reason = 'mfa_verified'
			      from s
			     where t.session_id = s.id and t.revoked_at is null and t.expires_at > now()
			)
			insert into auth.refresh_token (token_hash, session_id, expires_at)
			select $3, s.id, least(now() + make_interval(secs => $4), s.expires_at) from s
			returning expires_at, now(), (select role from s)`,
			p.SessionID, p.Username, p.RefreshHash, p.RefreshTTL.Seconds(), p.AMR, p.Lifetime.Seconds()).
			Scan(&g.RefreshExpiresAt, &now, &g.Role)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrSessionEnded
		}
		if err != nil {
			return wrapf(err, "step the session up")
		}
		g.RefreshTTL = g.RefreshExpiresAt.Sub(now)
		return nil
	})
	if errors.Is(err, ErrMFACodeRefused) || errors.Is(err, ErrSessionEnded) {
		return Grant{}, fmt.Errorf("verify MFA of %q: %w", p.Username, err)
	}
	if err != nil {
		return Grant{}, wrapf(err, "verify MFA of %q", p.Username)
	}
	return g, nil
}

// ResetMFA removes username's factor and recovery codes and ends every
// session of theirs (reason mfa_reset), in one statement: an administrator
// resets a second factor after a lost device, and whoever holds a session
// opened with it must log in again. It reports whether a factor was
// removed and how many sessions ended; ErrNotFound for an unknown user.
func (db *DB) ResetMFA(ctx context.Context, username string) (hadFactor bool, sessions int, err error) {
	var found bool
	err = db.p().QueryRow(ctx, `
		with f as (delete from auth.mfa_factor where username = $1 returning 1),
		     c as (delete from auth.mfa_recovery_code where username = $1)
		select exists (select 1 from auth.user where username = $1),
		       exists (select 1 from f),
		       auth.revoke_user_sessions($1, 'mfa_reset')`, username).Scan(&found, &hadFactor, &sessions)
	switch {
	case err != nil:
		return false, 0, wrapf(err, "reset MFA of %q", username)
	case !found:
		return false, 0, fmt.Errorf("reset MFA of %q: %w", username, ErrNotFound)
	}
	return hadFactor, sessions, nil
}

// SetNATSRequireMFA sets whether the NATS callout admits role only with
// an aal2 access token. A role missing from pg_roles is a
// *RoleMissingError.
func (db *DB) SetNATSRequireMFA(ctx context.Context, role string, on bool) error {
	_, err := db.p().Exec(ctx, `
		insert into auth.nats_role (role, require_mfa) values ($1, $2)
		on conflict (role) do update set role = excluded.role, require_mfa = excluded.require_mfa`, role, on)
	if err != nil {
		return fmt.Errorf("set NATS require-mfa of %q: %w", role, natsError(err, role, "", ""))
	}
	return nil
}

// isForeignKeyViolation reports a row naming a user (or other parent)
// that does not exist.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
