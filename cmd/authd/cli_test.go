package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os/exec"
	"strings"
	"testing"
	"time"

	"authd/seed"
	"authd/store/storetest"
)

// untouchable is an environment a command must not read: help prints
// from what the binary knows, never from configuration.
func untouchable(t *testing.T) (func(string) string, func() []string) {
	return func(k string) string {
			t.Errorf("help read the environment variable %s", k)
			return ""
		}, func() []string {
			t.Error("help read the environment")
			return nil
		}
}

// runWithoutEnv runs authd with args in an environment help must not read.
func runWithoutEnv(t *testing.T, args ...string) result {
	t.Helper()
	getenv, environ := untouchable(t)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"authd"}, args...), getenv, environ, strings.NewReader(""), &stdout, &stderr)
	return result{err: err, stdout: stdout.String(), stderr: stderr.String()}
}

// TestHelp: every command answers -h, --help and `authd help COMMAND`
// with its usage and flags on stdout, reading no configuration.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range commands() {
		forms := [][]string{
			append(strings.Fields(cmd.name), "--help"),
			append(strings.Fields(cmd.name), "-h"),
			append([]string{"help"}, strings.Fields(cmd.name)...),
		}
		if cmd.params != "" { // help wins over arguments, anywhere
			forms = append(forms, append(strings.Fields(cmd.name), "x", "--help"))
		}
		for _, args := range forms {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := runWithoutEnv(t, args...)
				if r.err != nil {
					t.Fatalf("got error %v, want none", r.err)
				}
				if want := "usage: authd " + cmd.usageLine() + "\n"; !strings.HasPrefix(r.stdout, want) {
					t.Errorf("stdout: got %q, want it to start with %q", r.stdout, want)
				}
				if r.stderr != "" {
					t.Errorf("stderr: got %q, want nothing", r.stderr)
				}
				fs, _ := cmd.flags(&cli{getenv: getenv(nil)})
				fs.VisitAll(func(f *flag.Flag) {
					if !strings.Contains(r.stdout, "  -"+f.Name) {
						t.Errorf("help does not list flag -%s:\n%s", f.Name, r.stdout)
					}
				})
			})
		}
	}

	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := runWithoutEnv(t, args...)
		if r.err != nil || !strings.HasPrefix(r.stdout, "usage: authd <command>") || r.stderr != "" {
			t.Errorf("authd %s: got %v, stdout %q, stderr %q; want the usage on stdout", args[0], r.err, r.stdout, r.stderr)
		}
		for _, cmd := range commands() {
			if !strings.Contains(r.stdout, "  "+cmd.usageLine()) {
				t.Errorf("authd %s does not list %q", args[0], cmd.usageLine())
			}
		}
	}
	for _, args := range [][]string{{"user", "--help"}, {"help", "user"}, {"nats", "-h"}} {
		r := runWithoutEnv(t, args...)
		want := "usage: authd " + args[len(args)-1] + " <command>"
		if args[0] != "help" {
			want = "usage: authd " + args[0] + " <command>"
		}
		if r.err != nil || !strings.HasPrefix(r.stdout, want) {
			t.Errorf("authd %s: got %v, stdout %q; want %q", strings.Join(args, " "), r.err, r.stdout, want)
		}
	}
}

