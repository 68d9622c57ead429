package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"golang.org/x/term"

	"authd/store"
)

func runUser(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: authd user add|passwd|del|list")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	role := fs.String("role", "", "database role of the user")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return fmt.Errorf("user %s: %w", sub, err)
	}
	want := map[string]int{"add": 1, "passwd": 1, "del": 1, "list": 0}
	n, ok := want[sub]
	if !ok {
		return fmt.Errorf("unknown user command %q: want add, passwd, del or list", sub)
	}
	if len(names) != n {
		return fmt.Errorf("user %s: want %d name argument(s), got %d", sub, n, len(names))
	}
	if sub != "add" && *role != "" {
		return fmt.Errorf("user %s: --role applies only to user add", sub)
	}
	e := &env{getenv: getenv}
	cost := bcryptCost(e)
	if err := errors.Join(e.errs...); err != nil {
		return err
	}

	// Check what needs no database before connecting, so a typo does not
	// wait on a connection.
	var password string
	if sub == "add" || sub == "passwd" {
		if sub == "add" {
			if *role == "" {
				return errors.New("user add: --role ROLE is required")
			}
			if len(names[0]) < 3 {
				return fmt.Errorf("user add %q: %w", names[0], store.ErrUsernameTooShort)
			}
		}
		password, err = readPassword(stdin, stderr)
		if err != nil {
			return err
		}
		if len(password) > store.MaxPasswordBytes {
			return store.ErrPasswordTooLong
		}
	}

	db, err := openDB(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()

	switch sub {
	case "add":
		return userAdd(ctx, db, names[0], *role, password, cost, getenv, stdout, stderr)
	case "passwd":
		hash, err := store.HashPassword(password, cost)
		if err != nil {
			return err
		}
		if err := db.SetPassword(ctx, names[0], hash); err != nil {
			return notFoundUser(err, names[0])
		}
		fmt.Fprintf(stdout, "user %q: password changed\n", names[0])
	case "del":
		if err := db.DeleteUser(ctx, names[0]); err != nil {
			return notFoundUser(err, names[0])
		}
		fmt.Fprintf(stdout, "user %q deleted, with their sessions\n", names[0])
	case "list":
		users, err := db.Users(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tROLE\tCREATED")
		for _, u := range users {
			r := u.Role
			if !u.RoleExists {
				r += " (missing)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, r, u.CreatedAt.UTC().Format("2006-01-02 15:04:05"))
		}
		return tw.Flush()
	}
	return nil
}

func userAdd(ctx context.Context, db *store.DB, name, role, password string, cost int, getenv func(string) string, stdout, stderr io.Writer) error {
	// Check the role first for a clear message; the database trigger is
	// the guarantee, for this and for every other writer.
	ok, err := db.RoleExists(ctx, role)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("user add %q: role %q does not exist (create it first: create role %s;)", name, role, pgx.Identifier{role}.Sanitize())
	}
	hash, err := store.HashPassword(password, cost)
	if err != nil {
		return err
	}
	if err := db.AddUser(ctx, name, hash, role); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user %q added with role %q\n", name, role)

	auth := getenv("AUTHD_AUTHENTICATOR_ROLE")
	if auth == "" {
		auth = "authenticator"
	}
	exists, can, err := db.CanSwitchRole(ctx, auth, role)
	if err != nil {
		return err
	}
	if exists && !can {
		fmt.Fprintf(stderr, "warning: role %q cannot switch to %q, so PostgREST will refuse this user's tokens; fix with: grant %s to %s;\n",
			auth, role, pgx.Identifier{role}.Sanitize(), pgx.Identifier{auth}.Sanitize())
	}
	return nil
}

func notFoundUser(err error, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("user %q does not exist", name)
	}
	return err
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments ("user add NAME --role R"), which the flag package
// alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// readPassword reads the password from a terminal without echo (asking
// twice), or from piped standard input. Never from the command line, where
// every user of the machine could read it in the process list.
func readPassword(stdin io.Reader, prompt io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(prompt, "Repeat password: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(p1) != string(p2) {
			return "", errors.New("passwords do not match")
		}
		if len(p1) == 0 {
			return "", store.ErrPasswordEmpty
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password on standard input (pipe one in, or run in a terminal to be prompted)")
	}
	return line, nil
}
