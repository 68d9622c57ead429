package workload_test

import (
	"context"
	"testing"
	"time"

	"authd/natsauth/workload"
	"authd/store"
	"authd/store/storetest"
)

// TestMapping: a mapped service account gets its role's grants (the exact
// mapping over its namespace's), an unmapped one nothing; a change
// applies within the TTL, or at once after ForgetRole (the callout's
// authd_nats listener).
func TestMapping(t *testing.T) {
	t.Parallel()
	db := storetest.NewDB(t)
	ctx := context.Background()
	team, special := storetest.NewRole(t), storetest.NewRole(t)
	for _, g := range []struct{ role, kind, subject string }{
		{team, store.NATSPubAllow, "my-app.>"},
		{team, store.NATSSubAllow, "my-app.>"},
		{special, store.NATSSubAllow, "special.>"},
		{special, store.NATSPubDeny, "special.secret"},
	} {
		if err := db.GrantNATS(ctx, g.role, g.kind, g.subject); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetNATSResponses(ctx, team, true, 3, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.MapNATSWorkload(ctx, "my-app/*", team); err != nil {
		t.Fatal(err)
	}
	if err := db.MapNATSWorkload(ctx, "my-app/my-nats-client", special); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	m := workload.NewMapping(db, 5*time.Second, clk.now)

	teamPerms := store.NATSPermissions{PubAllow: []string{"my-app.>"}, PubDeny: []string{}, SubAllow: []string{"my-app.>"}, SubDeny: []string{},
		AllowResponses: true, ResponseMax: 3}
	specialPerms := store.NATSPermissions{PubAllow: []string{}, PubDeny: []string{"special.secret"}, SubAllow: []string{"special.>"}, SubDeny: []string{}}
	worker := workload.Identity{Namespace: "my-app", ServiceAccount: "worker"}
	checkPerms(t, m, client, specialPerms)
	checkPerms(t, m, worker, teamPerms)
	checkPerms(t, m, workload.Identity{Namespace: "other", ServiceAccount: "worker"}, none)

	// Unmap the exact one: cached until the TTL, then the namespace's.
	if _, err := db.UnmapNATSWorkload(ctx, "my-app/my-nats-client"); err != nil {
		t.Fatal(err)
	}
	clk.add(5*time.Second - time.Nanosecond)
	checkPerms(t, m, client, specialPerms)
	clk.add(time.Nanosecond)
	checkPerms(t, m, client, teamPerms)

	// A grant and an unmapping, announced: at once.
	if err := db.GrantNATS(ctx, team, store.NATSPubAllow, "shared.>"); err != nil {
		t.Fatal(err)
	}
	m.ForgetRole(team)
	teamPerms.PubAllow = []string{"my-app.>", "shared.>"}
	checkPerms(t, m, worker, teamPerms)
	if _, err := db.UnmapNATSWorkload(ctx, "my-app/*"); err != nil {
		t.Fatal(err)
	}
	m.ForgetRole(team)
	checkPerms(t, m, worker, none)

	// A name that is no Kubernetes name never reaches the database.
	if _, err := m.Permissions(ctx, workload.Identity{Namespace: "x", ServiceAccount: "../y"}); err == nil {
		t.Error("bad identity: got no error")
	}
}
