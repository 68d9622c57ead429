package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"authd/store"
	"authd/store/storetest"
)

// TestNATSWorkloadMapping: the most specific mapping wins (ns/name over
// ns/*); roles no token may carry and missing ones are refused by the
// role trigger, bad patterns by Go and by the table; unmap says what it
// removed.
func TestNATSWorkloadMapping(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	db := storetest.Open(t, url)
	ctx := context.Background()
	team, special := storetest.NewRole(t), storetest.NewRole(t)

	role := func(ns, name string) (string, error) { return db.NATSWorkloadRole(ctx, ns, name) }
	if _, err := role("my-app", "client"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unmapped: got %v, want ErrNotFound", err)
	}
	for _, m := range [][2]string{{"my-app/*", team}, {"my-app/client", special}, {"other/client", team}} {
		if err := db.MapNATSWorkload(ctx, m[0], m[1]); err != nil {
			t.Fatalf("map %s %s: %v", m[0], m[1], err)
		}
	}
	for _, c := range []struct{ ns, name, want string }{
		{"my-app", "client", special}, // exact over the namespace's
		{"my-app", "worker", team},
		{"other", "client", team},
	} {
		if got, err := role(c.ns, c.name); err != nil || got != c.want {
			t.Errorf("role of %s/%s: got %q, %v; want %q", c.ns, c.name, got, err, c.want)
		}
	}
	if _, err := role("other", "worker"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("other/worker: got %v, want ErrNotFound", err)
	}
	// A mapped name that is a pattern elsewhere matches only itself.
	if _, err := role("my-app-x", "client"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("my-app-x/client: got %v, want ErrNotFound", err)
	}

	// Map again: the role is replaced.
	if err := db.MapNATSWorkload(ctx, "my-app/client", team); err != nil {
		t.Fatal(err)
	}
	if got, _ := role("my-app", "client"); got != team {
		t.Errorf("after remapping: got %q, want %q", got, team)
	}

	var missing *store.RoleMissingError
	if err := db.MapNATSWorkload(ctx, "my-app/x", "no_such_role_k8s"); !errors.As(err, &missing) {
		t.Errorf("missing role: got %v, want *RoleMissingError", err)
	}
	var privileged *store.RolePrivilegedError
	for _, r := range []string{"postgres", storetest.AppRole, "pg_read_all_data"} {
		if err := db.MapNATSWorkload(ctx, "my-app/x", r); !errors.As(err, &privileged) {
			t.Errorf("role %s: got %v, want *RolePrivilegedError", r, err)
		}
	}
	var bad *store.NATSWorkloadPatternError
	for _, p := range []string{"my-app", "my-app/", "/x", "My-App/x", "my-app/*x", "*/x", "my-app/x/y", "my_app/x", "-a/x", "a/x.", string(make([]byte, 64)) + "/x"} {
		if err := db.MapNATSWorkload(ctx, p, team); !errors.As(err, &bad) {
			t.Errorf("pattern %q: got %v, want *NATSWorkloadPatternError", p, err)
		}
	}
	// The table refuses them too, for plain SQL.
	conn := storetest.Connect(t, url)
	for _, p := range []string{"my-app/*x", "a/x.", "*/*"} {
		_, err := conn.Exec(ctx, `insert into auth.nats_workload (pattern, role) values ($1, $2)`, p, team)
		if sqlState(err) != "23514" {
			t.Errorf("insert pattern %q: got %v, want check_violation", p, err)
		}
	}

	got, err := db.NATSWorkloadMappings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.NATSWorkloadMapping{{"my-app/*", team, true}, {"my-app/client", team, true}, {"other/client", team, true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mappings:\ngot  %+v\nwant %+v", got, want)
	}

	if r, err := db.UnmapNATSWorkload(ctx, "my-app/client"); err != nil || r != team {
		t.Errorf("unmap: got %q, %v; want %q", r, err, team)
	}
	if _, err := db.UnmapNATSWorkload(ctx, "my-app/client"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unmap twice: got %v, want ErrNotFound", err)
	}
	if got, _ := role("my-app", "client"); got != team {
		t.Errorf("after unmapping the exact one: got %q, want the namespace's %q", got, team)
	}
}

// TestNATSWorkloadNotify: a mapping change is announced on authd_nats
// with the old and the new role, so that a listening callout drops them.
func TestNATSWorkloadNotify(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	db := storetest.Open(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := storetest.NewRole(t), storetest.NewRole(t)
	listener := storetest.Connect(t, url)
	if _, err := listener.Exec(ctx, "listen authd_nats"); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		n, err := listener.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("wait for a notification: %v", err)
		}
		return n.Payload
	}
	if err := db.MapNATSWorkload(ctx, "ns/*", a); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != a {
		t.Errorf("map: got %q, want %q", got, a)
	}
	if err := db.MapNATSWorkload(ctx, "ns/*", b); err != nil {
		t.Fatal(err)
	}
	if got := map[string]bool{next(): true, next(): true}; !got[a] || !got[b] {
		t.Errorf("remap: got %v, want %s and %s", got, a, b)
	}
	if _, err := db.UnmapNATSWorkload(ctx, "ns/*"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != b {
		t.Errorf("unmap: got %q, want %q", got, b)
	}
}
