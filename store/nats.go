package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The kinds of NATS permission, the values of auth.nats_permission.kind.
const (
	NATSPubAllow = "pub_allow"
	NATSPubDeny  = "pub_deny"
	NATSSubAllow = "sub_allow"
	NATSSubDeny  = "sub_deny"
)

// NATSPermissions is what one role may do on NATS: the subjects it may and
// may not publish and subscribe to (each list sorted bytewise), and
// whether it may answer requests. ResponseMax and ResponseTTL are 0 for
// the NATS server's defaults (1 response, 2 minutes), as in a NATS user
// JWT's ResponsePermission.
type NATSPermissions struct {
	PubAllow, PubDeny, SubAllow, SubDeny []string
	AllowResponses                       bool
	ResponseMax                          int
	ResponseTTL                          time.Duration
	// RequireMFA: the role is admitted only with an aal2 access token
	// (auth.nats_role.require_mfa).
	RequireMFA bool
}

// NATSGrant is a row of auth.nats_permission.
type NATSGrant struct {
	Role, Kind, Subject string
	// RoleExists reports whether Role is in pg_roles right now: the
	// grants of a dropped role stay until revoked.
	RoleExists bool
}

// NATSResponses is a row of auth.nats_role: a role's response settings,
// and whether it needs a second factor.
type NATSResponses struct {
	Role       string
	RoleExists bool
	Allow      bool
	Max        int           // 0: the NATS server's default, 1
	TTL        time.Duration // 0: the NATS server's default, 2 minutes
	RequireMFA bool
}

// NATSSubjectError reports a subject that is not a valid NATS subject
// pattern.
type NATSSubjectError struct{ Subject, Reason string }

func (e *NATSSubjectError) Error() string {
	return fmt.Sprintf("bad NATS subject %q: %s", e.Subject, e.Reason)
}

// NATSKindError reports a permission kind other than pub_allow, pub_deny,
// sub_allow and sub_deny.
type NATSKindError struct{ Kind string }

func (e *NATSKindError) Error() string {
	return fmt.Sprintf("bad NATS permission kind %q: want pub_allow, pub_deny, sub_allow or sub_deny", e.Kind)
}

// CheckNATSSubject returns a *NATSSubjectError unless s is a NATS subject
// or subject pattern: tokens separated by '.', none empty, '*' and '>'
// only as whole tokens, '>' only as the last, and no whitespace or control
// character. It is the rule of auth.is_nats_subject, checked without the
// database.
func CheckNATSSubject(s string) error {
	if s == "" {
		return &NATSSubjectError{s, "empty subject"}
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return &NATSSubjectError{s, "whitespace or control character"}
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return &NATSSubjectError{s, "empty token"}
		case t == ">" && i < len(tokens)-1:
			return &NATSSubjectError{s, "'>' must be the last token"}
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return &NATSSubjectError{s, "'*' and '>' must be whole tokens"}
		}
	}
	return nil
}

func checkNATSKind(kind string) error {
	switch kind {
	case NATSPubAllow, NATSPubDeny, NATSSubAllow, NATSSubDeny:
		return nil
	}
	return &NATSKindError{Kind: kind}
}

// NATSPermissions loads what role may do on NATS, in one query. A role
// without grants, or one that does not exist, gets empty lists and no
// responses, not an error.
func (db *DB) NATSPermissions(ctx context.Context, role string) (NATSPermissions, error) {
	var p NATSPermissions
	// collate "C": bytewise, as Go sorts, whatever the database's locale.
	err := db.p().QueryRow(ctx, `
		select coalesce(array_agg(p.subject order by p.subject collate "C") filter (where p.kind = 'pub_allow'), '{}'),
		       coalesce(array_agg(p.subject order by p.subject collate "C") filter (where p.kind = 'pub_deny'), '{}'),
		       coalesce(array_agg(p.subject order by p.subject collate "C") filter (where p.kind = 'sub_allow'), '{}'),
		       coalesce(array_agg(p.subject order by p.subject collate "C") filter (where p.kind = 'sub_deny'), '{}'),
		       coalesce(r.allow_responses, false),
		       coalesce(r.max_responses, 0),
		       coalesce(r.response_ttl, interval '0'),
		       coalesce(r.require_mfa, false)
		  from (select $1::name as role) x
		  left join auth.nats_role r on r.role = x.role
		  left join auth.nats_permission p on p.role = x.role
		 group by r.allow_responses, r.max_responses, r.response_ttl, r.require_mfa`, role).
		Scan(&p.PubAllow, &p.PubDeny, &p.SubAllow, &p.SubDeny, &p.AllowResponses, &p.ResponseMax, &p.ResponseTTL, &p.RequireMFA)
	if err != nil {
		return NATSPermissions{}, wrapf(err, "load NATS permissions of %q", role)
	}
	return p, nil
}

