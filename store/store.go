// Package store is authd's PostgreSQL data layer: users, sessions and
// refresh tokens in the auth schema. Every rule that must hold across
// several authd processes (one winner in a refresh race, a role that must
// exist) is enforced in SQL.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned when the row asked for does not exist.
var ErrNotFound = errors.New("not found")

// DB is the auth schema on one connection pool, which Reconnect may swap
// for a pool to another URL (a rotated database password) at any time.
type DB struct {
	pool atomic.Pointer[pgxpool.Pool]
}

func (db *DB) p() *pgxpool.Pool { return db.pool.Load() }

// Open connects to databaseURL and checks that the server answers, so an
// unreachable database fails at start-up rather than on the first request.
func Open(ctx context.Context, databaseURL string) (*DB, error) {
	pool, err := connect(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	db := &DB{}
	db.pool.Store(pool)
	return db, nil
}

// Reconnect opens a pool to databaseURL and, once it answers, makes it the
// pool every new query uses. The old pool is closed after the queries
// running on it finish, so no request fails during the switch. On error
// the old pool stays.
func (db *DB) Reconnect(ctx context.Context, databaseURL string) error {
	pool, err := connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	old := db.pool.Swap(pool)
	// Close waits for acquired connections to be released.
	go old.Close()
	return nil
}

func connect(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's message can echo the URL, password included: keep only
		// the fact that it did not parse.
		return nil, errors.New("parse DATABASE_URL: invalid connection string")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create connection pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s@%s:%d/%s: %w",
			cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, unwrapConnectError(err))
	}
	return pool, nil
}

// unwrapConnectError keeps the last, most specific cause of a failed
// connection ("connection refused", "password authentication failed").
func unwrapConnectError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr
	}
	for {
		// With sslmode=prefer pgx tries twice and joins both errors;
		// the last attempt's is the one to show.
		if multi, ok := err.(interface{ Unwrap() []error }); ok {
			if errs := multi.Unwrap(); len(errs) > 0 {
				err = errs[len(errs)-1]
				continue
			}
		}
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// Pool exposes the connection pool for migrations and health checks.
func (db *DB) Pool() *pgxpool.Pool { return db.p() }

// Close closes every connection.
func (db *DB) Close() { db.p().Close() }

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.p().Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}
