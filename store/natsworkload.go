package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A Kubernetes namespace is a DNS label (RFC 1123), a service account name
// a DNS subdomain: the same rule as the check of auth.nats_workload.pattern.
var (
	k8sNamespace = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	k8sName      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// NATSWorkloadPatternError reports a pattern that is neither
// NAMESPACE/NAME nor NAMESPACE/* of a Kubernetes service account.
type NATSWorkloadPatternError struct{ Pattern, Reason string }

func (e *NATSWorkloadPatternError) Error() string {
	return fmt.Sprintf("bad workload pattern %q: %s (want NAMESPACE/SERVICEACCOUNT or NAMESPACE/*)", e.Pattern, e.Reason)
}

// CheckNATSWorkloadPattern returns a *NATSWorkloadPatternError unless p is
// NAMESPACE/NAME or NAMESPACE/* with a Kubernetes namespace (a DNS label:
// lowercase letters, digits and '-', at most 63) and service account name
// (a DNS subdomain: also '.', at most 253). It is the rule of the
// table's check, checked without the database.
func CheckNATSWorkloadPattern(p string) error {
	ns, name, ok := strings.Cut(p, "/")
	switch {
	case !ok:
		return &NATSWorkloadPatternError{p, "no '/'"}
	case len(ns) > 63 || !k8sNamespace.MatchString(ns):
		return &NATSWorkloadPatternError{p, "the namespace is not a Kubernetes namespace name"}
	case name == "*":
		return nil
	case len(name) > 253 || !k8sName.MatchString(name):
		return &NATSWorkloadPatternError{p, "the service account is not a Kubernetes name or *"}
	}
	return nil
}

// NATSWorkloadMapping is a row of auth.nats_workload: the service
// accounts Pattern names get Role's NATS grants.
type NATSWorkloadMapping struct {
	Pattern, Role string
	// RoleExists reports whether Role is in pg_roles right now.
	RoleExists bool
}

// MapNATSWorkload gives the service accounts pattern names (NAMESPACE/NAME
// or NAMESPACE/*) role's NATS grants, replacing the role it had. A bad
// pattern is a *NATSWorkloadPatternError, a role missing from pg_roles a
// *RoleMissingError, one no token may carry a *RolePrivilegedError.
func (db *DB) MapNATSWorkload(ctx context.Context, pattern, role string) error {
	if err := CheckNATSWorkloadPattern(pattern); err != nil {
		return wrapf(err, "map NATS workload %q to %q", pattern, role)
	}
	// One statement: the row is written whole or not at all. On conflict
	// the role is set again so that the role trigger runs for it.
	_, err := db.p().Exec(ctx, `
		insert into auth.nats_workload (pattern, role) values ($1, $2)
		on conflict (pattern) do update set role = excluded.role`, pattern, role)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			if refused := roleError(pgErr, role); refused != nil {
				err = refused
			} else if pgErr.Code == "23514" && pgErr.ConstraintName == "nats_workload_pattern_check" {
				err = &NATSWorkloadPatternError{pattern, "refused by the database"}
			}
		}
		return wrapf(err, "map NATS workload %q to %q", pattern, role)
	}
	return nil
}

// UnmapNATSWorkload removes pattern's mapping and returns the role it had;
// ErrNotFound if there is none.
func (db *DB) UnmapNATSWorkload(ctx context.Context, pattern string) (string, error) {
	var role string
	err := db.p().QueryRow(ctx, `delete from auth.nats_workload where pattern = $1 returning role::text`, pattern).Scan(&role)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return "", wrapf(err, "unmap NATS workload %q", pattern)
	}
	return role, nil
}

// NATSWorkloadMappings lists every mapping, by pattern.
func (db *DB) NATSWorkloadMappings(ctx context.Context) ([]NATSWorkloadMapping, error) {
	rows, _ := db.p().Query(ctx, `
		select w.pattern, w.role::text,
		       exists (select 1 from pg_roles r where r.rolname = w.role) as role_exists
		  from auth.nats_workload w
		 order by w.pattern collate "C"`)
	m, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NATSWorkloadMapping])
	if err != nil {
		return nil, wrapf(err, "list NATS workload mappings")
	}
	return m, nil
}

// NATSWorkloadRole returns the role of service account name in namespace
// ns: that of the mapping ns/name if there is one, else that of ns/*.
// ErrNotFound if neither exists.
func (db *DB) NATSWorkloadRole(ctx context.Context, ns, name string) (string, error) {
	var role string
	// Exact first: "ns/name" sorts after "ns/*" only by this key.
	err := db.p().QueryRow(ctx, `
		select role::text from auth.nats_workload
		 where pattern in ($1 || '/' || $2, $1 || '/*')
		 order by pattern = $1 || '/' || $2 desc
		 limit 1`, ns, name).Scan(&role)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return "", wrapf(err, "find the NATS role of workload %s/%s", ns, name)
	}
	return role, nil
}
