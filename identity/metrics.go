package identity

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the identity rules' Prometheus series. Labels are outcomes
// only: never a user name, key id or token.
type metrics struct {
	registry *prometheus.Registry
	// now is the core's clock, for the waits observed.
	now func() time.Time

	logins     *prometheus.CounterVec
	shed       prometheus.Counter // logins's "shed", bound once for the shed path
	bcryptCPU  prometheus.Counter
	bcryptWait prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry, now func() time.Time) *metrics {
	m := &metrics{
		registry: reg,
		now:      now,
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_logins_total", Help: "Password checks (HTTP login and NATS) by result: succeeded, failed, throttled, shed.",
		}, []string{"result"}),
		bcryptWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "authd_bcrypt_wait_seconds", Help: "Time logins waited for a bcrypt slot.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}),
	}
	for _, l := range []string{"succeeded", "failed", "throttled", "shed"} {
		m.logins.WithLabelValues(l) // export zeros, so rates work from the start
	}
	m.shed = m.logins.WithLabelValues("shed")
	m.bcryptCPU = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "authd_bcrypt_cpu_seconds_total", Help: "CPU time of bcrypt compares and hashes (Linux: their threads' own), the rest of process_cpu_seconds_total being everything else.",
	})
	reg.MustRegister(m.logins, m.bcryptWait, m.bcryptCPU)
	return m
}

// loginResult counts the outcome of a password check. A client that went
// away, or a failure on authd's side, is not a login result.
func (m *metrics) loginResult(err error) {
	result := "succeeded"
	var e *Error
	if errors.As(err, &e) {
		switch e.Kind {
		case Unauthorized, InvalidToken, Forbidden:
			result = "failed"
		case Throttled:
			result = "throttled"
		case Busy, Unavailable:
			result = "shed"
		default:
			return
		}
	} else if err != nil {
		return
	}
	m.logins.WithLabelValues(result).Inc()
}
