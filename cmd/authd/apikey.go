package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"authd/store"
	"authd/token"
)

func apiKeyCreateCmd(fs *flag.FlagSet, c *cli) action {
	plan := fs.String("plan", "", "plan of the key (required)")
	role := fs.String("role", "", "database role of the key (default: the plan's)")
	expires := fs.String("expires", "", "lifetime of the key, such as 30d, 12h or 1d12h (default: the plan's)")
	return func(ctx context.Context, _ []string) error {
		// Check what needs no database before connecting.
		if *plan == "" {
			return &usageError{"apikey create", "--plan PLAN is required"}
		}
		var lifetime time.Duration
		if *expires != "" {
			var err error
			if lifetime, err = parseLifetime(*expires); err != nil {
				return fmt.Errorf("apikey create: %w", err)
			}
		}
		db, err := openDB(ctx, c.getenv)
		if err != nil {
			return err
		}
		defer db.Close()
		return apiKeyCreate(ctx, db, *plan, *role, lifetime, loadAdminConfig(c.getenv), c.stdout, c.stderr)
	}
}

func apiKeyListCmd(ctx context.Context, c *cli, _ []string) error {
	return withDB(ctx, c, func(db *store.DB) error {
		return apiKeyList(ctx, db, c.stdout)
	})
}

// checkAPIKeyID refuses, before connecting, what is not a key id.
func checkAPIKeyID(cmd, id string) error {
	if kid, _, ok := token.ParseAPIKey(id); ok {
		// Not echoed: the key is a secret, and this line may end up
		// in a log.
		return fmt.Errorf("%s: give the key's id (%s), not the key itself", cmd, kid)
	}
	if !token.ValidAPIKeyID(id) {
		return fmt.Errorf("%s: %q is not an api key id (%d characters of a-z and 2-7, as in apikey list)", cmd, id, token.APIKeyIDLen)
	}
	return nil
}

// withAPIKey checks the key id of args before it connects, then runs f.
func withAPIKey(ctx context.Context, c *cli, cmd string, args []string, f func(db *store.DB, id string) error) error {
	id := args[0]
	if err := checkAPIKeyID(cmd, id); err != nil {
		return err
	}
	return withDB(ctx, c, func(db *store.DB) error { return f(db, id) })
}

func apiKeyDisable(ctx context.Context, c *cli, args []string) error {
	return withAPIKey(ctx, c, "apikey disable", args, func(db *store.DB, id string) error {
		if err := db.DisableAPIKey(ctx, id); err != nil {
			return notFoundAPIKey(err, id)
		}
		fmt.Fprintf(c.stdout, "api key %s disabled\n", id)
		return auditAdmin(ctx, db, "apikey_disable", "", uuid.Nil, map[string]string{"key_id": id})
	})
}

func apiKeyRotate(ctx context.Context, c *cli, args []string) error {
	return withAPIKey(ctx, c, "apikey rotate", args, func(db *store.DB, id string) error {
		plain, hash, err := token.NewAPIKeySecret(id)
		if err != nil {
			return err
		}
		if err := db.RotateAPIKey(ctx, id, hash); err != nil {
			return notFoundAPIKey(err, id)
		}
		k, err := db.APIKey(ctx, id)
		if err != nil {
			return err
		}
		printAPIKey(c.stdout, plain, k)
		fmt.Fprintln(c.stderr, "The old key is revoked. Store the new one now: it cannot be shown again.")
		return auditAdmin(ctx, db, "apikey_rotate", "", uuid.Nil, map[string]string{"key_id": id})
	})
}

// apiKeyCreate creates a key and prints it, the only time it is ever
// shown: only its hash is stored.
func apiKeyCreate(ctx context.Context, db *store.DB, plan, role string, lifetime time.Duration, admin adminConfig, stdout, stderr io.Writer) error {
	id, plain, hash, err := token.NewAPIKey()
	if err != nil {
		return err
	}
	var expiresAt *time.Time
	if lifetime > 0 {
		t := time.Now().Add(lifetime)
		expiresAt = &t
	}
	k, err := db.CreateAPIKey(ctx, id, hash, role, plan, expiresAt)
	if err != nil {
		var missing *store.RoleMissingError
		switch {
		case errors.Is(err, store.ErrPlanNotFound):
			return fmt.Errorf("apikey create: plan %q does not exist (plans are rows of auth.plan)", plan)
		case errors.As(err, &missing):
			return fmt.Errorf("apikey create: role %q does not exist (create it first: create role %s;)", missing.Role, pgx.Identifier{missing.Role}.Sanitize())
		}
		return err
	}
	printAPIKey(stdout, plain, k)
	fmt.Fprintln(stderr, "Store the key now: it cannot be shown again.")
	if err := auditAdmin(ctx, db, "apikey_create", "", uuid.Nil, map[string]string{"key_id": k.ID, "role": k.Role, "plan": k.Plan}); err != nil {
		return err
	}
	return warnAuthenticator(ctx, db, admin.AuthenticatorRole, k.Role, "this key's", stderr)
}

// printAPIKey prints a new or rotated key with its details. The key line
// is the only place the plaintext ever appears.
func printAPIKey(w io.Writer, plain string, k store.APIKey) {
	fmt.Fprintf(w, "key:     %s\n", plain)
	fmt.Fprintf(w, "id:      %s\n", k.ID)
	fmt.Fprintf(w, "role:    %s\n", k.Role)
	fmt.Fprintf(w, "plan:    %s\n", k.Plan)
	fmt.Fprintf(w, "expires: %s\n", formatTime(k.ExpiresAt, "never"))
}

func apiKeyList(ctx context.Context, db *store.DB, stdout io.Writer) error {
	keys, err := db.APIKeys(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tPLAN\tENABLED\tEXPIRES\tLAST USED\tCREATED")
	for _, k := range keys {
		r := k.Role
		if !k.RoleExists {
			r += " (missing)"
		}
		enabled := "yes"
		if !k.Enabled {
			enabled = "no"
		}
		exp := formatTime(k.ExpiresAt, "never")
		if k.ExpiresAt != nil && !k.ExpiresAt.After(now) {
			exp += " (expired)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, r, k.Plan, enabled, exp,
			formatTime(k.LastUsedAt, "never"), formatTime(&k.CreatedAt, ""))
	}
	return tw.Flush()
}

func formatTime(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func notFoundAPIKey(err error, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("api key %s does not exist", id)
	}
	return err
}

var daysRe = regexp.MustCompile(`^([0-9]+)d(.*)$`)

// parseLifetime reads --expires: a Go duration (12h, 90m), a number of days
// (30d), or both (1d12h).
func parseLifetime(s string) (time.Duration, error) {
	bad := fmt.Errorf("bad --expires %q: want a positive duration such as 30d, 12h or 1d12h", s)
	var d time.Duration
	rest := s
	if m := daysRe.FindStringSubmatch(s); m != nil {
		days, err := strconv.Atoi(m[1])
		if err != nil || days > 100*365 {
			return 0, bad
		}
		d = time.Duration(days) * 24 * time.Hour
		rest = m[2]
	}
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, bad
		}
		d += r
	}
	if d <= 0 {
		return 0, bad
	}
	return d, nil
}
