package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"authd/store"
	"authd/store/storetest"
	"authd/token"
)

// checkHash asserts that hash is a bcrypt hash of password at cost.
func checkHash(t *testing.T, hash, password string, cost int) {
	t.Helper()
	got, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		t.Fatalf("stored hash %q is not bcrypt: %v", hash, err)
	}
	if got != cost {
		t.Errorf("bcrypt cost of stored hash: got %d, want %d", got, cost)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		t.Errorf("stored hash does not verify the password %q: %v", password, err)
	}
}

func TestUserAdd(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	env["AUTHD_BCRYPT_COST"] = "5" // not the default, to see that it is read

	long72 := strings.Repeat("p", 72)
	tests := []struct {
		name     string
		args     []string
		username string
		password string
	}{
		{"role after name", []string{"user", "add", "alice", "--role", role}, "alice", "s3cret-pw"},
		{"role before name", []string{"user", "add", "--role", role, "bob"}, "bob", "hunter2-pw"},
		{"role=value", []string{"user", "add", "carol", "--role=" + role}, "carol", "pass word with spaces"},
		{"72-byte password", []string{"user", "add", "dave", "--role", role}, "dave", long72},
		{"72 bytes, fewer characters", []string{"user", "add", "erin", "--role", role}, "erin", strings.Repeat("€", 24)},
		{"non-ASCII username", []string{"user", "add", "zoë", "--role", role}, "zoë", "pw-of-zoe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRun(t, env, tt.password+"\n", tt.args...)
			username := tt.username
			if !strings.Contains(r.stdout, strconv.Quote(username)) {
				t.Errorf("stdout %q does not name the user %q", r.stdout, username)
			}
			if r.stderr != "" {
				t.Errorf("stderr: got %q, want nothing", r.stderr)
			}
			var gotRole string
			queryRow(t, url, `select role from auth.user where username = $1`, []any{username}, &gotRole)
			if gotRole != role {
				t.Errorf("role: got %q, want %q", gotRole, role)
			}
			checkHash(t, passwordHash(t, url, username), tt.password, 5)
		})
	}

	// A password without a trailing newline (printf 'x' | authd …) is
	// read whole, and a CRLF line ending is not part of the password.
	mustRun(t, env, "nonewline", "user", "add", "frank", "--role", role)
	checkHash(t, passwordHash(t, url, "frank"), "nonewline", 5)
	mustRun(t, env, "crlf-pass\r\n", "user", "add", "grace", "--role", role)
	checkHash(t, passwordHash(t, url, "grace"), "crlf-pass", 5)
}

func TestUserAddDefaultCost(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	delete(env, "AUTHD_BCRYPT_COST")
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	checkHash(t, passwordHash(t, url, "alice"), "pw-of-alice", 10)
}

func TestUserAddErrors(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "first-password\n", "user", "add", "taken", "--role", role)
	takenHash := passwordHash(t, url, "taken")

	tests := []struct {
		name  string
		env   map[string]string
		stdin string
		args  []string
		want  []string // substrings of the error message
	}{
		{"missing role", env, "pw-of-alice\n",
			[]string{"user", "add", "alice", "--role", "authd_no_such_role_xyz"},
			[]string{`role "authd_no_such_role_xyz" does not exist`}},
		{"short username", env, "pw-of-alice\n",
			[]string{"user", "add", "ab", "--role", role},
			[]string{`"ab"`, "at least 3 characters"}},
		{"short username in bytes enough, in characters not", env, "pw-of-alice\n",
			[]string{"user", "add", "日本", "--role", role},
			[]string{"at least 3 characters"}},
		{"73-byte password", env, strings.Repeat("p", 73) + "\n",
			[]string{"user", "add", "alice", "--role", role},
			[]string{"72-byte"}},
		{"73 bytes, 72 characters", env, strings.Repeat("p", 71) + "é\n",
			[]string{"user", "add", "alice", "--role", role},
			[]string{"72-byte"}},
		{"empty stdin", env, "",
			[]string{"user", "add", "alice", "--role", role},
			[]string{"no password"}},
		{"empty line on stdin", env, "\n",
			[]string{"user", "add", "alice", "--role", role},
			[]string{"no password"}},
		{"missing --role", env, "pw-of-alice\n",
			[]string{"user", "add", "alice"},
			[]string{"--role"}},
		{"empty --role", env, "pw-of-alice\n",
			[]string{"user", "add", "alice", "--role", ""},
			[]string{"--role"}},
		{"no name", env, "pw-of-alice\n",
			[]string{"user", "add", "--role", role},
			[]string{"user add: want NAME, got 0 argument(s)", "run 'authd user add --help' for usage"}},
		{"two names", env, "pw-of-alice\n",
			[]string{"user", "add", "alice", "bob", "--role", role},
			[]string{"user add: want NAME, got 2 argument(s)"}},
		{"duplicate user", env, "second-password\n",
			[]string{"user", "add", "taken", "--role", role},
			[]string{`"taken"`, "already exists"}},
		{"bad cost", map[string]string{"DATABASE_URL": url, "AUTHD_BCRYPT_COST": "99"}, "pw-of-alice\n",
			[]string{"user", "add", "alice", "--role", role},
			[]string{"AUTHD_BCRYPT_COST"}},
		{"unknown subcommand", env, "",
			[]string{"user", "rename", "alice"},
			[]string{`"rename"`}},
		{"--role on passwd", env, "pw-of-alice\n",
			[]string{"user", "passwd", "taken", "--role", role},
			[]string{"user passwd: flag provided but not defined: -role"}},
		{"unknown flag", env, "pw-of-alice\n",
			[]string{"user", "add", "alice", "--rol", role},
			[]string{"rol"}},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := runCLI(t, tt.env, tt.stdin, tt.args...)
				if r.err == nil {
					t.Fatalf("authd %s: got no error, want one naming %q", strings.Join(tt.args, " "), tt.want)
				}
				msg := r.err.Error()
				if strings.Contains(msg, "\n") {
					t.Errorf("error is not one line: %q", msg)
				}
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q does not contain %q", msg, w)
					}
				}
			})
		}
	})
	// None of the failures wrote or changed a user.
	if n := count(t, url, `select count(*) from auth.user`); n != 1 {
		t.Errorf("users after failed adds: got %d, want 1", n)
	}
	if h := passwordHash(t, url, "taken"); h != takenHash {
		t.Errorf("hash of the existing user changed by a duplicate add: got %q, want %q", h, takenHash)
	}
}

