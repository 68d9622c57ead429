package server

import (
	"errors"
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
// statuses and outcomes only: never a user name, key id or token.
type metrics struct {
	registry *prometheus.Registry
	// now is the server's clock, for the latencies and waits observed.
	now func() time.Time

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	logins       *prometheus.CounterVec
	refreshReuse prometheus.Counter
	bcryptWait   prometheus.Histogram
	purged       *prometheus.CounterVec
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
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_logins_total", Help: "Password checks (HTTP login and NATS) by result: succeeded, failed, throttled, shed.",
		}, []string{"result"}),
		refreshReuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authd_refresh_reuse_detected_total", Help: "Spent refresh tokens presented after the grace window; each revoked a session.",
		}),
		bcryptWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "authd_bcrypt_wait_seconds", Help: "Time logins waited for a bcrypt slot.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}),
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_purged_total", Help: "Dead sessions and expired refresh tokens deleted by the purge job.",
		}, []string{"kind"}),
	}
	m.purged.WithLabelValues("session")
	m.purged.WithLabelValues("refresh_token")
	for _, l := range []string{"succeeded", "failed", "throttled", "shed"} {
		m.logins.WithLabelValues(l) // export zeros, so rates work from the start
	}
	reg.MustRegister(m.requests, m.latency, m.logins, m.refreshReuse, m.bcryptWait, m.purged,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		poolCollector{db: db})
	return m
}

// loginResult counts the outcome of a password check.
func (m *metrics) loginResult(err error) {
	result := "succeeded"
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			result = "failed"
		case http.StatusTooManyRequests:
			result = "throttled"
		case http.StatusServiceUnavailable:
			result = "shed"
		default:
			return
		}
	} else if err != nil {
		return
	}
	m.logins.WithLabelValues(result).Inc()
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

// poolCollector exports the database pool's state at scrape time.
type poolCollector struct{ db *store.DB }

var (
	poolConns = prometheus.NewDesc("authd_db_pool_connections", "Database pool connections by state.", []string{"state"}, nil)
	poolMax   = prometheus.NewDesc("authd_db_pool_max_connections", "Database pool size limit.", nil, nil)
	poolWaits = prometheus.NewDesc("authd_db_pool_acquire_waits_total", "Acquires that had to wait for a connection.", nil, nil)
	poolWait  = prometheus.NewDesc("authd_db_pool_acquire_wait_seconds_total", "Time spent waiting for a connection.", nil, nil)
)

func (p poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConns
	ch <- poolMax
	ch <- poolWaits
	ch <- poolWait
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := p.db.Pool().Stat()
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(st.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWait, prometheus.CounterValue, st.AcquireDuration().Seconds())
}
