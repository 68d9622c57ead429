package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// handleHealthz answers while the process serves: a liveness probe.
func handleHealthz() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.Blob(http.StatusOK, jsonType, []byte(`{"status":"ok"}`))
	}
}

// handleReadyz answers 200 only while the database answers: a readiness
// probe, so a load balancer stops sending logins that would fail.
func (s *Server) handleReadyz() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.db.Ping(ctx); err != nil {
			s.log.WarnContext(ctx, "not ready", "err", err)
			return errNotReady()
		}
		return c.Blob(http.StatusOK, jsonType, []byte(`{"status":"ok","database":"ok"}`))
	}
}

func errNotReady() *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "PT503", Message: "Database unavailable", Header: http.Header{"Retry-After": {"5"}}}
}

// Starting is the HTTP API while authd waits for its database at start-up
// (AUTHD_DB_WAIT): the liveness probes answer 200, so that an orchestrator
// does not restart a process that is only waiting, while /readyz and every
// other path answer 503 "Database unavailable" with Retry-After, as the API
// answers once the database goes away, so that clients retry and load
// balancers send nothing yet.
func Starting(log *slog.Logger) http.Handler {
	e := newEcho(log)
	getOrHead(e, "/healthz", handleHealthz())
	getOrHead(e, "/auth/health", handleHealthz())
	e.Any("/*", func(echo.Context) error {
		e := errNotReady()
		e.Details = ptr("authd is starting and waiting for its database")
		return e
	})
	return e
}
