package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/pressly/goose/v3"

	"authd/seed"
	"authd/store"
)

// withMigrator runs f with the migrations of DATABASE_URL's database
// (reached through AUTHD_DB_DIRECT_URL past a transaction-mode pooler).
func withMigrator(ctx context.Context, c *cli, f func(p *goose.Provider) error) error {
	db, err := openMigrationDB(ctx, c.getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := db.Migrator()
	if err != nil {
		return err
	}
	return f(p)
}

func migrateUp(ctx context.Context, c *cli, _ []string) error {
	return withMigrator(ctx, c, func(p *goose.Provider) error {
		res, err := p.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		if len(res) == 0 {
			fmt.Fprintln(c.stdout, "migrate: already up to date")
		}
		for _, r := range res {
			fmt.Fprintf(c.stdout, "migrate: applied %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
		}
		return nil
	})
}

func migrateDown(ctx context.Context, c *cli, _ []string) error {
	return withMigrator(ctx, c, func(p *goose.Provider) error {
		r, err := p.Down(ctx)
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		fmt.Fprintf(c.stdout, "migrate: reverted %s\n", r.Source.Path)
		return nil
	})
}

func migrateDownTo(ctx context.Context, c *cli, args []string) error {
	v, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || v < 0 {
		return &usageError{"migrate down-to", fmt.Sprintf("want a version number, got %q", args[0])}
	}
	return withMigrator(ctx, c, func(p *goose.Provider) error {
		res, err := p.DownTo(ctx, v)
		if err != nil {
			return fmt.Errorf("migrate down-to %d: %w", v, err)
		}
		if len(res) == 0 {
			fmt.Fprintf(c.stdout, "migrate: already at or below version %d\n", v)
		}
		for _, r := range res {
			fmt.Fprintf(c.stdout, "migrate: reverted %s\n", r.Source.Path)
		}
		return nil
	})
}

func migrateStatus(ctx context.Context, c *cli, _ []string) error {
	return withMigrator(ctx, c, func(p *goose.Provider) error {
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
		for _, s := range st {
			at := "-"
			if !s.AppliedAt.IsZero() {
				at = s.AppliedAt.UTC().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, at, s.Source.Path)
		}
		return tw.Flush()
	})
}

func runSeed(ctx context.Context, c *cli, _ []string) error {
	return withDB(ctx, c, func(db *store.DB) error {
		if err := seed.Apply(ctx, db); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "seed: demo user %q (password %q, role %q) and plans free, free_trial, pro are in place\n", seed.DemoUser, seed.DemoPassword, seed.DemoRole)
		return nil
	})
}
