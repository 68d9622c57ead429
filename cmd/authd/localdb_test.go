package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// localdb runs scripts/localdb.sh, as `make run` does, with env only.
func localdb(t *testing.T, env map[string]string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../scripts/localdb.sh")
	cmd.Env = environ(env)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestLocalDBCreatesDatabase: `make run` with a DATABASE_URL whose
// database does not exist yet creates it on that server.
func TestLocalDBCreatesDatabase(t *testing.T) {
	t.Parallel()
	name := storetest.Prefix() + "localdb_" + storetest.Unique()
	url := storetest.WithDatabase(storetest.AdminURL(), name)
	t.Cleanup(func() {
		storetest.Exec(t, storetest.AdminURL(), fmt.Sprintf(`drop database if exists %q`, name))
	})
	for range 2 { // and a second time, when it exists
		stdout, stderr, err := localdb(t, map[string]string{"DATABASE_URL": url})
		if err != nil {
			t.Fatalf("localdb.sh: %v\n%s", err, stderr)
		}
		if want := "export DATABASE_URL='" + url + "'\n"; stdout != want {
			t.Errorf("stdout: got %q, want %q", stdout, want)
		}
	}
	if n := count(t, storetest.AdminURL(), `select count(*) from pg_database where datname = $1`, name); n != 1 {
		t.Errorf("databases named %s: got %d, want 1", name, n)
	}

	_, stderr, err := localdb(t, map[string]string{"DATABASE_URL": fmt.Sprintf("postgres://postgres:pw-not-shown@127.0.0.1:%d/x", freePort(t))})
	if err == nil || !strings.Contains(stderr, "localdb: cannot connect with DATABASE_URL: ") || strings.Contains(stderr, "pw-not-shown") {
		t.Errorf("unreachable server: got %v, stderr %q; want a failure saying so, without the password", err, stderr)
	}
}
