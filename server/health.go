package server

import (
	"context"
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
			return &Error{Status: http.StatusServiceUnavailable, Code: "PT503", Message: "Database unavailable", Header: http.Header{"Retry-After": {"5"}}}
		}
		return c.Blob(http.StatusOK, jsonType, []byte(`{"status":"ok","database":"ok"}`))
	}
}
