package main

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// bench runs authd-bench with args against the real PostgreSQL server
// (AUTHD_TEST_DATABASE_URL or the local default) and returns its report.
func bench(t *testing.T, args ...string) string {
	// A bound on a hung run only: a smoke run takes 10-50 s on a busy
	// 2-CPU machine under -race.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	// Compares at normal priority: at nice 10, CPU-bound neighbours leave
	// them so little CPU that a login behind another waits past the slot
	// wait and is shed, which the login row counts as a failure. What the
	// priority does is tested in server.
	args = append(args, "-users", "4", "-concurrency", "2", "-db-prefix", storetest.Prefix(), "-server-env", "AUTHD_BCRYPT_NICE=0")
	err := run(ctx, args, &stdout, &stderr)
	t.Logf("report:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	return stdout.String()
}

// TestSmoke runs the whole benchmark briefly, with two signing algorithms
// and the smallest storm that still fills every row, and checks that
// each row is there with sane values and that no request failed.
func TestSmoke(t *testing.T) {
	out := bench(t, "-duration", "300ms", "-algs", "HS256,ES256", "-verify-tokens", "600",
		"-storm-refresh-rate", "20", "-storm-verify-rate", "20", "-storm-health-rate", "20")
	i, j := strings.Index(out, "### Signing algorithms"), strings.Index(out, "### Database round trips")
	if i < 0 || j < i {
		t.Fatal("no signing-algorithm section before the round trips")
	}
	algs, rt := out[i:j], out[j:]
	ms := regexp.MustCompile(`^\d+\.\d\d ms$`)

	// Every row of the main table and the statement-alone table: requests,
	// a rate, latencies, CPU (authd's where a server ran), no errors.
	for _, name := range []string{"login", "bcrypt ceiling", "refresh (HS256)", "refresh (ES256)", "logout", "bare", "verify-fresh (HS256)", "verify-fresh (ES256)",
		"verify-jwt (HS256)", "verify-jwt (ES256)", "verify-cookie", "verify-apikey",
		"rotate statement alone (pgx, 2 connections)", "rotate statement alone, synchronous_commit=off (pgx, 2 connections)"} {
		row := tableRow(out, name)
		if row == nil {
			t.Errorf("no %q row", name)
			continue
		}
		if !strings.HasPrefix(name, "rotate") { // the requests column; a compare under -race takes seconds
			if row[1] == "0" {
				t.Errorf("%s: no requests", name)
			}
			row = append(row[:1], row[2:]...)
		}
		_, err := strconv.ParseFloat(row[1], 64)
		serverCPU := !strings.HasPrefix(name, "bcrypt") && !strings.HasPrefix(name, "rotate")
		if err != nil || !ms.MatchString(row[2]) || !ms.MatchString(row[3]) || (row[4] == "–") == serverCPU || row[6] == "–" || row[7] != "0" {
			t.Errorf("%s: %q; want a rate, p50, p99, CPU per request (authd's where a server ran) and no errors", name, row)
		}
	}
	for _, name := range []string{"login", "logout", "bare", "verify-cookie", "verify-apikey"} {
		if tableRow(out, name+" (ES256)") != nil {
			t.Errorf("%s runs on the primary server only, but there is an ES256 row", name)
		}
	}
	for _, want := range []string{"login as % of bcrypt ceiling: ", "by CPU: a compare costs ", "- verify-fresh (ES256): ", "- verify-apikey: ",
		"Without waiting for the commit flush the statement runs at ", "refresh over HTTP runs at ",
		"- refresh p99 under the storm: ", "- verify p99 under the storm: ", "- the longest a login waited for its answer: ",
		"HS256 (JWT_SECRET)"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the report", want)
		}
	}
	if !regexp.MustCompile(`ES256 \(key \S+-es256-\S+ from authd keygen`).MatchString(out) {
		t.Error("the report does not say how the ES256 server signed")
	}

	// The storm: both windows, every request answered; logins both served
	// and shed.
	for _, name := range []string{"quiet", "storm"} {
		if row := tableRow(out, name); row == nil || row[len(row)-1] != "0" {
			t.Errorf("storm table, %s: %q, want no errors", name, row)
		}
	}
	if row := tableRow(out, "storm"); row != nil && (row[1] == "0" || row[2] == "0") {
		t.Errorf("storm: %s logins sent, %s answered 204; want some of each", row[1], row[2])
	}

	// A row per algorithm, every cell filled.
	for _, alg := range []string{"HS256", "ES256"} {
		if row := tableRow(algs, alg); row == nil || slices.Contains(row, "–") {
			t.Errorf("signing algorithms, %s: %q, want every cell filled", alg, row)
		}
	}

	// Round trips (cells: request, requests, total, per request,
	// statements): what docs/performance.md states. The token path reads
	// its user's state (liveness) at most once a second, however many
	// requests present the user's tokens; a cached API key is re-read (and
	// its last_used_at written) likewise. A window may straddle two such
	// seconds.
	for name, want := range map[string]string{"login": "4", "refresh": "1", "refresh, unknown token (401)": "2", "logout": "1", "bare": "0"} {
		if row := tableRow(rt, name); row == nil || row[3] != want {
			t.Errorf("round trips, %s: %q, want %s per request", name, row, want)
		}
	}
	for _, name := range []string{"verify-jwt", "verify-cookie", "verify-fresh"} {
		if row := tableRow(rt, name); row == nil || len(row[2]) != 1 || row[2] > "3" {
			t.Errorf("round trips, %s: %q, want at most 3 in all (its user's state, once a second)", name, row)
		}
	}
	if row := tableRow(rt, "refresh"); row != nil && !strings.Contains(row[4], "auth.refresh_token") {
		t.Errorf("refresh's statement: %q, want one on auth.refresh_token", row[4])
	}
	row := tableRow(rt, "verify-apikey, 2 clients")
	if row == nil {
		t.Fatal("no verify-apikey row in the round-trip table")
	}
	if n, _ := strconv.Atoi(row[1]); n < 100 || row[2] > "4" || len(row[2]) != 1 {
		t.Errorf("verify-apikey: %s database round trips over %s requests, want at most 4 over at least 100", row[2], row[1])
	}
}

// tableRow returns the cells of the first Markdown table row whose first
// cell is name or starts with name and a space.
func tableRow(out, name string) []string {
	for _, line := range strings.Split(out, "\n") {
		if c := cells(line); strings.HasPrefix(line, "| ") && (c[0] == name || strings.HasPrefix(c[0], name+" ")) {
			return c
		}
	}
	return nil
}

// cells splits a Markdown table row.
func cells(line string) []string {
	c := strings.Split(strings.Trim(line, "|"), "|")
	for i := range c {
		c[i] = strings.TrimSpace(c[i])
	}
	return c
}
