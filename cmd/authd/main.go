// Command authd is a login / refresh / logout token server for PostgREST
// and other JWT-checking APIs, backed by PostgreSQL.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: authd <command> [arguments]

commands:
  serve                        run the HTTP server
  migrate up|down|status       apply, revert (one step) or list migrations
  migrate down-to VERSION      revert every migration above VERSION
  seed                         add the demo role and user (development only)
  user add NAME --role ROLE    add a user; password from stdin or a prompt
  user passwd NAME             change a user's password
  user del NAME                delete a user and their sessions
  user list                    list users
  apikey create --plan PLAN [--role ROLE] [--expires 30d]
                               add an API key (role and expiry default to
                               the plan's); prints the key once
  apikey list                  list API keys (ids only, never the keys)
  apikey disable ID            disable an API key
  apikey rotate ID             give an API key a new secret; prints it once
  nats grant ROLE [--pub S] [--sub S] [--deny-pub S] [--deny-sub S]
                 [--allow-responses [--max-responses N] [--response-ttl 1m]]
                               let a role publish or subscribe to NATS
                               subjects S, or deny it (flags repeatable;
                               wildcards * and >), or answer requests
  nats revoke ROLE [--pub S] [--sub S] [--deny-pub S] [--deny-sub S]
                   [--responses]
                               take NATS grants back from a role
  nats list [ROLE]             list NATS grants and response settings
  nats-callout                 answer NATS auth callout requests with
                               authd's users, tokens, API keys and grants
  keygen --alg ES256 --out DIR write a new signing key DIR/<kid>.pem
                               (ES256, EdDSA or RS256)
  jwks [--dir DIR]             print the public keys as a JWKS, for
                               PostgREST's jwt-secret

Configuration comes from the environment; see README.md.
`

// errUsage marks a command line that could not be understood.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(os.Stderr, "authd: %v\n", err)
		}
		os.Exit(1)
	}
}

// run is the whole program, with its dependencies as arguments so tests can
// drive it as a user would.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout)
	case "seed":
		return runSeed(ctx, getenv, stdout)
	case "user":
		return runUser(ctx, rest, getenv, stdin, stdout, stderr)
	case "apikey":
		return runAPIKey(ctx, rest, getenv, stdout, stderr)
	case "nats":
		return runNATS(ctx, rest, getenv, stdout)
	case "nats-callout":
		return runNATSCallout(ctx, rest, getenv, stdout, stderr)
	case "keygen":
		return runKeygen(rest, stdout)
	case "jwks":
		return runJWKS(rest, getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "authd: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}
