// Package store is authd's PostgreSQL data layer: users, sessions and
// refresh tokens in the auth schema. Every rule that must hold across
// several authd processes (one winner in a refresh race, a role that must
// exist) is enforced in SQL.
package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned when the row asked for does not exist.
var ErrNotFound = errors.New("not found")

// DB is the auth schema on one connection pool, which Reconnect may swap
// for a pool to another URL (a rotated database password) at any time.
type DB struct {
	pool atomic.Pointer[pgxpool.Pool]
	opts options
	// rotations gathers concurrent refreshes into shared commits
	// (groupcommit.go).
	rotations rotationQueue
}

// Option changes how Open connects.
type Option func(*options)

type options struct {
	statementTimeout time.Duration
	pooler           Pooler
	directURL        string
}

// WithStatementTimeout makes every statement fail after d (unless the URL
// sets statement_timeout itself): for serve, so a stuck query fails its
// request instead of holding a connection and the client. Migrations run
// without it. Through a transaction-mode pooler it is not sent (see
// PoolerTransaction).
func WithStatementTimeout(d time.Duration) Option {
	return func(o *options) { o.statementTimeout = d }
}

// Pooler says what stands between authd and PostgreSQL (AUTHD_DB_POOLER).
type Pooler int

const (
	// PoolerNone: DATABASE_URL reaches PostgreSQL itself, or a pooler in
	// session mode, which behaves the same.
	PoolerNone Pooler = iota
	// PoolerTransaction: DATABASE_URL reaches a pooler in transaction mode
	// (PgBouncer, Supavisor, RDS Proxy), which hands each transaction to
	// whichever server connection is free. authd then keeps no state in
	// a session: no startup parameters (PgBouncer refuses
	// statement_timeout), no named prepared statements (another client's
	// connection would not have them, or would already have one of the
	// same name), and no LISTEN except on WithDirectURL's connection.
	PoolerTransaction
)

// ParsePooler reads AUTHD_DB_POOLER's value: "" or "none", "transaction".
func ParsePooler(s string) (Pooler, error) {
	switch s {
	case "", "none":
		return PoolerNone, nil
	case "transaction":
		return PoolerTransaction, nil
	}
	return PoolerNone, fmt.Errorf("unknown pooler mode %q: want none or transaction", s)
}

// WithPooler connects as the pooler in front of PostgreSQL requires.
func WithPooler(p Pooler) Option {
	return func(o *options) { o.pooler = p }
}

// WithDirectURL gives Listen a URL that reaches PostgreSQL without a
// transaction-mode pooler (AUTHD_DB_DIRECT_URL): LISTEN needs a session
// of its own for as long as it listens.
func WithDirectURL(url string) Option {
	return func(o *options) { o.directURL = url }
}

func (db *DB) p() *pgxpool.Pool { return db.pool.Load() }

// Open connects to databaseURL and checks that the server answers, so an
// unreachable database fails at start-up rather than on the first request.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*DB, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	pool, err := connect(ctx, databaseURL, o)
	if err != nil {
		return nil, err
	}
	db := &DB{opts: o}
	db.pool.Store(pool)
	return db, nil
}

// Reconnect opens a pool to databaseURL and, once it answers, makes it the
// pool every new query uses. The old pool is closed after the queries
// running on it finish, so no request fails during the switch. On error
// the old pool stays.
func (db *DB) Reconnect(ctx context.Context, databaseURL string) error {
	pool, err := connect(ctx, databaseURL, db.opts)
	if err != nil {
		return err
	}
	old := db.pool.Swap(pool)
	// Close waits for acquired connections to be released.
	go old.Close()
	return nil
}

func connect(ctx context.Context, databaseURL string, o options) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's message can echo the URL, password included: keep only
		// the fact that it did not parse.
		return nil, errInvalidURL
	}
	applyPoolDefaults(cfg, databaseURL, o)
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

var errInvalidURL = errors.New("parse DATABASE_URL: invalid connection string")

// Transient reports whether a failed Open or Reconnect may succeed if tried
// again later: the server cannot be reached yet (refused, unresolvable,
// timed out), is starting up or shutting down (SQLSTATE 57P*), or has no
// connection slot free (53300). A bad URL, a refused password or a missing
// database is not transient: waiting does not fix it.
func Transient(err error) bool {
	if errors.Is(err, errInvalidURL) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == "53300"
	}
	return true
}

// applyPoolDefaults sets what authd needs unless the URL says otherwise
// (pool_max_conns=…, options=-c statement_timeout=…):
//   - the statement timeout asked for, if any;
//   - more connections than pgx's default of max(4, CPUs): every refresh is
//     one short statement whose time is mostly the commit's disk flush, so
//     a few more connections than cores keep the CPUs busy;
//   - two warm connections, so the first requests after a quiet spell do
//     not pay for a connection and its TLS handshake.
//
// Through a transaction-mode pooler (PoolerTransaction) it sends no
// startup parameter, so the statement timeout is left to the server (a
// statement_timeout set on the role, see docs/operating.md) and to each
// request's deadline, which cancels a statement through the pooler; and
// statements run as unnamed ones (pgx's exec mode: one round trip, no
// state on the server connection) unless the URL sets
// default_query_exec_mode.
func applyPoolDefaults(cfg *pgxpool.Config, databaseURL string, o options) {
	if !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	}
	if !strings.Contains(databaseURL, "pool_min_conns") {
		cfg.MinConns = 2
	}
	if o.pooler == PoolerTransaction {
		if !strings.Contains(databaseURL, "default_query_exec_mode") {
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
		}
		return
	}
	if o.statementTimeout > 0 && !strings.Contains(databaseURL, "statement_timeout") {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(o.statementTimeout.Milliseconds(), 10)
	}
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
		return wrapf(err, "ping database")
	}
	return nil
}
