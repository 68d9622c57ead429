package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"authd/store"
)

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// natsSubjectFlags are the flags of nats grant and revoke that name
// subjects, with the permission kind of each.
var natsSubjectFlags = []struct{ name, kind, usage string }{
	{"pub", store.NATSPubAllow, "subject the role may publish to (repeatable)"},
	{"sub", store.NATSSubAllow, "subject the role may subscribe to (repeatable)"},
	{"deny-pub", store.NATSPubDeny, "subject the role may not publish to (repeatable)"},
	{"deny-sub", store.NATSSubDeny, "subject the role may not subscribe to (repeatable)"},
}

// natsChange is one grant or revocation of the command line.
type natsChange struct{ flag, kind, subject string }

// natsChangeCmd is nats grant or nats revoke (sub). They define the same
// flags, so that a flag of the other one gets a message saying so.
func natsChangeCmd(sub string) func(*flag.FlagSet, *cli) action {
	return func(fs *flag.FlagSet, c *cli) action {
		lists := make([]stringList, len(natsSubjectFlags))
		for i, f := range natsSubjectFlags {
			fs.Var(&lists[i], f.name, f.usage)
		}
		allowResponses := fs.Bool("allow-responses", false, "grant: the role may answer requests")
		maxResponses := fs.Int("max-responses", 0, "grant: responses allowed per request (default: the NATS server's, 1)")
		responseTTL := fs.Duration("response-ttl", 0, "grant: how long a request may be answered (default: the NATS server's, 2m)")
		responses := fs.Bool("responses", false, "revoke: the role may no longer answer requests")
		return func(ctx context.Context, pos []string) error {
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

			// Check what needs no database before connecting.
			var changes []natsChange
			seen := map[natsChange]bool{}
			for i, f := range natsSubjectFlags {
				for _, s := range lists[i] {
					if err := store.CheckNATSSubject(s); err != nil {
						return fmt.Errorf("nats %s: --%s: %w", sub, f.name, err)
					}
					if c := (natsChange{f.name, f.kind, s}); !seen[c] { // a repeated flag counts once
						seen[c] = true
						changes = append(changes, c)
					}
				}
			}
			switch sub {
			case "grant":
				if set["responses"] {
					return errors.New("nats grant: --responses applies only to nats revoke (grant them with --allow-responses)")
				}
				if (set["max-responses"] || set["response-ttl"]) && !*allowResponses {
					return errors.New("nats grant: --max-responses and --response-ttl need --allow-responses")
				}
				if set["max-responses"] && *maxResponses <= 0 {
					return fmt.Errorf("nats grant: bad --max-responses %d: want a positive number", *maxResponses)
				}
				if set["response-ttl"] && (*responseTTL <= 0 || *responseTTL%time.Microsecond != 0) {
					return fmt.Errorf("nats grant: bad --response-ttl %s: want a positive duration such as 30s or 5m", *responseTTL)
				}
				if len(changes) == 0 && !*allowResponses {
					return errors.New("nats grant: nothing to grant: give --pub, --sub, --deny-pub, --deny-sub or --allow-responses")
				}
			case "revoke":
				if set["allow-responses"] || set["max-responses"] || set["response-ttl"] {
					return errors.New("nats revoke: --allow-responses, --max-responses and --response-ttl apply only to nats grant (revoke responses with --responses)")
				}
				if len(changes) == 0 && !*responses {
					return errors.New("nats revoke: nothing to revoke: give --pub, --sub, --deny-pub, --deny-sub or --responses")
				}
			}

			db, err := openDB(ctx, c.getenv)
			if err != nil {
				return err
			}
			defer db.Close()
			if sub == "grant" {
				return natsGrant(ctx, db, pos[0], changes, *allowResponses, *maxResponses, *responseTTL, c.stdout)
			}
			return natsRevoke(ctx, db, pos[0], changes, *responses, c.stdout)
		}
	}
}

func natsListCmd(ctx context.Context, c *cli, args []string) error {
	return withDB(ctx, c, func(db *store.DB) error {
		role := ""
		if len(args) == 1 {
			role = args[0]
		}
		return natsList(ctx, db, role, c.stdout)
	})
}

// natsGrant grants changes to role, and lets it answer requests if
// allowResponses, then prints what it did. The store writes them all in
// one transaction, so a refused subject or a missing role grants nothing.
func natsGrant(ctx context.Context, db *store.DB, role string, changes []natsChange, allowResponses bool, max int, ttl time.Duration, stdout io.Writer) error {
	var responses *store.NATSResponseLimits
	if allowResponses {
		responses = &store.NATSResponseLimits{Max: max, TTL: ttl}
	}
	if err := db.GrantNATSRules(ctx, role, natsRules(changes), responses); err != nil {
		return natsRoleError("grant", role, err)
	}
	for _, c := range changes {
		fmt.Fprintf(stdout, "granted NATS %s %s to %s\n", c.kind, c.subject, role)
	}
	if allowResponses {
		fmt.Fprintf(stdout, "granted NATS allow_responses to %s (max %s, ttl %s)\n", role, formatResponseMax(max), formatResponseTTL(ttl))
	}
	return nil
}

