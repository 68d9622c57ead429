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

// errUsage marks a command line that could not be understood, whose usage
// has already been printed.
var errUsage = errors.New("usage")

// loggedError is an error its command has already logged (serve and
// nats-callout log in JSON), so main only sets the exit status.
type loggedError struct{ err error }

func (e loggedError) Error() string { return e.err.Error() }
func (e loggedError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args, os.Getenv, os.Environ, os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	// Every failure, usage errors included, exits with status 1, as
	// kubectl and goose do; help and version exit 0.
	var logged loggedError
	if !errors.Is(err, errUsage) && !errors.As(err, &logged) {
		fmt.Fprintf(os.Stderr, "authd: %v\n", err)
	}
	stop()
	os.Exit(1)
}

// cli is what a command gets from run: the environment and the standard
// streams.
type cli struct {
	getenv  func(string) string
	environ func() []string // the whole environment, to name unknown AUTHD_* variables
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// run is the whole program, with its dependencies as arguments so tests can
// drive it as a user would.
func run(ctx context.Context, args []string, getenv func(string) string, environ func() []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{getenv: getenv, environ: environ, stdin: stdin, stdout: stdout, stderr: stderr}
	cmds := commands()
	if len(args) < 2 {
		printUsage(stderr, cmds, "")
		return errUsage
	}
	words := args[1:]
	switch words[0] {
	case "-h", "-help", "--help":
		printUsage(stdout, cmds, "")
		return nil
	case "-version", "--version":
		words = append([]string{"version"}, words[1:]...)
	case "help":
		return runHelp(c, cmds, words[1:])
	}
	cmd, rest, err := lookup(cmds, words)
	if err != nil {
		return err
	}
	if cmd == nil { // a group's own --help
		printUsage(stdout, cmds, words[0])
		return nil
	}
	return cmd.exec(ctx, c, rest)
}

// runHelp is `authd help [COMMAND]`.
func runHelp(c *cli, cmds []command, words []string) error {
	if len(words) == 0 {
		printUsage(c.stdout, cmds, "")
		return nil
	}
	if isGroup(cmds, words[0]) && len(words) == 1 {
		printUsage(c.stdout, cmds, words[0])
		return nil
	}
	cmd, rest, err := lookup(cmds, words)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("help: unknown command %q; run 'authd --help' for usage", joinWords(words))
	}
	cmd.printHelp(c.stdout)
	return nil
}
