package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole benchmark briefly against the real PostgreSQL
// server (AUTHD_TEST_DATABASE_URL or the local default) and checks that
// the report has every row and that no request failed.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-duration", "1s", "-concurrency", "2", "-users", "4"}, &stdout, &stderr)
	t.Logf("report:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()

	for _, name := range []string{"login", "bcrypt ceiling", "refresh", "logout"} {
		row := tableRow(out, name)
		if row == nil {
			t.Errorf("no %q row in the table", name)
			continue
		}
		if got := row[len(row)-1]; got != "0" {
			t.Errorf("%s: errors = %s, want 0", name, got)
		}
		if got := row[1]; got == "0" {
			t.Errorf("%s: no requests", name)
		}
	}
	if !strings.Contains(out, "login as % of bcrypt ceiling:") {
		t.Error("no login / bcrypt ceiling ratio")
	}
	for _, name := range []string{"login", "refresh", "logout"} {
		if row := tableRow(out[strings.Index(out, "round trips per request"):], name); row == nil {
			t.Errorf("no %q row in the round-trip table", name)
		}
	}
}

// tableRow returns the cells of the first Markdown table row whose first
// cell starts with name.
func tableRow(out, name string) []string {
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == name || strings.HasPrefix(cells[0], name+" ") {
			return cells
		}
	}
	return nil
}
