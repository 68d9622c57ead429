package store

import (
	"context"
	"errors"
	"fmt"
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
}

// NATSGrant is a row of auth.nats_permission.
type NATSGrant struct {
	Role, Kind, Subject string
	// RoleExists reports whether Role is in pg_roles right now: the
	// grants of a dropped role stay until revoked.
	RoleExists bool
}

// NATSResponses is a row of auth.nats_role: a role's response settings.
type NATSResponses struct {
	Role       string
	RoleExists bool
	Allow      bool
	Max        int           // 0: the NATS server's default, 1
	TTL        time.Duration // 0: the NATS server's default, 2 minutes
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
		       coalesce(r.response_ttl, interval '0')
		  from (select $1::name as role) x
		  left join auth.nats_role r on r.role = x.role
		  left join auth.nats_permission p on p.role = x.role
		 group by r.allow_responses, r.max_responses, r.response_ttl`, role).
		Scan(&p.PubAllow, &p.PubDeny, &p.SubAllow, &p.SubDeny, &p.AllowResponses, &p.ResponseMax, &p.ResponseTTL)
	if err != nil {
		return NATSPermissions{}, fmt.Errorf("load NATS permissions of %q: %w", role, err)
	}
	return p, nil
}

// GrantNATS lets role publish or subscribe to subject (kind pub_allow or
// sub_allow), or forbids it (pub_deny, sub_deny). Granting what is already
// granted is not an error. A bad kind or subject is a *NATSKindError or
// *NATSSubjectError, a role missing from pg_roles a *RoleMissingError
// (even for a grant that exists: its role was dropped since).
func (db *DB) GrantNATS(ctx context.Context, role, kind, subject string) error {
	if err := checkNATSKind(kind); err != nil {
		return fmt.Errorf("grant NATS %s %q to %q: %w", kind, subject, role, err)
	}
	if err := CheckNATSSubject(subject); err != nil {
		return fmt.Errorf("grant NATS %s %q to %q: %w", kind, subject, role, err)
	}
	// On conflict the role is set again so that the role trigger runs
	// for an existing row as well.
	_, err := db.p().Exec(ctx, `
		insert into auth.nats_permission (role, kind, subject)
		values ($1, $2, $3)
		on conflict (role, kind, subject) do update set role = excluded.role`,
		role, kind, subject)
	if err != nil {
		return fmt.Errorf("grant NATS %s %q to %q: %w", kind, subject, role, natsError(err, role, kind, subject))
	}
	return nil
}

// RevokeNATS removes one grant. If role has no such grant, it is
// ErrNotFound.
func (db *DB) RevokeNATS(ctx context.Context, role, kind, subject string) error {
	if err := checkNATSKind(kind); err != nil {
		return fmt.Errorf("revoke NATS %s %q from %q: %w", kind, subject, role, err)
	}
	tag, err := db.p().Exec(ctx, `
		delete from auth.nats_permission
		 where role = $1 and kind = $2 and subject = $3`, role, kind, subject)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("revoke NATS %s %q from %q: %w", kind, subject, role, err)
	}
	return nil
}

// SetNATSResponses sets whether role may answer requests, at most max
// times each (0: the NATS server's default, 1) within ttl (0: the
// server's default, 2 minutes).
// allow=false removes the setting; max and ttl must then be 0. A role
// missing from pg_roles is a *RoleMissingError.
func (db *DB) SetNATSResponses(ctx context.Context, role string, allow bool, max int, ttl time.Duration) error {
	switch {
	case max < 0 || int64(max) > 1<<31-1:
		return fmt.Errorf("set NATS responses of %q: max responses %d out of range", role, max)
	case ttl < 0 || ttl%time.Microsecond != 0:
		return fmt.Errorf("set NATS responses of %q: response ttl %s must be positive, in whole microseconds", role, ttl)
	case !allow && (max != 0 || ttl != 0):
		return fmt.Errorf("set NATS responses of %q: a limit on responses needs allow responses", role)
	}
	var err error
	if allow {
		_, err = db.p().Exec(ctx, `
			insert into auth.nats_role (role, allow_responses, max_responses, response_ttl)
			values ($1, true, nullif($2::integer, 0), nullif($3::interval, interval '0'))
			on conflict (role) do update
			   set role = excluded.role, allow_responses = true,
			       max_responses = excluded.max_responses, response_ttl = excluded.response_ttl`,
			role, max, ttl)
	} else {
		_, err = db.p().Exec(ctx, `delete from auth.nats_role where role = $1`, role)
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
		return nil, fmt.Errorf("list NATS grants: %w", err)
	}
	return grants, nil
}

// NATSResponseSettings lists the response settings of every role that has
// some, by role.
func (db *DB) NATSResponseSettings(ctx context.Context) ([]NATSResponses, error) {
	rows, _ := db.p().Query(ctx, `
		select n.role::text,
		       exists (select 1 from pg_roles r where r.rolname = n.role) as role_exists,
		       n.allow_responses, coalesce(n.max_responses, 0), coalesce(n.response_ttl, interval '0')
		  from auth.nats_role n
		 order by n.role collate "C"`)
	settings, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NATSResponses])
	if err != nil {
		return nil, fmt.Errorf("list NATS response settings: %w", err)
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
	switch {
	case pgErr.Code == "23503" && pgErr.ConstraintName == "": // check_role_exists trigger
		return &RoleMissingError{Role: role}
	case pgErr.Code == "23514" && pgErr.ConstraintName == "nats_permission_subject_check":
		return &NATSSubjectError{Subject: subject, Reason: "refused by the database"}
	case pgErr.Code == "23514" && pgErr.ConstraintName == "nats_permission_kind_check":
		return &NATSKindError{Kind: kind}
	}
	return err
}