func TestUserAddUnreachableDatabase(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL":      "postgres://postgres@127.0.0.1:1/postgres",
		"AUTHD_BCRYPT_COST": testCost,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"authd", "user", "add", "alice", "--role", "whatever"}, getenv(env), environList(env),
		strings.NewReader("pw-of-alice\n"), &stdout, &stderr)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("user add with an unreachable database: got no error")
	}
	if elapsed > 3*time.Second {
		t.Errorf("failing took %s, want under 3s", elapsed)
	}
	if ctx.Err() != nil {
		t.Errorf("run only returned when the test's context expired: %v", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, w := range []string{"connect", "127.0.0.1:1", "refused"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
}

// TestUserInputCheckedFirst: mistakes in the command line or the password
// are reported as such, before (and without) a database connection.
func TestUserInputCheckedFirst(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/postgres"}
	for _, tt := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"short username", "pw-of-alice\n", []string{"user", "add", "ab", "--role", "r"}, "at least 3 characters"},
		{"257-byte username", "pw-of-alice\n", []string{"user", "add", strings.Repeat("u", 257), "--role", "r"}, "at most 256 bytes"},
		{"username not UTF-8", "pw-of-alice\n", []string{"user", "add", "ali\xffce", "--role", "r"}, "at most 256 bytes"},
		{"73-byte password", strings.Repeat("p", 73) + "\n", []string{"user", "add", "alice", "--role", "r"}, "72-byte"},
		{"73-byte password for passwd", strings.Repeat("p", 73) + "\n", []string{"user", "passwd", "alice"}, "72-byte"},
		{"empty stdin", "", []string{"user", "add", "alice", "--role", "r"}, "no password"},
		{"missing --role", "pw-of-alice\n", []string{"user", "add", "alice"}, "--role"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, env, tt.stdin, tt.args...)
			if r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
				t.Errorf("authd %s: got %v, want an error containing %q", strings.Join(tt.args, " "), r.err, tt.want)
			}
		})
	}
}

