package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"authd/store"
)

// auditAdmin records in the audit log an admin action of the CLI that has
// just succeeded: event is the command ("user_role"), username whom it
// concerns, details what else it changed (never a secret). A write that
// fails is an error, saying the action itself was done: an admin action
// missing from the audit log should not pass unnoticed.
func auditAdmin(ctx context.Context, db *store.DB, event, username string, sid uuid.UUID, details map[string]string) error {
	d := map[string]string{"via": "cli"}
	maps.Copy(d, details)
	err := db.WriteAudit(ctx, []store.AuditEvent{{Event: event, Username: username, SessionID: sid, Outcome: "ok", Details: d}})
	if err != nil {
		return fmt.Errorf("%s was done, but not recorded in the audit log: %w", strings.ReplaceAll(event, "_", " "), err)
	}
	return nil
}

func auditCmd(fs *flag.FlagSet, c *cli) action {
	user := fs.String("user", "", "only this user's events")
	since := fs.String("since", "24h", "only events this recent, such as 24h, 7d or 90m")
	event := fs.String("event", "", "only this event (login, logout, refresh_reuse, user_role, apikey_create, ...)")
	limit := fs.Int("limit", 1000, "at most this many events, the newest")
	asJSON := fs.Bool("json", false, "one JSON object a line, for jq or a log shipper")
	return func(ctx context.Context, _ []string) error {
		d, err := parseLifetime(*since)
		if err != nil {
			return &usageError{"audit", fmt.Sprintf("bad --since %q: want a duration such as 24h, 7d or 90m", *since)}
		}
		if *limit <= 0 {
			return &usageError{"audit", fmt.Sprintf("bad --limit %d: want 1 or more", *limit)}
		}
		return withDB(ctx, c, func(db *store.DB) error {
			events, err := db.AuditLog(ctx, store.AuditFilter{
				Username: *user, Event: *event, Since: time.Now().Add(-d), Limit: *limit,
			})
			if err != nil {
				return err
			}
			if *asJSON {
				enc := json.NewEncoder(c.stdout)
				for _, e := range events {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AT\tEVENT\tOUTCOME\tUSER\tSESSION\tCLIENT\tDETAILS")
			for _, e := range events {
				sid := "-"
				if e.SessionID != uuid.Nil {
					sid = e.SessionID.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Event, e.Outcome,
					orDash(e.Username), sid, orDash(e.Client), formatDetails(e.Details))
			}
			return tw.Flush()
		})
	}
}

// formatDetails is k=v pairs in key order; "-" for none.
func formatDetails(d map[string]string) string {
	if len(d) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		parts = append(parts, k+"="+d[k])
	}
	return strings.Join(parts, " ")
}
