package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"authd/migrations"
)

// Migrator runs authd's embedded migrations on db. It keeps goose's default
// version table, so the stock goose CLI and `authd migrate` agree on which
// migrations ran, and takes a session advisory lock so that two instances
// migrating at once do not both apply the same file.
func (db *DB) Migrator() (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("create migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(db.p()), migrations.FS,
		goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// Pending reports whether some migration has not been applied yet.
func (db *DB) Pending(ctx context.Context) (bool, error) {
	p, err := db.Migrator()
	if err != nil {
		return false, err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return false, fmt.Errorf("check migrations: %w", err)
	}
	return pending, nil
}