// TestMainExit runs the built binary: a failure is exit status 1 and one
// line on stderr, "authd: …"; serve's is a JSON log line.
func TestMainExit(t *testing.T) {
	t.Parallel()
	bin := goBuild(t, "authd", ".")
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)

	tests := []struct {
		name  string
		env   map[string]string
		stdin string
		args  []string
		want  string
	}{
		{"missing role", env, "pw-of-alice\n", []string{"user", "add", "alice", "--role", "authd_no_such_role_xyz"}, "authd_no_such_role_xyz"},
		{"short username", env, "pw-of-alice\n", []string{"user", "add", "ab", "--role", role}, "at least 3"},
		{"73-byte password", env, strings.Repeat("x", 73) + "\n", []string{"user", "add", "alice", "--role", role}, "72-byte"},
		{"unreachable database", map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/postgres"}, "pw-of-alice\n",
			[]string{"user", "add", "alice", "--role", role}, "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			cmd.Env = environ(tt.env)
			cmd.Stdin = strings.NewReader(tt.stdin)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("authd %s: got %v, want a non-zero exit", strings.Join(tt.args, " "), err)
			}
			if code := exit.ExitCode(); code != 1 {
				t.Errorf("exit status: got %d, want 1", code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if len(lines) != 1 {
				t.Errorf("stderr: got %d lines %q, want exactly one", len(lines), stderr.String())
			}
			if !strings.HasPrefix(lines[0], "authd: ") {
				t.Errorf("stderr: got %q, want a line starting with %q", stderr.String(), "authd: ")
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.want)
			}
		})
	}

	t.Run("bad config for serve", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command(bin, "serve")
		cmd.Env = environ(map[string]string{"JWT_SECRET": "short", "AUTHD_ACCESS_TTL": "1 hour"})
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("authd serve: got %v, want exit status 1", err)
		}
		lines := jsonLines(t, stderr.String())
		if len(lines) != 1 || stdout.Len() != 0 {
			t.Fatalf("got stdout %q, stderr %q; want one JSON line on stderr", stdout.String(), stderr.String())
		}
		l := lines[0]
		problems, _ := l["problems"].([]any)
		if l["level"] != "ERROR" || l["msg"] != "invalid configuration" || len(problems) != 2 ||
			!strings.HasPrefix(problems[0].(string), "AUTHD_ACCESS_TTL: ") && !strings.HasPrefix(problems[1].(string), "AUTHD_ACCESS_TTL: ") ||
			!strings.HasPrefix(problems[0].(string), "JWT_SECRET: ") && !strings.HasPrefix(problems[1].(string), "JWT_SECRET: ") {
			t.Errorf("got %v, want an error line with a problem for JWT_SECRET and one for AUTHD_ACCESS_TTL", l)
		}
	})

	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command(bin)
		cmd.Env = environ(nil)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("authd without a command: got %v, want exit status 1", err)
		}
		if !strings.HasPrefix(stderr.String(), "usage: authd") {
			t.Errorf("stderr: got %q, want the usage", stderr.String())
		}
	})
}

func TestUserAddAuthenticatorWarning(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	auth := storetest.NewRole(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	env["AUTHD_AUTHENTICATOR_ROLE"] = auth

	r := mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	if n := count(t, url, `select count(*) from auth.user where username = 'alice'`); n != 1 {
		t.Fatalf("user despite the warning: got %d rows, want 1", n)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	fix := `grant "` + role + `" to "` + auth + `";`
	if len(lines) != 1 || !strings.Contains(lines[0], fix) {
		t.Errorf("stderr: got %q, want one warning line containing %q", r.stderr, fix)
	}
	if !strings.Contains(r.stdout, `"alice"`) {
		t.Errorf("stdout %q does not report the added user", r.stdout)
	}

	storetest.Exec(t, storetest.AdminURL(), "grant "+role+" to "+auth)
	r = mustRun(t, env, "pw-of-alice\n", "user", "add", "bob", "--role", role)
	if r.stderr != "" {
		t.Errorf("stderr once granted: got %q, want nothing", r.stderr)
	}

	// An authenticator that does not exist is not warned about: authd may
	// serve something other than PostgREST.
	env["AUTHD_AUTHENTICATOR_ROLE"] = "authd_no_such_authenticator_xyz"
	other := storetest.NewRole(t)
	r = mustRun(t, env, "pw-of-alice\n", "user", "add", "carol", "--role", other)
	if r.stderr != "" {
		t.Errorf("stderr without an authenticator role: got %q, want nothing", r.stderr)
	}
}

func TestUserPasswd(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "old-password\n", "user", "add", "alice", "--role", role)
	mustRun(t, env, "bobs-password\n", "user", "add", "bob", "--role", role)
	before := passwordHash(t, url, "alice")
	bobBefore := passwordHash(t, url, "bob")

	r := mustRun(t, env, "new-password\n", "user", "passwd", "alice")
	if !strings.Contains(r.stdout, `"alice"`) {
		t.Errorf("stdout %q does not name the user", r.stdout)
	}
	after := passwordHash(t, url, "alice")
	if after == before {
		t.Fatal("password hash unchanged by user passwd")
	}
	if store.CheckPassword(after, "old-password") {
		t.Error("the old password still verifies")
	}
	checkHash(t, after, "new-password", 4)
	if h := passwordHash(t, url, "bob"); h != bobBefore {
		t.Errorf("another user's hash changed: got %q, want %q", h, bobBefore)
	}

	for _, tt := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"unknown user", "pw-of-alice\n", []string{"user", "passwd", "nobody"}, `user "nobody" does not exist`},
		{"73-byte password", strings.Repeat("p", 73) + "\n", []string{"user", "passwd", "alice"}, "72-byte"},
		{"empty stdin", "", []string{"user", "passwd", "alice"}, "no password"},
		{"no name", "pw-of-alice\n", []string{"user", "passwd"}, "user passwd: want NAME, got 0 argument(s)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, env, tt.stdin, tt.args...)
			if r.err == nil {
				t.Fatalf("authd %s: got no error", strings.Join(tt.args, " "))
			}
			if msg := r.err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("error: got %q, want one line containing %q", msg, tt.want)
			}
			if h := passwordHash(t, url, "alice"); h != after {
				t.Errorf("hash changed by a failed passwd: got %q, want %q", h, after)
			}
		})
	}
}

