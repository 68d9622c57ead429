package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"authd/seed"
)

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || len(args) > 2 || (len(args) == 2) != (args[0] == "down-to") {
		return errors.New("usage: authd migrate up|down|down-to VERSION|status")
	}
	db, err := openDB(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := db.Migrator()
	if err != nil {
		return err
	}
	switch args[0] {
	case "up":
		res, err := p.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		if len(res) == 0 {
			fmt.Fprintln(stdout, "migrate: already up to date")
		}
		for _, r := range res {
			fmt.Fprintf(stdout, "migrate: applied %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
		}
	case "down":
		r, err := p.Down(ctx)
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		fmt.Fprintf(stdout, "migrate: reverted %s\n", r.Source.Path)
	case "down-to":
		v, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || v < 0 {
			return fmt.Errorf("migrate down-to: want a version number, got %q", args[1])
		}
		res, err := p.DownTo(ctx, v)
		if err != nil {
			return fmt.Errorf("migrate down-to %d: %w", v, err)
		}
		if len(res) == 0 {
			fmt.Fprintf(stdout, "migrate: already at or below version %d\n", v)
		}
		for _, r := range res {
			fmt.Fprintf(stdout, "migrate: reverted %s\n", r.Source.Path)
		}
	case "status":
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
		for _, s := range st {
			at := "-"
			if !s.AppliedAt.IsZero() {
				at = s.AppliedAt.UTC().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, at, s.Source.Path)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("unknown migrate command %q: want up, down, down-to or status", args[0])
	}
	return nil
}

func runSeed(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	db, err := openDB(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := seed.Apply(ctx, db); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seed: demo user %q (password %q, role %q) and plans free, free_trial, pro are in place\n", seed.DemoUser, seed.DemoPassword, seed.DemoRole)
	return nil
}
