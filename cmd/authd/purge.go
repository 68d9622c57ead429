package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"authd/store"
)

// purgeBatch keeps each purge statement short: it holds row locks and a
// transaction only for this many rows.
const purgeBatch = 1000

// purgeJob deletes dead sessions, expired refresh tokens, spent or expired
// password reset tokens and audit log rows past their retention, so the tables
// stay the size of what is live. serve runs it; nats-callout, which only
// reads sessions' users, does not.
type purgeJob struct {
	db *store.DB
	// auditRetention is how long audit log rows are kept; 0 keeps them.
	auditRetention time.Duration
	log            *slog.Logger
	purged         *prometheus.CounterVec
}

// newPurgeJob returns the purge job on db, with authd_purged_total{kind}
// registered on reg.
// Audit log rows older than auditRetention go too, unless it is 0.
func newPurgeJob(db *store.DB, auditRetention time.Duration, reg *prometheus.Registry, log *slog.Logger) *purgeJob {
	j := &purgeJob{
		db:             db,
		auditRetention: auditRetention,
		log:            log,
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_purged_total", Help: "Dead sessions, expired refresh tokens, drained login throttle buckets, spent or expired password reset tokens and old audit log rows deleted by the purge job.",
		}, []string{"kind"}),
	}
	j.purged.WithLabelValues("session")
	j.purged.WithLabelValues("refresh_token")
	j.purged.WithLabelValues("login_throttle")
	j.purged.WithLabelValues("password_reset")
	j.purged.WithLabelValues("audit_log")
	reg.MustRegister(j.purged)
	return j
}

// run purges at once and then every interval until ctx ends, in batches.
// Safe to run on every instance at once (see store.PurgeBatch).
func (j *purgeJob) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		j.once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (j *purgeJob) once(ctx context.Context) {
	var total int64
	for ctx.Err() == nil {
		p, err := j.db.PurgeBatch(ctx, purgeBatch)
		var audit int64
		if err == nil && j.auditRetention > 0 {
			audit, err = j.db.PurgeAudit(ctx, j.auditRetention, purgeBatch)
		}
		// Count what was deleted before any failure: PurgeBatch's statements
		// commit one by one, so a failure in the last (or a shutdown between
		// them) must not hide the rows the first ones removed.
		j.purged.WithLabelValues("session").Add(float64(p.Sessions))
		j.purged.WithLabelValues("refresh_token").Add(float64(p.Tokens))
		j.purged.WithLabelValues("login_throttle").Add(float64(p.Throttles))
		j.purged.WithLabelValues("password_reset").Add(float64(p.Resets))
		j.purged.WithLabelValues("audit_log").Add(float64(audit))
		total += p.Sessions + p.Tokens + p.Throttles + p.Resets + audit
		if err != nil {
			if ctx.Err() == nil {
				j.log.Warn("purge failed; retrying at the next interval", "err", err)
			}
			break
		}
		if p.Sessions < purgeBatch && p.Tokens < purgeBatch && p.Throttles < purgeBatch && p.Resets < purgeBatch && audit < purgeBatch {
			break
		}
	}
	if total > 0 {
		j.log.Info("purged dead sessions, expired refresh tokens and old audit rows", "rows", total)
	}
}
