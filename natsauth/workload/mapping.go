package workload

import (
	"context"
	"errors"
	"time"

	"authd/identity"
	"authd/store"
)

// DefaultMappingTTL bounds how long a mapping or a role's grants read from
// the database are used when a change notification was missed; a callout
// that listens on authd_nats drops them at once (ForgetRole).
const DefaultMappingTTL = time.Second

// maxRoles bounds the role cache, as in natsauth.
const maxRoles = 10000

// Mapping gives a workload the NATS grants of the authd role its service
// account is mapped to (`authd nats map`): the mapping NAMESPACE/NAME if
// there is one, else NAMESPACE/*. An unmapped service account gets no
// rights.
type Mapping struct {
	db  *store.DB
	ttl time.Duration
	now func() time.Time
	// workloads maps "namespace/name" to its role ("" when unmapped);
	// roles a role to its grants, shared by every service account mapped
	// to it.
	workloads *identity.Cache[string, string]
	roles     *identity.Cache[string, store.NATSPermissions]
}

// NewMapping returns a Mapping reading db, each read used for ttl
// (DefaultMappingTTL when 0) on the clock now (time.Now when nil).
func NewMapping(db *store.DB, ttl time.Duration, now func() time.Time) *Mapping {
	if ttl <= 0 {
		ttl = DefaultMappingTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Mapping{
		db: db, ttl: ttl, now: now,
		workloads: identity.NewCache[string, string](maxServiceAccounts, now),
		roles:     identity.NewCache[string, store.NATSPermissions](maxRoles, now),
	}
}

// Permissions returns the grants of the role id's service account is
// mapped to, or none (empty lists) when it is not mapped.
func (m *Mapping) Permissions(ctx context.Context, id Identity) (store.NATSPermissions, error) {
	key, err := workloadKey(id)
	if err != nil {
		return store.NATSPermissions{}, err
	}
	role, err := m.workloads.Load(ctx, key, func(ctx context.Context) (string, time.Time, error) {
		loadedAt := m.now()
		role, err := m.db.NATSWorkloadRole(ctx, id.Namespace, id.ServiceAccount)
		if errors.Is(err, store.ErrNotFound) {
			role, err = "", nil
		}
		return role, loadedAt.Add(m.ttl), err
	})
	if err != nil {
		return store.NATSPermissions{}, err
	}
	if role == "" {
		return noPermissions(), nil
	}
	return m.roles.Load(ctx, role, func(ctx context.Context) (store.NATSPermissions, time.Time, error) {
		loadedAt := m.now()
		p, err := m.db.NATSPermissions(ctx, role)
		return p, loadedAt.Add(m.ttl), err
	})
}

// ForgetRole drops role's cached grants and every cached mapping, for a
// notification on authd_nats: a grant to role or a mapping to or from it
// changed, and a mapping's payload names its roles, not its service
// accounts.
func (m *Mapping) ForgetRole(role string) {
	m.roles.Delete(role)
	m.workloads.Clear()
}

// ForgetAll drops everything cached, for when notifications may have
// been missed.
func (m *Mapping) ForgetAll() {
	m.roles.Clear()
	m.workloads.Clear()
}
