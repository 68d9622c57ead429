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

// purgeJob deletes dead sessions and expired refresh tokens, so the tables
// stay the size of what is live. serve runs it; nats-callout, which only
// reads sessions' users, does not.
type purgeJob struct {
	db     *store.DB
	log    *slog.Logger
	purged *prometheus.CounterVec
}

// newPurgeJob returns the purge job on db, with authd_purged_total{kind}
// registered on reg.
func newPurgeJob(db *store.DB, reg *prometheus.Registry, log *slog.Logger) *purgeJob {
	j := &purgeJob{
		db:  db,
		log: log,
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authd_purged_total", Help: "Dead sessions, expired refresh tokens and drained login throttle buckets deleted by the purge job.",
		}, []string{"kind"}),
	}
	j.purged.WithLabelValues("session")
	j.purged.WithLabelValues("refresh_token")
	j.purged.WithLabelValues("login_throttle")
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
		if err != nil {
			if ctx.Err() == nil {
				j.log.Warn("purge failed; retrying at the next interval", "err", err)
			}
			return
		}
		j.purged.WithLabelValues("session").Add(float64(p.Sessions))
		j.purged.WithLabelValues("refresh_token").Add(float64(p.Tokens))
		j.purged.WithLabelValues("login_throttle").Add(float64(p.Throttles))
		total += p.Sessions + p.Tokens + p.Throttles
		if p.Sessions < purgeBatch && p.Tokens < purgeBatch && p.Throttles < purgeBatch {
			break
		}
	}
	if total > 0 {
		j.log.Info("purged dead sessions and expired refresh tokens", "rows", total)
	}
}
