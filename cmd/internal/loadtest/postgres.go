package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"authd/store"
)

// PgURL parses a postgres:// URL and lets mutate change it and its query,
// so that one admin URL yields the database's URL and each client's
// (application_name, pool sizes, a proxy's address).
func PgURL(base string, mutate func(u *url.URL, q url.Values)) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL may carry a password: do not echo it.
		return "", errors.New("-admin-url: want a postgres:// URL")
	}
	q := u.Query()
	mutate(u, q)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// adminExec runs one statement on its own connection to adminURL, so that
// cleanup works after the run's context is cancelled (it bounds itself to
// 30 s).
func adminExec(ctx context.Context, adminURL, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to -admin-url (set %s or -admin-url to a superuser URL): %w", AdminURLEnv, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// CreateUsers inserts the named users with password, all of role, and
// returns the bcrypt hash they share (made by authd's own
// store.HashPassword): one hash at cost serves them all, since hashing is
// the slow part and every login still compares at that cost.
func CreateUsers(ctx context.Context, pool *pgxpool.Pool, names []string, password string, cost int, role string) (string, error) {
	hash, err := store.HashPassword(password, cost)
	if err != nil {
		return "", fmt.Errorf("create users: %w", err)
	}
	if _, err := pool.Exec(ctx, `
		insert into auth.user (username, password_hash, role)
		select u, $2, $3 from unnest($1::text[]) u`, names, hash, role); err != nil {
		return "", fmt.Errorf("create users: %w", err)
	}
	return hash, nil
}