// TestUsageErrors: a command line authd cannot understand is one line
// saying what is wrong and where the usage is, before anything is read.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"foo"}, `unknown command "foo"; run 'authd --help' for usage`},
		{[]string{"user"}, "user: missing command: want add, passwd, role, disable, enable, expire-password, del, list, sessions, logout, reset-link or mfa-reset; run 'authd user --help' for usage"},
		{[]string{"user", "frob"}, `user: unknown user command "frob": want add, passwd, role, disable, enable, expire-password, del, list, sessions, logout, reset-link or mfa-reset; run 'authd user --help' for usage`},
		{[]string{"seed", "extra"}, `seed: takes no arguments, got ["extra"]; run 'authd seed --help' for usage`},
		{[]string{"serve", "extra"}, `serve: takes no arguments, got ["extra"]; run 'authd serve --help' for usage`},
		{[]string{"migrate", "up", "down"}, `migrate up: takes no arguments, got ["down"]; run 'authd migrate up --help' for usage`},
		{[]string{"user", "add", "--bogus"}, "user add: flag provided but not defined: -bogus; run 'authd user add --help' for usage"},
		{[]string{"user", "add"}, "user add: want NAME, got 0 argument(s); run 'authd user add --help' for usage"},
		{[]string{"nats", "list", "a", "b"}, "nats list: want [ROLE], got 2 argument(s)"},
		{[]string{"help", "frob"}, `unknown command "frob"; run 'authd --help' for usage`},
		{[]string{"version", "now"}, `version: takes no arguments`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runWithoutEnv(t, tt.args...)
			if r.err == nil || !strings.Contains(r.err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", r.err, tt.want)
			}
			if strings.Contains(r.err.Error(), "\n") {
				t.Errorf("error %q is more than one line", r.err)
			}
			if r.stdout != "" || r.stderr != "" {
				t.Errorf("stdout %q, stderr %q: want nothing (main prints the error)", r.stdout, r.stderr)
			}
		})
	}
}

// TestSeedHelpNeverSeeds: asking for help is never the command itself.
func TestSeedHelpNeverSeeds(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	for _, args := range [][]string{{"seed", "--help"}, {"seed", "-h"}, {"help", "seed"}} {
		r := runCLI(t, baseEnv(url), "", args...)
		if r.err != nil || !strings.HasPrefix(r.stdout, "usage: authd seed") {
			t.Errorf("authd %s: got %v, stdout %q", strings.Join(args, " "), r.err, r.stdout)
		}
	}
	if r := runCLI(t, baseEnv(url), "", "seed", "extra"); r.err == nil {
		t.Error("seed extra: got no error")
	}
	if n := count(t, url, `select count(*) from auth.user where username = $1`, seed.DemoUser); n != 0 {
		t.Errorf("demo users after seed --help and seed extra: got %d, want 0", n)
	}
}

// TestBinaryExitCodes: help and version exit 0 with their text on stdout;
// an unknown command exits 1 with one line on stderr.
func TestBinaryExitCodes(t *testing.T) {
	t.Parallel()
	// GOFLAGS may say -buildvcs=false; version must show what a release
	// build stamps.
	bin := goBuild(t, "authd", ".", "-buildvcs=true")
	exe := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = environ(nil)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			code = exit.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return code, o.String(), e.String()
	}

	for _, args := range [][]string{{"--help"}, {"user", "add", "--help"}, {"migrate", "--help"}, {"serve", "-h"}, {"nats", "grant", "--help"}} {
		code, stdout, stderr := exe(args...)
		if code != 0 || !strings.HasPrefix(stdout, "usage: authd") || stderr != "" {
			t.Errorf("authd %s: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", strings.Join(args, " "), code, stdout, stderr)
		}
	}

	code, stdout, stderr := exe("foo")
	if want := "authd: unknown command \"foo\"; run 'authd --help' for usage\n"; code != 1 || stdout != "" || stderr != want {
		t.Errorf("authd foo: exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout, stderr, want)
	}

	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := exe(args...)
		if code != 0 || !strings.HasPrefix(stdout, "authd ") || stderr != "" {
			t.Errorf("authd %s: exit %d, stdout %q, stderr %q", args[0], code, stdout, stderr)
		}
		// In a git checkout, the revision is the checkout's.
		if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
			if want := "revision:  " + strings.TrimSpace(string(head)) + "\n"; !strings.Contains(stdout, want) {
				t.Errorf("authd %s: got %q, want a line %q", args[0], stdout, want)
			}
			if !strings.Contains(stdout, "modified:  ") || !strings.Contains(stdout, "committed: ") {
				t.Errorf("authd %s: got %q, want modified and committed lines", args[0], stdout)
			}
		}
	}
}
