package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"authd/identity"
	"authd/identity/notify"
	"authd/store"
	"authd/token"
)

// passwordSettings are the settings of the commands that set a password,
// checked before any password is read.
type passwordSettings struct {
	cost   int // AUTHD_BCRYPT_COST
	minLen int // AUTHD_PASSWORD_MIN_LENGTH
}

func readPasswordSettings(c *cli) (passwordSettings, error) {
	e := &env{getenv: c.getenv}
	ps := passwordSettings{cost: bcryptCost(e), minLen: passwordMinLength(e)}
	return ps, errors.Join(e.errs...)
}

// newPassword reads the new password of user name and applies the
// password policy, checking what needs no database before connecting, so
// that a mistake does not wait on a connection. The password is never
// part of an error.
func newPassword(c *cli, name string, ps passwordSettings) (string, error) {
	password, err := readPassword(c.stdin, c.stderr)
	if err != nil {
		return "", err
	}
	if len(password) > store.MaxPasswordBytes {
		return "", store.ErrPasswordTooLong
	}
	if err := identity.CheckNewPassword(password, name, ps.minLen); err != nil {
		var short *identity.PasswordTooShortError
		if errors.As(err, &short) {
			return "", fmt.Errorf("%w (AUTHD_PASSWORD_MIN_LENGTH)", err)
		}
		return "", err
	}
	return password, nil
}

// checkNotAuthenticator refuses the role PostgREST logs in as, which the
// database cannot tell by name (it refuses every LOGIN role; this one may
// be NOLOGIN in an unusual set-up).
func checkNotAuthenticator(cmd, role string, admin adminConfig) error {
	if role == admin.AuthenticatorRole {
		return fmt.Errorf("%s: role %q is AUTHD_AUTHENTICATOR_ROLE, the role PostgREST logs in as: it may not be the role of a token", cmd, role)
	}
	return nil
}

func userAddCmd(fs *flag.FlagSet, c *cli) action {
	role := fs.String("role", "", "database role of the user (required)")
	return func(ctx context.Context, args []string) error {
		name := args[0]
		ps, err := readPasswordSettings(c)
		if err != nil {
			return err
		}
		if *role == "" {
			return &usageError{"user add", "--role ROLE is required"}
		}
		if err := identity.CheckUsername(name); errors.Is(err, store.ErrUsernameTooShort) {
			return fmt.Errorf("user add %q: %w", name, err)
		} else if err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		admin := loadAdminConfig(c.getenv)
		if err := checkNotAuthenticator("user add", *role, admin); err != nil {
			return err
		}
		password, err := newPassword(c, name, ps)
		if err != nil {
			return err
		}
		db, err := openDB(ctx, c.getenv)
		if err != nil {
			return err
		}
		defer db.Close()
		return userAdd(ctx, db, name, *role, password, ps.cost, admin, c.stdout, c.stderr)
	}
}

func userPasswd(ctx context.Context, c *cli, args []string) error {
	name := args[0]
	ps, err := readPasswordSettings(c)
	if err != nil {
		return err
	}
	password, err := newPassword(c, name, ps)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, c.getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	hash, err := store.HashPassword(password, ps.cost)
	if err != nil {
		return err
	}
	if err := db.SetPassword(ctx, name, hash); err != nil {
		return notFoundUser(err, name)
	}
	fmt.Fprintf(c.stdout, "user %q: password changed; their sessions are revoked\n", name)
	return auditAdmin(ctx, db, "user_passwd", name, uuid.Nil, nil)
}

func userRole(ctx context.Context, c *cli, args []string) error {
	name, role := args[0], args[1]
	admin := loadAdminConfig(c.getenv)
	if err := checkNotAuthenticator("user role", role, admin); err != nil {
		return err
	}
	return withDB(ctx, c, func(db *store.DB) error {
		if err := db.SetRole(ctx, name, role); err != nil {
			return roleRefused("user role", notFoundUser(err, name))
		}
		fmt.Fprintf(c.stdout, "user %q: role changed to %q; their sessions are revoked\n", name, role)
		if err := auditAdmin(ctx, db, "user_role", name, uuid.Nil, map[string]string{"role": role}); err != nil {
			return err
		}
		return warnAuthenticator(ctx, db, admin.AuthenticatorRole, role, "this user's", c.stderr)
	})
}