// NATSRule is one subject a role may (pub_allow, sub_allow) or may not
// (pub_deny, sub_deny) publish or subscribe to: a row of
// auth.nats_permission without its role.
type NATSRule struct{ Kind, Subject string }

// NATSResponseLimits bound how a role answers requests: at most Max
// responses each (0: the NATS server's default, 1) within TTL (0: the
// server's default, 2 minutes).
type NATSResponseLimits struct {
	Max int
	TTL time.Duration
}

// NATSNotGrantedError reports, from RevokeNATSRules, a rule that role does
// not have, or (Responses) that it may not answer requests. It is
// ErrNotFound for errors.Is.
type NATSNotGrantedError struct {
	Role      string
	Rule      NATSRule
	Responses bool
}

func (e *NATSNotGrantedError) Error() string {
	if e.Responses {
		return fmt.Sprintf("role %q may not answer requests", e.Role)
	}
	return fmt.Sprintf("role %q has no %s grant of %q", e.Role, e.Rule.Kind, e.Rule.Subject)
}

func (e *NATSNotGrantedError) Unwrap() error { return ErrNotFound }

// GrantNATS grants one rule to role, as GrantNATSRules does.
func (db *DB) GrantNATS(ctx context.Context, role, kind, subject string) error {
	return db.GrantNATSRules(ctx, role, []NATSRule{{kind, subject}}, nil)
}

// GrantNATSRules lets role publish or subscribe to each subject of kind
// pub_allow or sub_allow, forbids it those of pub_deny and sub_deny, and,
// unless responses is nil, lets it answer requests within those limits.
// Granting what is already granted is not an error. A bad kind or subject
// is a *NATSKindError or *NATSSubjectError, a role missing from pg_roles a
// *RoleMissingError (even for a grant that exists: its role was dropped
// since).
//
// It is all or nothing: the rules are written in one transaction, so a
// subject the database refuses after others were written (one that passes
// CheckNATSSubject but not the column's encoding, say) leaves none of them
// granted.
func (db *DB) GrantNATSRules(ctx context.Context, role string, rules []NATSRule, responses *NATSResponseLimits) error {
	for _, r := range rules {
		if err := checkNATSKind(r.Kind); err != nil {
			return wrapf(err, "grant NATS %s %q to %q", r.Kind, r.Subject, role)
		}
		if err := CheckNATSSubject(r.Subject); err != nil {
			return wrapf(err, "grant NATS %s %q to %q", r.Kind, r.Subject, role)
		}
	}
	if responses != nil {
		if err := checkNATSResponses(true, responses.Max, responses.TTL); err != nil {
			return wrapf(err, "set NATS responses of %q", role)
		}
	}
	return pgx.BeginFunc(ctx, db.p(), func(tx pgx.Tx) error {
		for _, r := range rules {
			// On conflict the role is set again so that the role
			// trigger runs for an existing row as well.
			_, err := tx.Exec(ctx, `
				insert into auth.nats_permission (role, kind, subject)
				values ($1, $2, $3)
				on conflict (role, kind, subject) do update set role = excluded.role`,
				role, r.Kind, r.Subject)
			if err != nil {
				return fmt.Errorf("grant NATS %s %q to %q: %w", r.Kind, r.Subject, role, natsError(err, role, r.Kind, r.Subject))
			}
		}
		if responses != nil {
			return setNATSResponses(ctx, tx, role, true, responses.Max, responses.TTL)
		}
		return nil
	})
}

// RevokeNATS removes one grant, as RevokeNATSRules does. If role has no
// such grant, it is ErrNotFound.
func (db *DB) RevokeNATS(ctx context.Context, role, kind, subject string) error {
	return db.RevokeNATSRules(ctx, role, []NATSRule{{kind, subject}}, false)
}

// RevokeNATSRules removes rules from role and, if responses, its leave to
// answer requests. A rule given twice is revoked once.
//
// It is all or nothing: if role lacks one of them (it never had it, or
// another revocation took it meanwhile) the error is a
// *NATSNotGrantedError naming it, and the deletes made before it are
// rolled back with the transaction. Each delete locks the row it removes,
// so two revocations of one rule cannot both succeed.
func (db *DB) RevokeNATSRules(ctx context.Context, role string, rules []NATSRule, responses bool) error {
	for _, r := range rules {
		if err := checkNATSKind(r.Kind); err != nil {
			return wrapf(err, "revoke NATS %s %q from %q", r.Kind, r.Subject, role)
		}
	}
	return pgx.BeginFunc(ctx, db.p(), func(tx pgx.Tx) error {
		for i, r := range rules {
			if slices.Contains(rules[:i], r) {
				continue
			}
			tag, err := tx.Exec(ctx, `
				delete from auth.nats_permission
				 where role = $1 and kind = $2 and subject = $3`, role, r.Kind, r.Subject)
			if err == nil && tag.RowsAffected() == 0 {
				err = &NATSNotGrantedError{Role: role, Rule: r}
			}
			if err != nil {
				return wrapf(err, "revoke NATS %s %q from %q", r.Kind, r.Subject, role)
			}
		}
		if !responses {
			return nil
		}
		// Only a row that allows responses counts: one with
		// allow_responses false (written with plain SQL) allows none.
		var n int
		err := tx.QueryRow(ctx, dropResponsesSQL, role).Scan(&n)
		if err == nil && n == 0 {
			err = &NATSNotGrantedError{Role: role, Responses: true}
		}
		if err != nil {
			return wrapf(err, "revoke NATS responses from %q", role)
		}
		return nil
	})
}

