package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// AuditEvent is one row of auth.audit_log. It never holds a secret: no
// password, token or hash, in Details neither.
type AuditEvent struct {
	ID int64 `json:"id"`
	// At is when it happened; zero means the database's now() when written.
	At        time.Time `json:"at"`
	Event     string    `json:"event"`
	Username  string    `json:"username,omitempty"`
	SessionID uuid.UUID `json:"session_id,omitzero"`
	Client    string    `json:"client,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Outcome   string    `json:"outcome"`
	// Details are a few more facts (a refusal's reason, the new role, an
	// API key's id), as a JSON object; nil writes {}.
	Details map[string]string `json:"details,omitempty"`
}

// WriteAudit appends events to auth.audit_log with one COPY: a batch costs
// one round trip however many events it holds.
func (db *DB) WriteAudit(ctx context.Context, events []AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	rows := make([][]any, len(events))
	for i, e := range events {
		at := e.At
		if at.IsZero() {
			at = time.Now()
		}
		details := []byte("{}")
		if len(e.Details) > 0 {
			var err error
			if details, err = json.Marshal(e.Details); err != nil {
				return wrapf(err, "audit details")
			}
		}
		rows[i] = []any{at, e.Event, nullString(e.Username), nullUUID(e.SessionID),
			nullString(e.Client), nullString(e.UserAgent), e.Outcome, string(details)}
	}
	_, err := db.p().CopyFrom(ctx, pgx.Identifier{"auth", "audit_log"},
		[]string{"at", "event", "username", "session_id", "client", "user_agent", "outcome", "details"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return wrapf(err, "write %d audit events", len(events))
	}
	return nil
}

// AuditFilter selects rows of the audit log; zero fields select all.
type AuditFilter struct {
	Username string
	Event    string
	Since    time.Time
	// Limit is the most rows returned, the newest; 0 means 1000.
	Limit int
}

// AuditLog returns the rows of the audit log that f selects, oldest
// first.
func (db *DB) AuditLog(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	rows, err := db.p().Query(ctx, `
		select * from (
		    select id, at, event, coalesce(username, ''), coalesce(session_id, '00000000-0000-0000-0000-000000000000'),
		           coalesce(client, ''), coalesce(user_agent, ''), outcome, details
		      from auth.audit_log
		     where ($1 = '' or username = $1)
		       and ($2 = '' or event = $2)
		       and ($3::timestamptz is null or at >= $3)
		     order by at desc, id desc
		     limit $4
		) newest order by at, id`, f.Username, f.Event, since, f.Limit)
	if err != nil {
		return nil, wrapf(err, "read audit log")
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEvent, error) {
		var (
			e       AuditEvent
			details map[string]any
		)
		if err := r.Scan(&e.ID, &e.At, &e.Event, &e.Username, &e.SessionID, &e.Client, &e.UserAgent, &e.Outcome, &details); err != nil {
			return e, err
		}
		e.Details = detailStrings(details)
		return e, nil
	})
	if err != nil {
		return nil, wrapf(err, "read audit log")
	}
	return events, nil
}

// PurgeAudit deletes at most batch rows of the audit log older than
// retention. Unlike the other purges it takes no "for update skip
// locked": that needs UPDATE, which authd_app has not on the audit log.
// Instances purging at once may pick the same rows; the second waits for
// the first's delete and finds them gone, which is harmless.
func (db *DB) PurgeAudit(ctx context.Context, retention time.Duration, batch int) (int64, error) {
	tag, err := db.p().Exec(ctx, `
		delete from auth.audit_log
		 where id in (select id from auth.audit_log
		               where at < now() - make_interval(secs => $1)
		               limit $2)`, retention.Seconds(), batch)
	if err != nil {
		return 0, wrapf(err, "purge audit log")
	}
	return tag.RowsAffected(), nil
}

// detailStrings is details with every value a string: a row written by
// hand may hold numbers or objects, which are shown as their JSON.
func detailStrings(details map[string]any) map[string]string {
	if len(details) == 0 {
		return nil
	}
	out := make(map[string]string, len(details))
	for k, v := range details {
		if s, ok := v.(string); ok {
			out[k] = s
			continue
		}
		b, _ := json.Marshal(v) // it came from JSON
		out[k] = string(b)
	}
	return out
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullUUID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}
