package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// TestMain is also the flood's process when the smoke test starts this
// binary as one (floodEnv).
func TestMain(m *testing.M) {
	if os.Getenv(floodEnv) != "" {
		if err := floodChild(); err != nil {
			fmt.Fprintln(os.Stderr, "flood:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole benchmark briefly against the real PostgreSQL
// server (AUTHD_TEST_DATABASE_URL or the local default), with two signing
// algorithms and the smallest storm that still fills every row, and
// checks that each row is there with sane values, that no request failed,
// and the round trips docs/performance.md states.
func TestSmoke(t *testing.T) {
	// A bound on a hung run only: a run takes 10-50 s on a busy 2-CPU machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	// Compares at normal priority: at nice 10, busy neighbours can starve a
	// login past the slot wait, and the login row counts the 503 as a
	// failure. What the priority does is tested in server.
	err := run(ctx, []string{"-duration", "300ms", "-algs", "HS256,ES256", "-verify-tokens", "600", "-storm-scale", "0.1",
		"-users", "4", "-concurrency", "2", "-db-prefix", storetest.Prefix(), "-server-env", "AUTHD_BCRYPT_NICE=0"}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("report:\n%s", out)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	i := strings.Index(out, "### Database round trips")
	if i < 0 {
		t.Fatal("no round-trip section")
	}
	main, rt := out[:i], out[i:]
	ms := regexp.MustCompile(`^\d+\.\d\d ms$`)

	// Every row of the main table: requests, a rate, latencies, CPU
	// (authd's where a server ran), no errors.
	for _, name := range []string{"login", "bcrypt ceiling before login", "bcrypt ceiling after login", "refresh (HS256)", "refresh (ES256)", "logout", "bare", "verify-fresh (HS256)", "verify-fresh (ES256)",
		"verify-jwt (HS256)", "verify-jwt (ES256)", "verify-cookie", "verify-apikey", "login beside 2 busy processes (yes)",
		"rotate statement alone (pgx, 2 connections)", "rotate statement alone, synchronous_commit=off (pgx, 2 connections)"} {
		row := tableRow(t, main, name)
		_, err := strconv.ParseFloat(row[2], 64)
		serverCPU := !strings.HasPrefix(name, "bcrypt") && !strings.HasPrefix(name, "rotate")
		if row[1] == "0" || err != nil || !ms.MatchString(row[3]) || !ms.MatchString(row[4]) || (row[5] == "–") == serverCPU || row[7] == "–" || row[8] != "0" {
			t.Errorf("%s: %q; want requests, a rate, p50, p99, CPU per request (authd's where a server ran) and no errors", name, row)
		}
	}
	if !regexp.MustCompile(`- login: \d+\.\d/s, \d+\.\d % of the bcrypt ceiling of \d+\.\d/s, the mean of \d+\.\d/s measured before and \d+\.\d/s after; of the \d+ CPUs' time in the login row, compares had \d+\.\d %, \d+\.\d % was idle, \d+\.\d % stolen by the hypervisor\n`).MatchString(out) {
		t.Error("no line says what share of the bcrypt ceiling logins reached, and of the CPUs' time compares had")
	}
	for _, name := range []string{"login", "logout", "bare", "verify-cookie", "verify-apikey"} {
		if strings.Contains(out, "| "+name+" (ES256)") {
			t.Errorf("%s runs on the primary server only, but there is an ES256 row", name)
		}
	}
	for _, alg := range []string{"HS256", "ES256"} {
		if row := tableRow(t, main, alg); !strings.HasSuffix(row[1], " µs") || !strings.HasSuffix(row[2], " µs") {
			t.Errorf("in-process signing, %s: %q, want sign and verify times", alg, row)
		}
	}
	if !regexp.MustCompile(`HS256 \(JWT_SECRET\), ES256 \(key \S+-es256-\S+ from authd keygen`).MatchString(out) {
		t.Error("the report does not say how each server signed")
	}

	// The storm: both windows, every request answered, logins served.
	for _, name := range []string{"quiet", "storm"} {
		if row := tableRow(t, main, name); row[len(row)-1] != "0" || !ms.MatchString(row[6]) || !ms.MatchString(row[9]) {
			t.Errorf("storm table, %s: %q, want refresh and healthz p99 and no errors", name, row)
		}
	}
	if row := tableRow(t, main, "storm"); row[1] == "0" || row[2] == "0" {
		t.Errorf("storm: %s logins sent, %s answered 204; want some of each", row[1], row[2])
	}
	if !strings.Contains(out, "- the longest a login waited for its answer: ") {
		t.Error("no login wait line under the storm")
	}

	// The flood: every window, refreshes all answered; logins shed in
	// the floods, and authd's CPU per shed in the flood alone.
	quiet := tableRow(t, out[strings.Index(out, "### Hostile login flood"):], "quiet")
	flood := tableRow(t, main, "flood")
	spread := tableRow(t, main, "flood, many addresses")
	alone := tableRow(t, main, "flood alone, many addresses")
	for _, row := range [][]string{quiet, flood, spread} {
		if row[1] == "0" || row[len(row)-1] != "0" {
			t.Errorf("flood table, %s: %q; want refreshes and no errors", row[0], row)
		}
	}
	// From one address the refusals are held (answered a second later,
	// maybe after this short window) — 429s once the address has had its
	// share of logins, or 503s while the queue is full: on a busy machine
	// a short window's compares may never let the flood in; from many
	// addresses, logins are shed, none is held and none is past its
	// address's share. Columns: 7 logins 503, 8 logins 429, 9 refusals
	// held, 12 authd CPU/shed.
	if flood[9] == "0" || flood[9] == "–" || spread[7] == "0" || spread[8] != "0" || spread[9] != "0" ||
		alone[7] == "0" || alone[8] != "0" || alone[9] != "0" || alone[len(alone)-1] != "0" || !strings.HasSuffix(alone[12], " µs") {
		t.Errorf("flood table: %q, %q, %q; want refusals held in the flood from one address, logins shed, no 429 and none held from many, authd's CPU per shed in the flood alone, no errors", flood, spread, alone)
	}

	// The disk's flushes, timed in every storm and flood window when the
	// report says where, else "–" in each.
	cells := []string{tableRow(t, main, "quiet")[10], tableRow(t, main, "storm")[10]}
	for _, row := range [][]string{quiet, flood, spread, alone} {
		cells = append(cells, row[5])
	}
	timed := regexp.MustCompile(`- disk flush: the longest of the bench's own durable writes .* in \S+, on the filesystem of PostgreSQL's WAL \((\S+)\)`).FindStringSubmatch(out)
	untimed := strings.Contains(out, "- disk flush: not timed: ")
	flushCell := regexp.MustCompile(`^\d+\.\d ms \(\d+ over 10ms\)$`)
	for _, c := range cells {
		if timed != nil && !flushCell.MatchString(c) || timed == nil && c != "–" {
			t.Errorf("disk flush cells %q: want the longest flush and the slow ones where the report says it timed them, – where it says it did not", cells)
			break
		}
	}
	if (timed != nil) == untimed {
		t.Error("the report must say either where it timed the disk's flushes or why it did not")
	}

	// Round trips (cells: request, requests, total, per request,
	// statements). The token path reads its user's state (liveness), and a
	// cached API key is re-read (and its last_used_at written), once a
	// second at most; a window may straddle two such seconds.
	for name, want := range map[string]string{"login": "2", "refresh": "1", "refresh, unknown token (401)": "2", "logout": "1", "bare": "0"} {
		if row := tableRow(t, rt, name); row[3] != want {
			t.Errorf("round trips, %s: %q, want %s per request", name, row, want)
		}
	}
	for _, name := range []string{"verify-jwt", "verify-cookie", "verify-fresh"} {
		if row := tableRow(t, rt, name); len(row[2]) != 1 || row[2] > "3" {
			t.Errorf("round trips, %s: %q, want at most 3 in all (its user's state, once a second)", name, row)
		}
	}
	if row := tableRow(t, rt, "refresh"); !strings.Contains(row[4], "auth.refresh_token") {
		t.Errorf("refresh's statement: %q, want one on auth.refresh_token", row[4])
	}
	row := tableRow(t, rt, "verify-apikey, 2 clients")
	if n, _ := strconv.Atoi(row[1]); n < 100 || row[2] > "4" || len(row[2]) != 1 {
		t.Errorf("verify-apikey: %s database round trips over %s requests, want at most 4 over at least 100", row[2], row[1])
	}
}

// tableRow returns the cells of the first Markdown table row of out whose
// first cell is name or starts with name and a space.
func tableRow(t *testing.T, out, name string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		c := strings.Split(strings.Trim(line, "|"), "|")
		for i := range c {
			c[i] = strings.TrimSpace(c[i])
		}
		if strings.HasPrefix(line, "| ") && (c[0] == name || strings.HasPrefix(c[0], name+" ")) {
			return c
		}
	}
	t.Fatalf("no %q row", name)
	return nil
}
