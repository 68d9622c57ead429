package server

import (
	"context"
	"time"
)

// purgeBatch keeps each purge statement short: it holds row locks and a
// transaction only for this many rows.
const purgeBatch = 1000

// RunPurge deletes dead sessions and expired refresh tokens every interval
// until ctx ends, in batches, so the tables stay the size of what is live.
// Safe to run on every instance at once (see store.PurgeBatch).
func (s *Server) RunPurge(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		s.purgeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Server) purgeOnce(ctx context.Context) {
	var total int64
	for ctx.Err() == nil {
		p, err := s.db.PurgeBatch(ctx, purgeBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("purge failed; retrying at the next interval", "err", err)
			}
			return
		}
		s.metrics.purged.WithLabelValues("session").Add(float64(p.Sessions))
		s.metrics.purged.WithLabelValues("refresh_token").Add(float64(p.Tokens))
		total += p.Sessions + p.Tokens
		if p.Sessions < purgeBatch && p.Tokens < purgeBatch {
			break
		}
	}
	if total > 0 {
		s.log.Info("purged dead sessions and expired refresh tokens", "rows", total)
	}
}
