package storetest

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AppRole is the NOLOGIN group role that migration 00008 grants what
// `authd serve` needs, and nothing more.
const AppRole = "authd_app"

// NewAppURL returns dbURL logging in as a new LOGIN role (unique name,
// dropped at cleanup) whose only privileges are its membership of
// AppRole: what an operator sets up for authd in production.
func NewAppURL(t testing.TB, dbURL string) string {
	t.Helper()
	role := NewRole(t)
	id := pgx.Identifier{role}.Sanitize()
	Exec(t, AdminURL(), "alter role "+id+" login")
	Exec(t, AdminURL(), "grant "+pgx.Identifier{AppRole}.Sanitize()+" to "+id)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("storetest: bad database URL: %v", err)
	}
	u.User = url.User(role)
	return u.String()
}

// Connect opens a plain connection to url for t, closed at cleanup.
func Connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("storetest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