func TestUserDel(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", role)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "bob", "--role", role)

	db := storetest.Open(t, url)
	startSessions(t, db, "alice", "alice", "bob")
	// A rotated token too: the child row references its parent.
	storetest.Exec(t, url, `
		insert into auth.refresh_token (token_hash, session_id, parent_id, expires_at)
		select sha256(convert_to($1, 'utf8')), t.session_id, t.id, now() + interval '1 hour'
		  from auth.refresh_token t join auth.session s on s.id = t.session_id
		 where s.username = 'alice' limit 1`, uuid.NewString())
	if n := count(t, url, `select count(*) from auth.refresh_token t join auth.session s on s.id = t.session_id where s.username = 'alice'`); n != 3 {
		t.Fatalf("alice's refresh tokens before del: got %d, want 3", n)
	}

	r := mustRun(t, env, "", "user", "del", "alice")
	if !strings.Contains(r.stdout, `"alice"`) {
		t.Errorf("stdout %q does not name the user", r.stdout)
	}
	for _, c := range []struct {
		sql  string
		want int
	}{
		{`select count(*) from auth.user where username = 'alice'`, 0},
		{`select count(*) from auth.session where username = 'alice'`, 0},
		{`select count(*) from auth.session`, 1},       // bob's
		{`select count(*) from auth.refresh_token`, 1}, // bob's
		{`select count(*) from auth.user where username = 'bob'`, 1},
	} {
		if got := count(t, url, c.sql); got != c.want {
			t.Errorf("%s: got %d, want %d", c.sql, got, c.want)
		}
	}

	r = runCLI(t, env, "", "user", "del", "alice")
	if r.err == nil || !strings.Contains(r.err.Error(), `user "alice" does not exist`) {
		t.Errorf("del of an unknown user: got %v, want an error saying user \"alice\" does not exist", r.err)
	}
}

// startSessions opens a session for each user named, as a login would.
func startSessions(t *testing.T, db *store.DB, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		_, hash, err := token.NewRefresh()
		if err != nil {
			t.Fatal(err)
		}
		u, err := db.User(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.StartSession(ctx, u, hash, time.Hour, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUserList(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	kept := storetest.NewRole(t)
	dropped := storetest.NewRole(t)
	env := baseEnv(url)

	r := mustRun(t, env, "", "user", "list")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 1 {
		t.Errorf("list of no users: got %q, want only the header", r.stdout)
	}

	mustRun(t, env, "pw-of-alice\n", "user", "add", "alice", "--role", kept)
	mustRun(t, env, "pw-of-alice\n", "user", "add", "bob", "--role", dropped)
	storetest.Exec(t, storetest.AdminURL(), "drop role "+dropped)

	r = mustRun(t, env, "", "user", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("user list: got %d lines %q, want a header and 2 users", len(lines), r.stdout)
	}
	if f := strings.Fields(lines[0]); len(f) == 0 || f[0] != "USERNAME" {
		t.Errorf("header: got %q, want it to start with USERNAME", lines[0])
	}
	want := map[string]string{"alice": kept, "bob": dropped + " (missing)"}
	for i, name := range []string{"alice", "bob"} {
		line := lines[i+1]
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != name {
			t.Errorf("line %d: got %q, want user %q", i+1, line, name)
			continue
		}
		if !strings.Contains(line, " "+want[name]+" ") {
			t.Errorf("line of %s: got %q, want role %q", name, line, want[name])
		}
	}
	if strings.Contains(lines[1], "(missing)") {
		t.Errorf("alice's role exists, but the line says missing: %q", lines[1])
	}

	if r := runCLI(t, env, "", "user", "list", "extra"); r.err == nil {
		t.Error("user list extra: got no error")
	}
}