// natsRevoke revokes changes from role, and its responses if responses,
// then prints what it did. The store deletes them all in one transaction:
// if one of them is not there, nothing is revoked.
func natsRevoke(ctx context.Context, db *store.DB, role string, changes []natsChange, responses bool, stdout io.Writer) error {
	err := db.RevokeNATSRules(ctx, role, natsRules(changes), responses)
	var missing *store.NATSNotGrantedError
	switch {
	case errors.As(err, &missing) && missing.Responses:
		return fmt.Errorf("nats revoke %s: responses are not allowed (--responses): nothing to revoke", role)
	case errors.As(err, &missing):
		i := slices.IndexFunc(changes, func(c natsChange) bool { return c.kind == missing.Rule.Kind && c.subject == missing.Rule.Subject })
		return fmt.Errorf("nats revoke %s: no %s grant of %q (--%s): nothing to revoke", role, missing.Rule.Kind, missing.Rule.Subject, changes[i].flag)
	case err != nil:
		return err
	}
	for _, c := range changes {
		fmt.Fprintf(stdout, "revoked NATS %s %s from %s\n", c.kind, c.subject, role)
	}
	if responses {
		fmt.Fprintf(stdout, "revoked NATS allow_responses from %s\n", role)
	}
	return nil
}

func natsRules(changes []natsChange) []store.NATSRule {
	rules := make([]store.NATSRule, len(changes))
	for i, c := range changes {
		rules[i] = store.NATSRule{Kind: c.kind, Subject: c.subject}
	}
	return rules
}

// natsList prints the grants and response settings of role, or of every
// role if role is "".
func natsList(ctx context.Context, db *store.DB, role string, stdout io.Writer) error {
	grants, err := db.NATSGrants(ctx)
	if err != nil {
		return err
	}
	settings, err := db.NATSResponseSettings(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tKIND\tSUBJECT")
	for _, g := range grants {
		if role == "" || g.Role == role {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", markMissing(g.Role, g.RoleExists), g.Kind, g.Subject)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var rows []store.NATSResponses
	for _, s := range settings {
		if role == "" || s.Role == role {
			rows = append(rows, s)
		}
	}
	var responses, mfa []store.NATSResponses
	for _, s := range rows {
		if s.Allow {
			responses = append(responses, s)
		}
		if s.RequireMFA {
			mfa = append(mfa, s)
		}
	}
	if len(responses) > 0 {
		fmt.Fprintln(stdout)
		fmt.Fprintln(tw, "ROLE\tRESPONSES\tMAX\tTTL")
		for _, s := range responses {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", markMissing(s.Role, s.RoleExists), "allowed", formatResponseMax(s.Max), formatResponseTTL(s.TTL))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(mfa) > 0 {
		fmt.Fprintln(stdout)
		fmt.Fprintln(tw, "ROLE\tMFA")
		for _, s := range mfa {
			fmt.Fprintf(tw, "%s\t%s\n", markMissing(s.Role, s.RoleExists), "required (aal2)")
		}
	}
	return tw.Flush()
}

func markMissing(role string, exists bool) string {
	if exists {
		return role
	}
	return role + " (missing)"
}

func formatResponseMax(n int) string {
	if n == 0 {
		return "1 (default)"
	}
	return strconv.Itoa(n)
}

func formatResponseTTL(d time.Duration) string {
	if d == 0 {
		return "2m0s (default)"
	}
	return d.String()
}

// natsRoleError words the store's typed errors as one line for the CLI.
func natsRoleError(cmd, role string, err error) error {
	var missing *store.RoleMissingError
	if errors.As(err, &missing) {
		return fmt.Errorf("nats %s: role %q does not exist (create it first: create role %s;)", cmd, role, pgx.Identifier{role}.Sanitize())
	}
	return err
}

// natsRequireMFACmd sets whether the callout admits a role only with an
// aal2 access token.
func natsRequireMFACmd(ctx context.Context, c *cli, args []string) error {
	role := args[0]
	var on bool
	switch args[1] {
	case "on":
		on = true
	case "off":
	default:
		return &usageError{"nats require-mfa", fmt.Sprintf("MODE is on or off, got %q", args[1])}
	}
	return withDB(ctx, c, func(db *store.DB) error {
		if err := db.SetNATSRequireMFA(ctx, role, on); err != nil {
			return natsRoleError("require-mfa", role, err)
		}
		if on {
			fmt.Fprintf(c.stdout, "NATS role %s: admitted only with an aal2 access token\n", role)
		} else {
			fmt.Fprintf(c.stdout, "NATS role %s: admitted with any credential\n", role)
		}
		return auditAdmin(ctx, db, "nats_require_mfa", "", uuid.Nil, map[string]string{"role": role, "mode": args[1]})
	})
}

func natsMapCmd(ctx context.Context, c *cli, args []string) error {
	pattern, role := args[0], args[1]
	if err := store.CheckNATSWorkloadPattern(pattern); err != nil {
		return fmt.Errorf("nats map: %w", err)
	}
	return withDB(ctx, c, func(db *store.DB) error {
		if err := db.MapNATSWorkload(ctx, pattern, role); err != nil {
			return natsRoleError("map", role, err)
		}
		fmt.Fprintf(c.stdout, "mapped NATS workload %s to %s\n", pattern, role)
		return nil
	})
}

func natsUnmapCmd(ctx context.Context, c *cli, args []string) error {
	pattern := args[0]
	return withDB(ctx, c, func(db *store.DB) error {
		role, err := db.UnmapNATSWorkload(ctx, pattern)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("nats unmap: no mapping %q: nothing to unmap", pattern)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "unmapped NATS workload %s (was %s)\n", pattern, role)
		return nil
	})
}

// natsMappingsCmd prints every mapping of service accounts to roles.
func natsMappingsCmd(ctx context.Context, c *cli, _ []string) error {
	return withDB(ctx, c, func(db *store.DB) error {
		mappings, err := db.NATSWorkloadMappings(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PATTERN\tROLE")
		for _, m := range mappings {
			fmt.Fprintf(tw, "%s\t%s\n", m.Pattern, markMissing(m.Role, m.RoleExists))
		}
		return tw.Flush()
	})
}
