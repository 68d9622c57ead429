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

	"authd/identity"
	"authd/store"
)

// userCost is AUTHD_BCRYPT_COST, checked before any password is read.
func userCost(c *cli) (int, error) {
	e := &env{getenv: c.getenv}
	cost := bcryptCost(e)
	return cost, errors.Join(e.errs...)
}

// newPassword reads a password, checking what needs no database before
// connecting, so that a mistake does not wait on a connection.
func newPassword(c *cli) (string, error) {
	password, err := readPassword(c.stdin, c.stderr)
	if err != nil {
		return "", err
	}
	if len(password) > store.MaxPasswordBytes {
		return "", store.ErrPasswordTooLong
	}
	return password, nil
}

func userAddCmd(fs *flag.FlagSet, c *cli) action {
	role := fs.String("role", "", "database role of the user (required)")
	return func(ctx context.Context, args []string) error {
		name := args[0]
		cost, err := userCost(c)
		if err != nil {
			return err
		}
		if *role == "" {
			return &usageError{"user add", "--role ROLE is required"}
		}
		if len(name) < 3 {
			return fmt.Errorf("user add %q: %w", name, store.ErrUsernameTooShort)
		}
		// A login never looks such a name up (it is answered as an
		// unknown user), so the user could never log in.
		if !identity.WellFormed(name, identity.MaxUsernameLen) {
			return fmt.Errorf("user add: the username must be UTF-8 of at most %d bytes", identity.MaxUsernameLen)
		}
		password, err := newPassword(c)
		if err != nil {
			return err
		}
		db, err := openDB(ctx, c.getenv)
		if err != nil {
			return err
		}
		defer db.Close()
		return userAdd(ctx, db, name, *role, password, cost, loadAdminConfig(c.getenv), c.stdout, c.stderr)
	}
}

func userPasswd(ctx context.Context, c *cli, args []string) error {
	name := args[0]
	cost, err := userCost(c)
	if err != nil {
		return err
	}
	password, err := newPassword(c)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, c.getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	hash, err := store.HashPassword(password, cost)
	if err != nil {
		return err
	}
	if err := db.SetPassword(ctx, name, hash); err != nil {
		return notFoundUser(err, name)
	}
	fmt.Fprintf(c.stdout, "user %q: password changed\n", name)
	return nil
}

func userDel(ctx context.Context, c *cli, args []string) error {
	return withDB(ctx, c, func(db *store.DB) error {
		if err := db.DeleteUser(ctx, args[0]); err != nil {
			return notFoundUser(err, args[0])
		}
		fmt.Fprintf(c.stdout, "user %q deleted, with their sessions\n", args[0])
		return nil
	})
}

func userList(ctx context.Context, c *cli, _ []string) error {
	return withDB(ctx, c, func(db *store.DB) error {
		users, err := db.Users(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tROLE\tCREATED")
		for _, u := range users {
			r := u.Role
			if !u.RoleExists {
				r += " (missing)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, r, u.CreatedAt.UTC().Format("2006-01-02 15:04:05"))
		}
		return tw.Flush()
	})
}

func userAdd(ctx context.Context, db *store.DB, name, role, password string, cost int, admin adminConfig, stdout, stderr io.Writer) error {
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
	return warnAuthenticator(ctx, db, admin.AuthenticatorRole, role, "this user's", stderr)
}

// warnAuthenticator warns on stderr when the role authenticator exists but
// cannot switch to role, so that PostgREST will refuse the tokens of the
// user or key just created (whose: "this user's"). An authenticator that
// does not exist is not warned about: authd may serve something other than
// PostgREST. The row stays either way: the fix is a grant, shown.
func warnAuthenticator(ctx context.Context, db *store.DB, authenticator, role, whose string, stderr io.Writer) error {
	exists, can, err := db.CanSwitchRole(ctx, authenticator, role)
	if err != nil {
		return err
	}
	if exists && !can {
		fmt.Fprintf(stderr, "warning: role %q cannot switch to %q, so PostgREST will refuse %s tokens; fix with: grant %s to %s;\n",
			authenticator, role, whose, pgx.Identifier{role}.Sanitize(), pgx.Identifier{authenticator}.Sanitize())
	}
	return nil
}

func notFoundUser(err error, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("user %q does not exist", name)
	}
	return err
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
