package main

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"authd/store"
)

// listenIdle is how long the listening connection may stay quiet before it
// is checked with a query (store.Listen).
const listenIdle = 30 * time.Second

// changeListener keeps this process's caches in step with changes that
// any process commits (an admin's `authd apikey disable`, a grant, plain
// SQL): it holds one connection LISTENing on the channels the auth
// schema's triggers notify, and hands each payload to its channel's
// handler. While it is not listening (the database restarted, the
// connection was lost) the caches fall back on their periodic re-read
// (AUTHD_CACHE_RECHECK); each time it starts listening again it clears
// them, since changes made in between were not heard.
type changeListener struct {
	db       *store.DB
	log      *slog.Logger
	handlers map[string]func(payload string)
	clear    func()
	up       prometheus.Gauge
}

// newChangeListener returns a listener calling handlers by channel and
// clear whenever it (re)starts listening, with authd_change_listener_up
// registered on reg.
func newChangeListener(db *store.DB, handlers map[string]func(string), clear func(), reg *prometheus.Registry, log *slog.Logger) *changeListener {
	l := &changeListener{
		db: db, log: log, handlers: handlers, clear: clear,
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authd_change_listener_up",
			Help: "1 while this process hears change notifications (LISTEN); 0 while its caches rely on their periodic re-read.",
		}),
	}
	reg.MustRegister(l.up)
	return l
}

// run listens until ctx ends, listening again after a failure with a
// growing pause (backoff, up to 5 s).
func (l *changeListener) run(ctx context.Context) {
	if !l.db.CanListen() {
		l.log.Warn("not listening for changes: DATABASE_URL reaches a transaction-mode pooler and AUTHD_DB_DIRECT_URL is not set; cached API keys, sessions and NATS permissions are re-read every AUTHD_CACHE_RECHECK")
		return
	}
	channels := slices.Sorted(maps.Keys(l.handlers))
	for attempt := 1; ; attempt++ {
		err := l.db.Listen(ctx, channels, listenIdle, func() {
			l.clear()
			l.up.Set(1)
			attempt = 0
			l.log.Debug("listening for changes", "channels", channels)
		}, func(n store.Notification) {
			l.handlers[n.Channel](n.Payload)
		})
		l.up.Set(0)
		if ctx.Err() != nil {
			return
		}
		pause := backoff(max(attempt, 1))
		l.log.Warn("not hearing change notifications; cached API keys and NATS permissions are re-read every AUTHD_CACHE_RECHECK until they resume",
			"err", err, "retry_in_ms", pause.Milliseconds())
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
