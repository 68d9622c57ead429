package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"authd/store"
)

// The audit batches: written every auditInterval, or as soon as
// auditBatch events wait, whichever comes first.
const (
	auditInterval = 100 * time.Millisecond
	auditBatch    = 500
	// auditBuffer is how many events may wait in memory; one more is
	// dropped (and counted), never waited for.
	auditBuffer = 10000
)

// Auditor writes the audit log (auth.audit_log) off the request path: a
// request only puts its event in a bounded buffer, and Run writes the
// buffer in batches, one COPY each. When the buffer is full (the database
// is slow or down) an event is dropped and counted in
// authd_audit_dropped_total: auditing never makes a login wait.
type Auditor struct {
	db      *store.DB
	log     *slog.Logger
	events  chan store.AuditEvent
	now     func() time.Time
	dropped prometheus.Counter
}

// newAuditor returns an auditor writing to db whose buffer holds size
// events, with its counter registered on reg.
func newAuditor(db *store.DB, size int, reg *prometheus.Registry, now func() time.Time, log *slog.Logger) *Auditor {
	a := &Auditor{
		db: db, log: log, now: now,
		events: make(chan store.AuditEvent, size),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authd_audit_dropped_total",
			Help: "Audit events not written: the buffer was full, or their batch failed to write.",
		}),
	}
	reg.MustRegister(a.dropped)
	return a
}

// Add queues e to be written, at once: never blocks.
func (a *Auditor) Add(e store.AuditEvent) {
	if e.At.IsZero() {
		e.At = a.now()
	}
	select {
	case a.events <- e:
	default:
		a.dropped.Inc()
	}
}

// Run writes the queued events in batches until ctx ends, then writes
// what is queued.
func (a *Auditor) Run(ctx context.Context) {
	tick := time.NewTicker(auditInterval)
	defer tick.Stop()
	batch := make([]store.AuditEvent, 0, auditBatch)
	for {
		select {
		case e := <-a.events:
			batch = append(batch, e)
			if len(batch) < auditBatch {
				continue
			}
		case <-tick.C:
		case <-ctx.Done():
			a.write(context.WithoutCancel(ctx), batch)
			a.Flush(context.WithoutCancel(ctx))
			return
		}
		a.write(ctx, batch)
		batch = batch[:0]
	}
}

// Flush writes every event queued so far, in batches, and returns when
// they are written (or dropped). serve calls it after the last request;
// tests call it to see their events without waiting.
func (a *Auditor) Flush(ctx context.Context) {
	batch := make([]store.AuditEvent, 0, auditBatch)
	for {
		select {
		case e := <-a.events:
			batch = append(batch, e)
			if len(batch) < auditBatch {
				continue
			}
		default:
			a.write(ctx, batch)
			return
		}
		a.write(ctx, batch)
		batch = batch[:0]
	}
}

func (a *Auditor) write(ctx context.Context, batch []store.AuditEvent) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.db.WriteAudit(ctx, batch); err != nil {
		a.dropped.Add(float64(len(batch)))
		a.log.Warn("audit events lost", "events", len(batch), "err", err)
	}
}

// The events of the HTTP door and their outcomes (auth.audit_log).
const (
	auditLogin        = "login"
	auditLogout       = "logout"
	auditPassword     = "password_change"
	auditSessionEnd   = "session_revoke"
	auditSignup       = "signup"
	auditRefreshReuse = "refresh_reuse"
)

// audit queues an event of request c: its client address and user agent
// (truncated as in the log) are added.
func (s *Server) audit(c echo.Context, e store.AuditEvent) {
	e.Client = c.RealIP()
	e.UserAgent = logUserAgent(c.Request())
	s.auditor.Add(e)
}

// Audit is the server's audit writer: serve runs it (Run) and flushes it
// after the last request.
func (s *Server) Audit() *Auditor { return s.auditor }
