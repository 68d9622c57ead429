package store

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the pool's state at scrape time (authd_db_pool_*), for
// the registry of a process that uses db.
func (db *DB) Collector() prometheus.Collector { return poolCollector{db: db} }

type poolCollector struct{ db *DB }

var (
	poolConns = prometheus.NewDesc("authd_db_pool_connections", "Database pool connections by state.", []string{"state"}, nil)
	poolMax   = prometheus.NewDesc("authd_db_pool_max_connections", "Database pool size limit.", nil, nil)
	poolWaits = prometheus.NewDesc("authd_db_pool_acquire_waits_total", "Acquires that had to wait for a connection.", nil, nil)
	poolWait  = prometheus.NewDesc("authd_db_pool_acquire_wait_seconds_total", "Time spent waiting for a connection.", nil, nil)
	// Their ratio is the mean group-commit batch (groupcommit.go).
	rotationCommits = prometheus.NewDesc("authd_refresh_commits_total", "Commits of refresh token rotations: one per batch of concurrent refreshes.", nil, nil)
	rotationsDone   = prometheus.NewDesc("authd_refresh_rotations_total", "Refresh token rotations tried on the happy path, whatever their outcome.", nil, nil)
)

func (p poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConns
	ch <- poolMax
	ch <- poolWaits
	ch <- poolWait
	ch <- rotationCommits
	ch <- rotationsDone
}

func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := p.db.Pool().Stat()
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(st.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWait, prometheus.CounterValue, st.AcquireDuration().Seconds())
	ch <- prometheus.MustNewConstMetric(rotationCommits, prometheus.CounterValue, float64(p.db.rotations.commits.Load()))
	ch <- prometheus.MustNewConstMetric(rotationsDone, prometheus.CounterValue, float64(p.db.rotations.rotations.Load()))
}
