package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The channels the auth schema's triggers notify (migrations 00002 and
// 00003), at commit. A payload names what changed, never a secret.
const (
	// ChannelAPIKey carries the id of an API key that was changed in a
	// way that decides whether or as whom it passes, or deleted.
	ChannelAPIKey = "authd_api_key"
	// ChannelNATS carries the name of a role whose NATS grants changed.
	ChannelNATS = "authd_nats"
	// ChannelSession carries the name of a user one of whose sessions was
	// revoked, or who was changed, disabled or deleted (migration 00005).
	ChannelSession = "authd_session"
)

// ListenerName is the application_name of the connection Listen holds.
const ListenerName = "authd listener"

// Notification is one NOTIFY received on a channel Listen listens on.
type Notification struct {
	Channel, Payload string
}

// errPoolSwapped ends a Listen whose pool Reconnect replaced, so that the
// caller listens again on the new database URL.
var errPoolSwapped = errors.New("database URL reloaded")

// Listen takes one connection out of the pool, LISTENs on channels and
// calls notify with each notification, one at a time, until ctx ends (nil)
// or the connection fails (its error). listening is called once LISTEN is
// in place: no change committed from then on is missed until Listen
// returns, so a caller that drops its caches in listening misses nothing.
//
// A connection that the network dropped without a word would wait
// forever, so after each idle period without a notification Listen checks
// the connection with a query: a silent loss is noticed within idle plus
// the statement timeout.
//
// Listen needs a session of its own: through a pooler in transaction mode
// (PgBouncer, Supavisor, RDS Proxy) LISTEN never hears anything. There it
// connects to the direct URL (WithDirectURL), and without one it returns
// ErrCannotListen at once: callers rely on their periodic re-reads alone.
func (db *DB) Listen(ctx context.Context, channels []string, idle time.Duration, listening func(), notify func(Notification)) error {
	pool := db.p()
	conn, err := db.listenConn(ctx, pool)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Named, so that an operator can tell it in pg_stat_activity from
	// the pool's connections (and not mistake it for a stuck session).
	if _, err := conn.Exec(ctx, "set application_name = '"+ListenerName+"'"); err != nil {
		return wrapf(err, "name the listening connection")
	}
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "listen "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return wrapf(err, "listen on %s", ch)
		}
	}
	listening()
	for {
		wctx, cancel := context.WithTimeout(ctx, idle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			notify(Notification{Channel: n.Channel, Payload: n.Payload})
			continue
		case !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed():
			return wrapf(err, "wait for notifications")
		}
		if db.p() != pool {
			return errPoolSwapped
		}
		if _, err := conn.Exec(ctx, "select 1"); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return wrapf(err, "check the listening connection")
		}
	}
}

// ErrCannotListen: DATABASE_URL reaches a transaction-mode pooler and no
// direct URL was given, so no connection can hold a LISTEN.
var ErrCannotListen = errors.New("cannot LISTEN through a transaction-mode pooler: set AUTHD_DB_DIRECT_URL")

// CanListen reports whether Listen has a connection to listen on.
func (db *DB) CanListen() bool {
	return db.opts.pooler != PoolerTransaction || db.opts.directURL != ""
}

// listenConn is the connection Listen holds: one of its own to the direct
// URL if there is one, else one taken out of the pool for good (so the
// pool neither counts it nor hands it to a query while it waits).
func (db *DB) listenConn(ctx context.Context, pool *pgxpool.Pool) (*pgx.Conn, error) {
	switch {
	case db.opts.directURL != "":
		conn, err := pgx.Connect(ctx, db.opts.directURL)
		if err != nil {
			// pgx's message may hold the URL, password and all.
			return nil, fmt.Errorf("connect to AUTHD_DB_DIRECT_URL to listen: %w", unwrapConnectError(err))
		}
		return conn, nil
	case !db.CanListen():
		return nil, ErrCannotListen
	}
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return nil, wrapf(err, "acquire a connection to listen on")
	}
	return pc.Hijack(), nil
}