// userSetDisabled is user disable and user enable.
func userSetDisabled(disabled bool) func(ctx context.Context, c *cli, args []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		return withDB(ctx, c, func(db *store.DB) error {
			if err := db.SetDisabled(ctx, args[0], disabled); err != nil {
				return notFoundUser(err, args[0])
			}
			event := "user_enable"
			if disabled {
				event = "user_disable"
				fmt.Fprintf(c.stdout, "user %q disabled; their sessions are revoked\n", args[0])
			} else {
				fmt.Fprintf(c.stdout, "user %q enabled\n", args[0])
			}
			return auditAdmin(ctx, db, event, args[0], uuid.Nil, nil)
		})
	}
}

// userSessions lists a user's sessions: never a token or its hash.
func userSessions(ctx context.Context, c *cli, args []string) error {
	return listSessions(ctx, c, args, false)
}

// sessionList is userSessions with where each login came from: the
// client address and User-Agent, last (a User-Agent has spaces).
func sessionList(ctx context.Context, c *cli, args []string) error {
	return listSessions(ctx, c, args, true)
}

func listSessions(ctx context.Context, c *cli, args []string, from bool) error {
	return withDB(ctx, c, func(db *store.DB) error {
		sessions, err := db.Sessions(ctx, args[0])
		if err != nil {
			return notFoundUser(err, args[0])
		}
		now := time.Now()
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		header := "SESSION\tCREATED\tLAST REFRESHED\tEXPIRES\tREVOKED"
		if from {
			header += "\tCLIENT\tUSER AGENT"
		}
		fmt.Fprintln(tw, header)
		for _, s := range sessions {
			exp := formatTime(s.ExpiresAt, "-")
			if s.ExpiresAt != nil && !s.ExpiresAt.After(now) {
				exp += " (expired)"
			}
			revoked := formatTime(s.RevokedAt, "no")
			if s.RevokedAt != nil && s.RevokedReason != "" {
				revoked += " (" + s.RevokedReason + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s", s.ID, formatTime(&s.CreatedAt, ""),
				formatTime(s.LastRefreshedAt, "never"), exp, revoked)
			if from {
				// %q: the User-Agent is the client's text, and must not
				// forge lines or columns on the administrator's terminal.
				fmt.Fprintf(tw, "\t%s\t%q", orDash(s.ClientAddr), s.UserAgent)
			}
			fmt.Fprintln(tw)
		}
		return tw.Flush()
	})
}

// userLogout ends a user's sessions, or one of them.
func userLogout(ctx context.Context, c *cli, args []string) error {
	name := args[0]
	var one uuid.UUID
	if len(args) > 1 {
		var err error
		if one, err = uuid.Parse(args[1]); err != nil || one == uuid.Nil {
			return fmt.Errorf("user logout: %q is not a session id (as in user sessions)", args[1])
		}
	}
	return withDB(ctx, c, func(db *store.DB) error {
		n, err := db.LogoutUser(ctx, name, one)
		switch {
		case errors.Is(err, store.ErrSessionNotFound):
			return fmt.Errorf("user %q has no session %s", name, one)
		case err != nil:
			return notFoundUser(err, name)
		}
		fmt.Fprintf(c.stdout, "user %q: %d session(s) ended\n", name, n)
		return auditAdmin(ctx, db, "user_logout", name, one, map[string]string{"sessions": strconv.FormatInt(int64(n), 10)})
	})
}

