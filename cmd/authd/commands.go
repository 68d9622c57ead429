package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one authd command line: how its usage reads, its flags, and
// what it does. Every command parses its flags the same way (exec), so
// -h and --help work alike everywhere and touch nothing.
type command struct {
	name     string // "user add"
	params   string // positional arguments, "NAME" or "[ROLE]"; bracketed ones are optional
	synopsis string // the flags, for the usage line: "--role ROLE"
	summary  string // one line, for the command list
	about    string // more, for the command's own help; optional
	// setup defines the command's flags on fs and returns what runs the
	// command with its positional arguments. It must do nothing else:
	// it runs for --help too.
	setup func(fs *flag.FlagSet, c *cli) action
}

type action func(ctx context.Context, args []string) error

// simple is the setup of a command without flags.
func simple(f func(ctx context.Context, c *cli, args []string) error) func(*flag.FlagSet, *cli) action {
	return func(_ *flag.FlagSet, c *cli) action {
		return func(ctx context.Context, args []string) error { return f(ctx, c, args) }
	}
}

// commands is every command, in the order of the usage.
func commands() []command {
	return []command{
		{name: "serve", summary: "run the HTTP server",
			about: "Waits up to AUTHD_DB_WAIT (60s) for PostgreSQL at start-up, answering /healthz meanwhile.\n" +
				"Configuration comes from the environment; see the configuration table in README.md.",
			setup: simple(runServe)},
		{name: "nats-callout", summary: "answer NATS auth callout requests with authd's users, tokens, API keys and grants",
			about: "Waits up to AUTHD_DB_WAIT (60s) for PostgreSQL at start-up.\n" +
				"Configuration comes from the environment (serve's, and AUTHD_NATS_*); see README.md.",
			setup: simple(runNATSCallout)},
		{name: "migrate up", summary: "apply every pending migration", setup: simple(migrateUp)},
		{name: "migrate down", summary: "revert the last migration", setup: simple(migrateDown)},
		{name: "migrate down-to", params: "VERSION", summary: "revert every migration above VERSION", setup: simple(migrateDownTo)},
		{name: "migrate status", summary: "list migrations, applied or pending", setup: simple(migrateStatus)},
		{name: "seed", summary: "add the demo role and user (development only)", setup: simple(runSeed)},
		{name: "user add", params: "NAME", synopsis: "--role ROLE", summary: "add a user; password from stdin or a prompt",
			about: passwordPolicy + "\nThe role may not be a superuser, LOGIN or predefined pg_* role, or have BYPASSRLS, CREATEROLE,\n" +
				"CREATEDB or REPLICATION, or be a member of such a role.", setup: userAddCmd},
		{name: "user passwd", params: "NAME", summary: "change a user's password (from stdin or a prompt); ends their sessions",
			about: passwordPolicy, setup: simple(userPasswd)},
		{name: "user role", params: "NAME ROLE", summary: "give a user another role; ends their sessions", setup: simple(userRole)},
		{name: "user disable", params: "NAME", summary: "refuse a user's logins and end their sessions", setup: simple(userSetDisabled(true))},
		{name: "user enable", params: "NAME", summary: "let a disabled user log in again", setup: simple(userSetDisabled(false))},
		{name: "user expire-password", params: "NAME", summary: "replace a user's password by a random one nobody knows; ends their sessions",
			about: "For an account whose hash is not at AUTHD_BCRYPT_COST (user list --stale-hashes): a cheaper one is easier to\n" +
				"crack if the database leaks, a dearer one answers a wrong password slower than for an unknown user. The new\n" +
				"hash is at AUTHD_BCRYPT_COST; user passwd gives the account a password again.", setup: simple(userExpirePassword)},
		{name: "user del", params: "NAME", summary: "delete a user and their sessions", setup: simple(userDel)},
		{name: "user list", synopsis: "[--stale-hashes]", summary: "list users", setup: userListCmd},
		{name: "user sessions", params: "NAME", summary: "list a user's sessions (ids and times, never tokens)", setup: simple(userSessions)},
		{name: "user logout", params: "NAME [SESSION]", summary: "end every session of a user, or the one SESSION",
			about: "Their refresh tokens stop working at once; access tokens already issued live out their AUTHD_ACCESS_TTL.",
			setup: simple(userLogout)},
		{name: "user reset-link", params: "NAME", synopsis: "[--base URL]", summary: "print a one-time password reset link for a user (BASE/reset?token=...)",
			about: "Valid for AUTHD_RESET_TTL (30m); it ends the user's earlier reset links. BASE defaults to AUTHD_RESET_LINK_BASE, else AUTHD_JWT_ISS.",
			setup: userResetLinkCmd},
		{name: "user mfa-reset", params: "NAME", summary: "remove a user's second factor (TOTP) and recovery codes; ends their sessions",
			about: "For a user who lost their device: they log in with their password alone and may enroll again\n" +
				"(POST /rpc/mfa_enroll). Every session of theirs ends, as one opened with the lost factor may be a thief's.",
			setup: simple(userMFAReset)},
		{name: "session list", params: "USER", summary: "list a user's sessions, with client address and User-Agent at login (never tokens)",
			setup: simple(sessionList)},
		{name: "session revoke", params: "[ID]", synopsis: "[--user USER]", summary: "end one session (an id from session list), or every session of --user USER",
			about: "Their refresh tokens stop working at once; their access tokens stop passing /auth/verify and the NATS callout\n" +
				"within a second, and live out their AUTHD_ACCESS_TTL at verifiers that only check signatures (PostgREST).\n" +
				"user logout NAME [SESSION] does the same.",
			setup: sessionRevokeCmd},
		{name: "apikey create", synopsis: "--plan PLAN [--role ROLE] [--expires 30d]",
			summary: "add an API key (role and expiry default to the plan's); prints the key once", setup: apiKeyCreateCmd},
		{name: "apikey list", summary: "list API keys (ids only, never the keys)", setup: simple(apiKeyListCmd)},
		{name: "apikey disable", params: "ID", summary: "disable an API key", setup: simple(apiKeyDisable)},
		{name: "apikey rotate", params: "ID", summary: "give an API key a new secret; prints it once", setup: simple(apiKeyRotate)},
		{name: "audit", synopsis: "[--user U] [--since 24h] [--event E] [--limit 1000] [--json]",
			summary: "show the audit log: logins, logouts, replayed refresh tokens, admin actions",
			about: "Oldest first; the newest --limit events of the --since window. --since takes days too (7d).\n" +
				"Events, outcomes and columns are described in docs/operating.md.", setup: auditCmd},
		{name: "nats grant", params: "ROLE", synopsis: "[--pub S] [--sub S] [--deny-pub S] [--deny-sub S] [--allow-responses ...]",
			summary: "let a role publish or subscribe to NATS subjects, or deny it, or answer requests",
			about:   "Subject flags are repeatable; subjects may use the wildcards * and >.", setup: natsChangeCmd("grant")},
		{name: "nats revoke", params: "ROLE", synopsis: "[--pub S] [--sub S] [--deny-pub S] [--deny-sub S] [--responses]",
			summary: "take NATS grants back from a role", setup: natsChangeCmd("revoke")},
		{name: "nats list", params: "[ROLE]", summary: "list NATS grants and response settings", setup: simple(natsListCmd)},
		{name: "nats map", params: "PATTERN ROLE", summary: "give Kubernetes service accounts a role's NATS grants",
			about: "PATTERN is NAMESPACE/NAME, or NAMESPACE/* for every service account of the namespace; a service account\n" +
				"with both gets the NAMESPACE/NAME one's role. Mapping a pattern again replaces its role. The role follows\n" +
				"the rules of user add. Used when the callout takes workload permissions from authd (docs/nats.md).",
			setup: simple(natsMapCmd)},
		{name: "nats unmap", params: "PATTERN", summary: "remove a service account mapping", setup: simple(natsUnmapCmd)},
		{name: "nats mappings", summary: "list the mappings of service accounts to roles", setup: simple(natsMappingsCmd)},
		{name: "nats require-mfa", params: "ROLE MODE", summary: "admit a role on NATS only with an aal2 access token (MODE on), or again as any (off)",
			about: "With on, the callout refuses the role's passwords, API keys and aal1 tokens: a user connects with the access\n" +
				"token of a session verified with /rpc/mfa_verify (docs/security.md, Second factor). The role's grants stay.",
			setup: simple(natsRequireMFACmd)},
		{name: "keygen", synopsis: "--alg ES256 --out DIR", summary: "write a new signing key DIR/<kid>.pem (ES256, EdDSA or RS256)", setup: keygenCmd},
		{name: "jwks", synopsis: "[--dir DIR]", summary: "print the public keys as a JWKS, for PostgREST's jwt-secret", setup: jwksCmd},
		{name: "version", summary: "print the version and VCS revision authd was built from", setup: simple(runVersion)},
	}
}

