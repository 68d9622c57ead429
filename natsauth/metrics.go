package natsauth

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the callout's Prometheus series. Labels are methods and
// error codes, small fixed sets: never a user, key id or token.
type metrics struct {
	requests *prometheus.CounterVec
	denied   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// methods are the values of the method label: how the client presented
// itself ("none": no usable credentials, or an unreadable request).
var methods = []string{methodToken, methodAPIKey, methodPassword, methodK8s, methodNone}

func newMetrics(reg *prometheus.Registry, inflight chan struct{}) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_nats_auth_requests_total", Help: "NATS authorization requests answered, by method and result (allowed, denied).",
		}, []string{"method", "result"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_nats_auth_denied_total", Help: "NATS authorization requests refused, by method and reason: PostgREST's or authd's error code (PGRST303 expired token, PT401 wrong password or key, …), no_credentials, bad_request, busy.",
		}, []string{"method", "code"}),
		// A token decision takes well under a millisecond, a password one
		// a bcrypt; nats-server gives up after 2 s.
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "authd_nats_auth_duration_seconds", Help: "Time to decide a NATS authorization request, by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2},
		}, []string{"method"}),
	}
	for _, method := range methods {
		// Export zeros, so rates work from the start.
		m.requests.WithLabelValues(method, "allowed")
		m.requests.WithLabelValues(method, "denied")
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "authd_nats_auth_in_flight", Help: "NATS authorization requests being decided.",
	}, func() float64 { return float64(len(inflight)) })
	reg.MustRegister(m.requests, m.denied, m.latency, inFlight)
	return m
}

// observe records one answer: allowed when code is "".
func (m *metrics) observe(method, code string, took time.Duration) {
	if code == "" {
		m.requests.WithLabelValues(method, "allowed").Inc()
	} else {
		m.requests.WithLabelValues(method, "denied").Inc()
		m.denied.WithLabelValues(method, code).Inc()
	}
	m.latency.WithLabelValues(method).Observe(took.Seconds())
}
