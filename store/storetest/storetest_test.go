package storetest

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// TestNamesCarryThePrefix: every database and role made for a test is
// named with $AUTHD_TEST_DB_PREFIX, and none is left once the test passed.
func TestNamesCarryThePrefix(t *testing.T) {
	if !strings.HasPrefix(template, Prefix()) {
		t.Errorf("got template %q, want it to start with %q", template, Prefix())
	}
	prefix := "authd_p" + Unique()[:6] + "_"
	t.Setenv(PrefixEnv, prefix)
	t.Run("make", func(t *testing.T) {
		for _, u := range []string{NewURL(t), NewEmptyURL(t)} {
			parsed, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			if name := strings.TrimPrefix(parsed.Path, "/"); !strings.HasPrefix(name, prefix) {
				t.Errorf("got database %q, want it to start with %q", name, prefix)
			}
			Exec(t, u, "select 1")
		}
		if role := NewRole(t); !strings.HasPrefix(role, prefix) {
			t.Errorf("got role %q, want it to start with %q", role, prefix)
		}
	})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left []string
	rows, err := conn.Query(ctx, `select datname from pg_catalog.pg_database where starts_with(datname, $1)
		union all select rolname from pg_catalog.pg_roles where starts_with(rolname, $1)`, prefix)
	if err == nil {
		left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("left behind after the test passed: %q", left)
	}
}

func TestPrefixTooLong(t *testing.T) {
	if err := checkPrefix(strings.Repeat("p", maxPrefix)); err != nil {
		t.Errorf("a %d-byte prefix: %v", maxPrefix, err)
	}
	err := checkPrefix(strings.Repeat("p", maxPrefix+1))
	if err == nil || !strings.Contains(err.Error(), PrefixEnv) {
		t.Errorf("a %d-byte prefix: got %v, want an error naming %s", maxPrefix+1, err, PrefixEnv)
	}
	// The longest name built on the longest prefix fits an identifier.
	if n := maxPrefix + len("role_") + len(Unique()); n > 63 {
		t.Errorf("names up to %d bytes, PostgreSQL keeps 63", n)
	}
}
