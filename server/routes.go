package server

import "github.com/labstack/echo/v4"

// routes is the whole API.
func (s *Server) routes(e *echo.Echo) {
	e.POST("/rpc/login", s.handleLogin())
	e.POST("/rpc/refresh_token", s.handleRefresh())
	e.POST("/rpc/logout", s.handleLogout())

	e.GET("/healthz", handleHealthz())
	e.GET("/readyz", s.handleReadyz())
}