// passwordPolicy is the help of the commands that set a password.
const passwordPolicy = "The password needs at least AUTHD_PASSWORD_MIN_LENGTH (8) characters, at most 72 bytes, and may be\n" +
	"neither one of the most common passwords nor the username."

// usageError is a command line authd could not understand: one line, and
// where to read the usage.
type usageError struct {
	cmd string // "user add", or "" for authd itself
	msg string
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return fmt.Sprintf("%s; run 'authd --help' for usage", e.msg)
	}
	return fmt.Sprintf("%s: %s; run 'authd %s --help' for usage", e.cmd, e.msg, e.cmd)
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// group is the first word of a two-word command ("user" of "user add").
func (cmd command) group() string {
	g, _, _ := strings.Cut(cmd.name, " ")
	return g
}

func isGroup(cmds []command, word string) bool {
	for _, c := range cmds {
		if c.group() == word && c.name != word {
			return true
		}
	}
	return false
}

// subcommands is "add, passwd, del or list" for group "user".
func subcommands(cmds []command, group string) string {
	var subs []string
	for _, c := range cmds {
		if c.group() == group && c.name != group {
			subs = append(subs, strings.TrimPrefix(c.name, group+" "))
		}
	}
	if len(subs) < 2 {
		return strings.Join(subs, "")
	}
	return strings.Join(subs[:len(subs)-1], ", ") + " or " + subs[len(subs)-1]
}

