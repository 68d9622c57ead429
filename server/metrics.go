package server

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"authd/store"
)

// metrics are authd's Prometheus series. Labels are routes, methods,
// statuses and outcomes only: never a user name, key id or token.
type metrics struct {
	registry *prometheus.Registry
	// now is the server's clock, for the latencies and waits observed.
	now func() time.Time

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	refreshReuse prometheus.Counter
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
	}
	reg.MustRegister(m.requests, m.latency, m.refreshReuse,
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
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(c.Response().Status)).Inc()
		m.latency.WithLabelValues(route).Observe(m.now().Sub(start).Seconds())
		return nil
	}
}

func (m *metrics) handler() echo.HandlerFunc {
	h := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
	return echo.WrapHandler(h)
}
