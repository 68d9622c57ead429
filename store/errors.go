package store

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrTimeout marks a statement that ran out of time: statement_timeout
// (SQLSTATE 57014) on a slow, locked or saturated database. A caller may
// try again.
var ErrTimeout = errors.New("database statement timed out")

// ErrUnavailable marks a database that is down, restarting or unreachable:
// a refused or broken connection, or an administrator or crash shutdown
// (SQLSTATE 57P*). A caller may try again.
var ErrUnavailable = errors.New("database unavailable")

// driverError is a driver error with the sentinel that says what it means,
// so that callers test errors.Is(err, ErrTimeout) and never learn
// SQLSTATEs; the driver's error stays in the chain for the log.
type driverError struct{ err, kind error }

func (e *driverError) Error() string   { return e.err.Error() }
func (e *driverError) Unwrap() []error { return []error{e.err, e.kind} }

// wrapf is fmt.Errorf(format+": %w", args..., err), marked with ErrTimeout
// or ErrUnavailable when err is one of those.
func wrapf(err error, format string, args ...any) error {
	wrapped := fmt.Errorf(format+": %w", append(args, err)...)
	if kind := driverKind(err); kind != nil {
		return &driverError{err: wrapped, kind: kind}
	}
	return wrapped
}

func driverKind(err error) error {
	var (
		pgErr   *pgconn.PgError
		connErr *pgconn.ConnectError
		netErr  net.Error
	)
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "57014": // statement_timeout
		return ErrTimeout
	case errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "57P"): // admin shutdown, crash shutdown, cannot connect now
		return ErrUnavailable
	case errors.As(err, &connErr), errors.As(err, &netErr),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF): // the connection died mid-query
		return ErrUnavailable
	}
	return nil
}
