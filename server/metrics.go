package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"authd/store"
)

// metrics are authd's Prometheus series. Labels are routes, methods,
// statuses and outcomes only: never a user name, key id or token. Each
// label takes its values from a small fixed set: a series, once made, is
// kept for the life of the process, so a label that took what a client
// sent (any method, any path) would let each made-up one hold memory for
// good.
type metrics struct {
	registry *prometheus.Registry
	// now is the server's clock, for the latencies and waits observed.
	now func() time.Time

	// routes are the route patterns registered, the values of the route
	// label besides "unmatched".
	routes map[string]bool

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	refreshReuse prometheus.Counter
	shedHeld     prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, db *store.DB, now func() time.Time) *metrics {
	m := &metrics{
		registry: reg,
		now:      now,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "authd_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		refreshReuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authd_refresh_reuse_detected_total", Help: "Spent refresh tokens presented after the grace window; each revoked a session.",
		}),
		shedHeld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authd_login_shed_held_total", Help: "Logins refused at the door (shed, or past their address's share) whose answer was held (AUTHD_LOGIN_SHED_HOLD): their client address had been refused there less than the hold before.",
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.refreshReuse, m.shedHeld,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		db.Collector())
	return m
}

// middleware counts and times every request by its route pattern.
func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := m.now()
		err := next(c)
		if err != nil {
			c.Error(err) // render now, to count the status the client gets
		}
		route := c.Path()
		if !m.routes[route] {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, methodLabel(c.Request().Method), strconv.Itoa(c.Response().Status)).Inc()
		m.latency.WithLabelValues(route).Observe(m.now().Sub(start).Seconds())
		return nil
	}
}

// setRoutes makes the patterns of routes the values of the route label.
func (m *metrics) setRoutes(routes []*echo.Route) {
	m.routes = make(map[string]bool, len(routes))
	for _, r := range routes {
		m.routes[r.Path] = true
	}
}

// methodLabel is method if it is one of HTTP's own (RFC 9110), else
// "other": a method is any token a client cares to send.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

func (m *metrics) handler() echo.HandlerFunc {
	h := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
	return echo.WrapHandler(h)
}