// userMFAReset removes a user's second factor and recovery codes and ends
// their sessions (store.ResetMFA).
func userMFAReset(ctx context.Context, c *cli, args []string) error {
	name := args[0]
	return withDB(ctx, c, func(db *store.DB) error {
		had, n, err := db.ResetMFA(ctx, name)
		if err != nil {
			return notFoundUser(err, name)
		}
		what := "second factor removed"
		if !had {
			what = "had no second factor"
		}
		fmt.Fprintf(c.stdout, "user %q: %s; %d session(s) ended\n", name, what, n)
		return auditAdmin(ctx, db, "mfa_reset", name, uuid.Nil, map[string]string{
			"factor_removed": strconv.FormatBool(had), "sessions": strconv.Itoa(n)})
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sessionRevokeCmd ends one session by its id, whoever's it is, or with
// --user every session of a user (as user logout), or with both the one
// session of that user.
func sessionRevokeCmd(fs *flag.FlagSet, c *cli) action {
	user := fs.String("user", "", "end every session of this user (with ID: only that one, which must be theirs)")
	return func(ctx context.Context, args []string) error {
		switch {
		case *user != "":
			return userLogout(ctx, c, append([]string{*user}, args...))
		case len(args) == 0:
			return &usageError{"session revoke", "want a session ID or --user USER"}
		}
		id, err := uuid.Parse(args[0])
		if err != nil || id == uuid.Nil {
			return fmt.Errorf("session revoke: %q is not a session id (as in session list)", args[0])
		}
		return withDB(ctx, c, func(db *store.DB) error {
			name, err := db.RevokeSession(ctx, id)
			if errors.Is(err, store.ErrSessionNotFound) {
				return fmt.Errorf("no session %s", id)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "session %s of user %q ended\n", id, name)
			return nil
		})
	}
}

func userDel(ctx context.Context, c *cli, args []string) error {
	return withDB(ctx, c, func(db *store.DB) error {
		if err := db.DeleteUser(ctx, args[0]); err != nil {
			return notFoundUser(err, args[0])
		}
		fmt.Fprintf(c.stdout, "user %q deleted, with their sessions\n", args[0])
		return auditAdmin(ctx, db, "user_del", args[0], uuid.Nil, nil)
	})
}

// readBcryptCost is AUTHD_BCRYPT_COST, for the commands that need no
// other setting.
func readBcryptCost(c *cli) (int, error) {
	e := &env{getenv: c.getenv}
	cost := bcryptCost(e)
	return cost, errors.Join(e.errs...)
}

// userListCmd is user list; --stale-hashes lists only the users whose
// password hash is not at AUTHD_BCRYPT_COST, with the cost.
func userListCmd(fs *flag.FlagSet, c *cli) action {
	stale := fs.Bool("stale-hashes", false, "list only users whose password hash is not at AUTHD_BCRYPT_COST (see user expire-password)")
	return func(ctx context.Context, _ []string) error {
		cost, err := readBcryptCost(c)
		if err != nil {
			return err
		}
		return withDB(ctx, c, func(db *store.DB) error {
			users, err := db.Users(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			header := "USERNAME\tROLE\tCREATED\tDISABLED"
			if *stale {
				header += "\tHASH COST"
			}
			fmt.Fprintln(tw, header)
			for _, u := range users {
				hashCost, staleHash := hashCostOf(u.PasswordHash, cost)
				if *stale && !staleHash {
					continue
				}
				r := u.Role
				switch {
				case !u.RoleExists:
					r += " (missing)"
				case u.RoleRefusal != "":
					r += " (refused: " + u.RoleRefusal + ")"
				}
				line := fmt.Sprintf("%s\t%s\t%s\t%s", u.Username, r, formatTime(&u.CreatedAt, ""), formatTime(u.DisabledAt, "no"))
				if *stale {
					line += "\t" + hashCost
				}
				fmt.Fprintln(tw, line)
			}
			return tw.Flush()
		})
	}
}

// hashCostOf says at what bcrypt cost hash was made, and whether that is
// not cost. A cheaper hash is easier to crack if the database leaks (a
// wrong password is answered as slowly as any: identity.CheckPassword
// adds a compare at cost); a dearer one answers a wrong password slower
// than an unknown user's. A login re-hashes the first, not the second.
func hashCostOf(hash string, cost int) (string, bool) {
	c, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return "unusable", true
	}
	return strconv.Itoa(c), c != cost
}

// userExpirePassword replaces a user's password by a random one nobody
// knows, hashed at AUTHD_BCRYPT_COST, and ends their sessions: for an
// old hash (user list --stale-hashes) of an account whose owner has not
// logged in to have it upgraded. The account stays; user passwd gives it
// a password again.
func userExpirePassword(ctx context.Context, c *cli, args []string) error {
	name := args[0]
	cost, err := readBcryptCost(c)
	if err != nil {
		return err
	}
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		return fmt.Errorf("user expire-password: %w", err)
	}
	hash, err := store.HashPassword(base64.RawURLEncoding.EncodeToString(random), cost)
	if err != nil {
		return err
	}
	return withDB(ctx, c, func(db *store.DB) error {
		if err := db.SetPassword(ctx, name, hash); err != nil {
			return notFoundUser(err, name)
		}
		fmt.Fprintf(c.stdout, "user %q: password expired, no password works until 'authd user passwd'; their sessions are revoked\n", name)
		return auditAdmin(ctx, db, "user_expire_password", name, uuid.Nil, nil)
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
		return roleRefused("user add", err)
	}
	fmt.Fprintf(stdout, "user %q added with role %q\n", name, role)
	if err := auditAdmin(ctx, db, "user_add", name, uuid.Nil, map[string]string{"role": role}); err != nil {
		return err
	}
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

// roleRefused words the database's refusal of a role for the command
// cmd: the fix for a missing role, the rule for a privileged one. Never
// advice to grant it.
func roleRefused(cmd string, err error) error {
	var (
		missing    *store.RoleMissingError
		privileged *store.RolePrivilegedError
	)
	switch {
	case errors.As(err, &missing):
		return fmt.Errorf("%s: role %q does not exist (create it first: create role %s;)", cmd, missing.Role, pgx.Identifier{missing.Role}.Sanitize())
	case errors.As(err, &privileged):
		return fmt.Errorf("%s: %v; use a NOLOGIN role without SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION, not a predefined pg_* role nor a member of one of those", cmd, privileged)
	}
	return err
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

// userResetLinkCmd prints a password reset link for a user, for an admin
// to hand over: a one-time token, valid for AUTHD_RESET_TTL, that kills
// the user's earlier ones. It is not announced to the mail worker.
func userResetLinkCmd(fs *flag.FlagSet, c *cli) action {
	base := fs.String("base", "", "the site's address; the link is BASE/reset?token=... (default AUTHD_RESET_LINK_BASE, else AUTHD_JWT_ISS)")
	return func(ctx context.Context, args []string) error {
		name := args[0]
		b := cmp.Or(*base, c.getenv("AUTHD_RESET_LINK_BASE"), c.getenv("AUTHD_JWT_ISS"))
		if b == "" {
			return &usageError{"user reset-link", "want --base URL (or AUTHD_RESET_LINK_BASE or AUTHD_JWT_ISS set)"}
		}
		e := &env{getenv: c.getenv}
		ttl := e.duration("AUTHD_RESET_TTL", identity.DefaultResetTTL)
		if err := errors.Join(e.errs...); err != nil {
			return err
		}
		plain, hash, err := token.NewRefresh()
		if err != nil {
			return err
		}
		return withDB(ctx, c, func(db *store.DB) error {
			issued, expires, err := db.IssueResetToken(ctx, name, plain, hash, ttl, false)
			if err != nil {
				return err
			}
			if !issued {
				return fmt.Errorf("user %q does not exist or is disabled", name)
			}
			fmt.Fprintln(c.stdout, notify.Link(b, plain))
			fmt.Fprintf(c.stderr, "valid until %s, once; earlier reset links of %q no longer work\n", expires.UTC().Format(time.RFC3339), name)
			return auditAdmin(ctx, db, "password_reset_link", name, uuid.Nil, nil)
		})
	}
}