// SetNATSResponses sets whether role may answer requests, at most max
// times each (0: the NATS server's default, 1) within ttl (0: the
// server's default, 2 minutes).
// allow=false removes the setting; max and ttl must then be 0. A role
// missing from pg_roles is a *RoleMissingError.
func (db *DB) SetNATSResponses(ctx context.Context, role string, allow bool, max int, ttl time.Duration) error {
	if err := checkNATSResponses(allow, max, ttl); err != nil {
		return wrapf(err, "set NATS responses of %q", role)
	}
	return setNATSResponses(ctx, db.p(), role, allow, max, ttl)
}

func checkNATSResponses(allow bool, max int, ttl time.Duration) error {
	switch {
	case max < 0 || int64(max) > 1<<31-1:
		return fmt.Errorf("max responses %d out of range", max)
	case ttl < 0 || ttl%time.Microsecond != 0:
		return fmt.Errorf("response ttl %s must be positive, in whole microseconds", ttl)
	case !allow && (max != 0 || ttl != 0):
		return errors.New("a limit on responses needs allow responses")
	}
	return nil
}

// dropResponsesSQL takes role $1's leave to answer requests, and says
// whether it had it. Its auth.nats_role row goes, unless it still says
// something else (require_mfa).
const dropResponsesSQL = `
		with gone as (
		    delete from auth.nats_role where role = $1 and allow_responses and not require_mfa
		    returning 1
		), kept as (
		    update auth.nats_role
		       set allow_responses = false, max_responses = null, response_ttl = null
		     where role = $1 and allow_responses and require_mfa
		    returning 1
		)
		select (select count(*) from gone) + (select count(*) from kept)`

// execer runs a statement: the pool, or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// setNATSResponses is SetNATSResponses on q, its arguments checked.
func setNATSResponses(ctx context.Context, q execer, role string, allow bool, max int, ttl time.Duration) error {
	var err error
	if allow {
		_, err = q.Exec(ctx, `
			insert into auth.nats_role (role, allow_responses, max_responses, response_ttl)
			values ($1, true, nullif($2::integer, 0), nullif($3::interval, interval '0'))
			on conflict (role) do update
			   set role = excluded.role, allow_responses = true,
			       max_responses = excluded.max_responses, response_ttl = excluded.response_ttl`,
			role, max, ttl)
	} else {
		_, err = q.Exec(ctx, dropResponsesSQL, role)
	}
	if err != nil {
		return fmt.Errorf("set NATS responses of %q: %w", role, natsError(err, role, "", ""))
	}
	return nil
}

// NATSGrants lists every grant, by role, kind and subject.
func (db *DB) NATSGrants(ctx context.Context) ([]NATSGrant, error) {
	rows, _ := db.p().Query(ctx, `
		select p.role::text, p.kind, p.subject,
		       exists (select 1 from pg_roles r where r.rolname = p.role) as role_exists
		  from auth.nats_permission p
		 order by p.role collate "C", p.kind, p.subject collate "C"`)
	grants, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NATSGrant])
	if err != nil {
		return nil, wrapf(err, "list NATS grants")
	}
	return grants, nil
}

// NATSResponseSettings lists the settings of every role that has some
// (responses, require_mfa), by role.
func (db *DB) NATSResponseSettings(ctx context.Context) ([]NATSResponses, error) {
	rows, _ := db.p().Query(ctx, `
		select n.role::text,
		       exists (select 1 from pg_roles r where r.rolname = n.role) as role_exists,
		       n.allow_responses, coalesce(n.max_responses, 0), coalesce(n.response_ttl, interval '0'),
		       n.require_mfa
		  from auth.nats_role n
		 order by n.role collate "C"`)
	settings, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NATSResponses])
	if err != nil {
		return nil, wrapf(err, "list NATS response settings")
	}
	return settings, nil
}

// natsError turns the constraint errors of auth.nats_permission and
// auth.nats_role into typed errors.
func natsError(err error, role, kind, subject string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if refused := roleError(pgErr, role); refused != nil {
		return refused
	}
	switch {
	case pgErr.Code == "23514" && pgErr.ConstraintName == "nats_permission_subject_check":
		return &NATSSubjectError{Subject: subject, Reason: "refused by the database"}
	case pgErr.Code == "23514" && pgErr.ConstraintName == "nats_permission_kind_check":
		return &NATSKindError{Kind: kind}
	}
	return err
}