// lookup finds the command words name and returns it with the words after
// its name. It returns no command and no error for a group's --help
// ("authd user --help").
func lookup(cmds []command, words []string) (*command, []string, error) {
	find := func(name string) *command {
		for i := range cmds {
			if cmds[i].name == name {
				return &cmds[i]
			}
		}
		return nil
	}
	if isGroup(cmds, words[0]) {
		g := words[0]
		switch {
		case len(words) == 1:
			return nil, nil, &usageError{g, "missing command: want " + subcommands(cmds, g)}
		case isHelp(words[1]):
			return nil, nil, nil
		}
		if cmd := find(g + " " + words[1]); cmd != nil {
			return cmd, words[2:], nil
		}
		return nil, nil, &usageError{g, fmt.Sprintf("unknown %s command %q: want %s", g, words[1], subcommands(cmds, g))}
	}
	if cmd := find(words[0]); cmd != nil {
		return cmd, words[1:], nil
	}
	return nil, nil, &usageError{"", fmt.Sprintf("unknown command %q", words[0])}
}

// flags is the command's flag set, with its flags defined.
func (cmd command) flags(c *cli) (*flag.FlagSet, action) {
	fs := flag.NewFlagSet("authd "+cmd.name, flag.ContinueOnError)
	// Errors are returned, and help printed, by exec: the flag package
	// prints neither.
	fs.SetOutput(io.Discard)
	return fs, cmd.setup(fs, c)
}

// exec parses args and runs the command. -h or --help anywhere prints the
// command's help and runs nothing.
func (cmd command) exec(ctx context.Context, c *cli, args []string) error {
	fs, act := cmd.flags(c)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		cmd.printHelp(c.stdout)
		return nil
	}
	if err != nil {
		return &usageError{cmd.name, err.Error()}
	}
	if err := cmd.checkArgs(pos); err != nil {
		return err
	}
	return act(ctx, pos)
}

// checkArgs compares the positional arguments with params.
func (cmd command) checkArgs(pos []string) error {
	params := strings.Fields(cmd.params)
	required := 0
	for _, p := range params {
		if !strings.HasPrefix(p, "[") {
			required++
		}
	}
	switch {
	case len(params) == 0 && len(pos) > 0:
		return &usageError{cmd.name, fmt.Sprintf("takes no arguments, got %q", pos)}
	case len(pos) < required || len(pos) > len(params):
		return &usageError{cmd.name, fmt.Sprintf("want %s, got %d argument(s)", cmd.params, len(pos))}
	}
	return nil
}

// usageLine is "user add NAME --role ROLE".
func (cmd command) usageLine() string {
	return strings.Join(strings.Fields(cmd.name+" "+cmd.params+" "+cmd.synopsis), " ")
}

// printHelp prints the command's usage, what it does and its flags.
func (cmd command) printHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: authd %s\n\n%s.\n", cmd.usageLine(), upperFirst(cmd.summary))
	if cmd.about != "" {
		fmt.Fprintf(w, "%s\n", cmd.about)
	}
	fs, _ := cmd.flags(&cli{getenv: func(string) string { return "" }})
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(w, "\nflags (as -flag or --flag, before or after the arguments):\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// printUsage prints the commands of group, or all of them for "".
func printUsage(w io.Writer, cmds []command, group string) {
	if group == "" {
		fmt.Fprintf(w, "usage: authd <command> [arguments]\n\ncommands:\n")
	} else {
		fmt.Fprintf(w, "usage: authd %s <command> [arguments]\n\ncommands:\n", group)
	}
	for _, cmd := range cmds {
		if group != "" && cmd.group() != group {
			continue
		}
		line := cmd.usageLine()
		if len(line) > 28 {
			fmt.Fprintf(w, "  %s\n  %-28s %s\n", line, "", cmd.summary)
		} else {
			fmt.Fprintf(w, "  %-28s %s\n", line, cmd.summary)
		}
	}
	if group == "" {
		fmt.Fprintf(w, "  %-28s %s\n", "help [COMMAND]", "print the help of a command")
		fmt.Fprintf(w, "\nRun 'authd COMMAND --help' for a command's flags.\nConfiguration comes from the environment; see README.md.\n")
	} else {
		fmt.Fprintf(w, "\nRun 'authd %s COMMAND --help' for a command's flags.\n", group)
	}
}

func joinWords(words []string) string { return strings.Join(words, " ") }

// parseInterspersed parses flags that may come before, between or after
// positional arguments ("user add NAME --role R"), which the flag package
// alone stops at. After "--" every argument is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse consumed a "--" if the argument before rest was one.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
