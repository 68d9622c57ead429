package main

import (
	"bytes"
	"context"
	"io"
	"strconv"
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
	err := run(ctx, []string{"-duration", "700ms", "-concurrency", "2", "-users", "4"}, &stdout, &stderr)
	t.Logf("report:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()

	for _, name := range []string{"login", "bcrypt ceiling", "refresh", "logout", "bare", "verify-jwt", "verify-cookie", "verify-apikey"} {
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
	for _, name := range verifyScenarios {
		if !strings.Contains(out, "- "+name+": ") || !strings.Contains(out, "of bare's throughput") {
			t.Errorf("no %s / bare throughput ratio", name)
		}
	}

	rt := out[strings.Index(out, "round trips per request"):]
	for _, name := range []string{"login", "refresh", "logout"} {
		if row := tableRow(rt, name); row == nil {
			t.Errorf("no %q row in the round-trip table", name)
		}
	}
	// Cells: request, sample, window, total, round trips per request, ...
	// The token path does no database work at all.
	for _, name := range []string{"bare", "verify-jwt", "verify-cookie"} {
		row := tableRow(rt, name)
		if row == nil {
			t.Errorf("no %q row in the round-trip table", name)
			continue
		}
		if row[3] != "0" {
			t.Errorf("%s: %s database round trips over %s requests, want 0", name, row[3], row[1])
		}
	}
	// A cached API key is re-read (and its last_used_at written) at most
	// once a second, however many requests use it. Allow for a window
	// straddling two such seconds.
	for _, name := range []string{"verify-apikey, steady state:", "verify-apikey, 2 clients"} {
		row := tableRow(rt, name)
		if row == nil {
			t.Errorf("no %q row in the round-trip table", name)
			continue
		}
		total, err1 := strconv.Atoi(row[3])
		n, err2 := strconv.Atoi(row[1])
		if err1 != nil || err2 != nil {
			t.Errorf("%s: bad cells %q", name, row)
			continue
		}
		if total > 4 || n < 100 {
			t.Errorf("%s: %d database round trips over %d requests, want at most 4 over at least 100", name, total, n)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range allScenarios {
		if !o.scenarios[s] {
			t.Errorf("scenario %s is not in the default list", s)
		}
	}
	// A verify scenario brings bare, as login brings the bcrypt ceiling.
	o, err = parseFlags([]string{"-scenarios", "verify-apikey"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !o.scenarios["bare"] || !o.scenarios["verify-apikey"] || len(o.scenarios) != 2 {
		t.Errorf("-scenarios verify-apikey: got %v, want bare and verify-apikey", o.scenarios)
	}
}

func TestStmtLabel(t *testing.T) {
	for sql, want := range map[string]string{
		"\n\t\tselect \n\tk.id, exists (select 1 from pg_roles r)\n from auth.api_key k join auth.plan p on p.name = k.plan": "select auth.api_key, auth.plan",
		"update auth.api_key k set last_used_at = now() from (select id from auth.api_key) l":                                "update auth.api_key",
		"show server_version": "show server_version",
		"":                    "(empty)",
	} {
		if got := stmtLabel(sql); got != want {
			t.Errorf("stmtLabel(%q) = %q, want %q", sql, got, want)
		}
	}
	name, rest := cstring([]byte("stmt_1\x00select 1\x00\x00\x00"))
	query, _ := cstring(rest)
	if name != "stmt_1" || query != "select 1" {
		t.Errorf("cstring: %q, %q", name, query)
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
