// Package seed applies authd's development demo data: the role
// basic_subscriber and the user demo with password demo, and the API-key
// plans of the SuperStack nginx gateway (free, free_trial, pro with roles
// web_anon, web_trial, web_paid). It is for laptops and compose, never for
// production, and is idempotent.
package seed

import (
	"context"
	_ "embed"
	"fmt"

	"authd/store"
)

//go:embed demo.sql
var demoSQL string

// Demo credentials created by Apply, printed by `make run`.
const (
	DemoUser     = "demo"
	DemoPassword = "demo"
	DemoRole     = "basic_subscriber"
)

// Apply creates the demo roles, user and plans that are missing.
func Apply(ctx context.Context, db *store.DB) error {
	if _, err := db.Pool().Exec(ctx, demoSQL); err != nil {
		return fmt.Errorf("apply demo seed: %w", err)
	}
	return nil
}
