package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// TestSmoke runs the whole benchmark briefly against the real PostgreSQL
// server (AUTHD_TEST_DATABASE_URL or the local default), with two signing
// algorithms and the smallest storm that still fills every row, and
// checks that the report has every row and that no request failed.
func TestSmoke(t *testing.T) {
	// A bound on a hung run only: the run takes 10-50 s on a busy 2-CPU
	// machine under -race.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-duration", "300ms", "-concurrency", "2", "-users", "4",
		"-algs", "HS256,ES256", "-verify-tokens", "600", "-db-prefix", storetest.Prefix(),
		"-storm-refresh-rate", "20", "-storm-verify-rate", "20", "-storm-health-rate", "20",
		// Compares at normal priority: at nice 10, CPU-bound neighbours
		// leave them so little CPU that a login behind another waits past
		// the slot wait and is shed, which the login row counts as a
		// failure. What the priority does is tested in server.
		"-server-env", "AUTHD_BCRYPT_NICE=0"}, &stdout, &stderr)
	t.Logf("report:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()

	perAlg := []string{"refresh (HS256)", "refresh (ES256)", "verify-fresh (HS256)", "verify-fresh (ES256)", "verify-jwt (HS256)", "verify-jwt (ES256)"}
	once := []string{"login", "bcrypt ceiling", "logout", "bare", "verify-cookie", "verify-apikey"}
	for _, name := range append(once, perAlg...) {
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
	// login is bcrypt-bound and runs on the HS256 server only.
	mainTable := out[:strings.Index(out, "### ")]
	for _, name := range once {
		for _, alg := range []string{"HS256", "ES256"} {
			if tableRow(mainTable, name+" ("+alg+")") != nil {
				t.Errorf("%s runs once, but there is a %s row", name, alg)
			}
		}
	}
	// The storm: both windows, every request answered, the verdicts.
	for _, name := range []string{"quiet", "storm"} {
		row := tableRow(out, name)
		if row == nil {
			t.Errorf("no %s row in the login storm table", name)
			continue
		}
		if got := row[len(row)-1]; got != "0" {
			t.Errorf("storm table, %s: errors = %s, want 0", name, got)
		}
	}
	if row := tableRow(out, "storm"); row != nil && (row[1] == "0" || row[2] == "0") {
		t.Errorf("storm: %s logins sent, %s answered 204; want some of each", row[1], row[2])
	}
	for _, want := range []string{"- refresh p99 under the storm: ", "- verify p99 under the storm: ", "- the longest a login waited for its answer: ", "authd_logins_total succeeded +"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q line in the storm section", want)
		}
	}
	// The refresh statement alone, beside refresh over HTTP.
	for _, name := range []string{"rotate statement alone (pgx, 2 connections)", "rotate statement alone, synchronous_commit=off (pgx, 2 connections)"} {
		if row := tableRow(out, name); row == nil || row[1] == "0" || row[len(row)-1] != "0" {
			t.Errorf("%s row: %q, want requests and no errors", name, row)
		}
	}
	if !strings.Contains(out, "Without waiting for the commit flush the statement runs at ") {
		t.Error("no durable / synchronous_commit=off ratio")
	}
	if !strings.Contains(out, "refresh over HTTP runs at ") {
		t.Error("no refresh over HTTP / statement ratio")
	}
	if !strings.Contains(out, "login as % of bcrypt ceiling:") {
		t.Error("no login / bcrypt ceiling ratio")
	}
	for _, name := range []string{"verify-fresh (HS256)", "verify-fresh (ES256)", "verify-jwt (HS256)", "verify-jwt (ES256)", "verify-cookie", "verify-apikey"} {
		if !strings.Contains(out, "- "+name+": ") || !strings.Contains(out, "of bare's throughput") {
			t.Errorf("no %s / bare throughput ratio", name)
		}
	}
	if !strings.Contains(out, "HS256 (JWT_SECRET)") || !regexp.MustCompile(`ES256 \(key \S+-es256-\S+ from authd keygen`).MatchString(out) {
		t.Error("the report does not say how each server signed")
	}

	i := strings.Index(out, "### Signing algorithms")
	j := strings.Index(out, "### Database round trips")
	if i < 0 || j < i {
		t.Fatal("no signing-algorithm section before the round trips")
	}
	algs := out[i:j]
	// Two tables with a row per algorithm: the first under load, the
	// second the cost of one token. Every cell is filled, but for HS256's
	// own differences from HS256 (columns 5 and 7 of the second).
	tokenBytes := map[string]int{}
	for _, alg := range []string{"HS256", "ES256"} {
		var rows [][]string
		for _, line := range strings.Split(algs, "\n") {
			if strings.HasPrefix(line, "| "+alg+" |") {
				rows = append(rows, cells(line))
			}
		}
		if len(rows) != 2 {
			t.Errorf("%s: %d rows in the signing tables, want 2", alg, len(rows))
			continue
		}
		for r, row := range rows {
			for k, c := range row {
				if c == "–" && !(r == 1 && alg == "HS256" && (k == 5 || k == 7)) {
					t.Errorf("%s: empty cell %d in %q", alg, k, row)
				}
			}
		}
		tokenBytes[alg], _ = strconv.Atoi(rows[1][1])
		note := regexp.MustCompile(`- verify-fresh \(` + alg + `\): (\d+) distinct tokens`).FindStringSubmatch(algs)
		if note == nil {
			t.Errorf("%s: no note on verify-fresh's token pool", alg)
		} else if n, _ := strconv.Atoi(note[1]); n < 600 {
			t.Errorf("%s: %d tokens in the pool, want at least -verify-tokens 600", alg, n)
		}
	}
	// An ES256 token carries a kid and a 64-byte signature, against
	// HS256's 32 bytes and no kid.
	if tokenBytes["HS256"] < 100 || tokenBytes["ES256"] <= tokenBytes["HS256"] {
		t.Errorf("token bytes: %v", tokenBytes)
	}
	// When a run sent more requests than its pool held (on a busy machine
	// 300 ms may not), the report must say the pool was cycled through.
	exhausted := false
	for _, alg := range []string{"HS256", "ES256"} {
		row := regexp.MustCompile(`(?m)^\| verify-fresh \(` + alg + `\) \| (\d+) \|`).FindStringSubmatch(out)
		pool := regexp.MustCompile(`- verify-fresh \(` + alg + `\): (\d+) distinct tokens`).FindStringSubmatch(algs)
		if row != nil && pool != nil {
			sent, _ := strconv.Atoi(row[1])
			held, _ := strconv.Atoi(pool[1])
			exhausted = exhausted || sent > held
		}
	}
	if exhausted && (!strings.Contains(algs, "presented a token again") || !strings.Contains(algs, "raise -verify-tokens")) {
		t.Error("a pool smaller than the run: no note that it was cycled through the cache")
	}

	rt := out[j:]
	for _, name := range []string{"login", "refresh", "logout"} {
		if row := tableRow(rt, name); row == nil {
			t.Errorf("no %q row in the round-trip table", name)
		}
	}
	// Cells: request, sample, window, total, round trips per request, ...
	// The token path does no database work at all, cached or not.
	for _, name := range []string{"bare", "verify-jwt", "verify-cookie", "verify-fresh"} {
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
	if want := []string{"HS256", "ES256", "EdDSA"}; !slices.Equal(o.algs, want) {
		t.Errorf("default -algs: %v, want %v", o.algs, want)
	}
	if !o.algScenarios["refresh"] || !o.algScenarios["verify-fresh"] || !o.algScenarios["verify-jwt"] || len(o.algScenarios) != 3 {
		t.Errorf("default -alg-scenarios: %v, want refresh, verify-fresh, verify-jwt", o.algScenarios)
	}
	// A verify scenario brings bare, as login brings the bcrypt ceiling.
	for _, v := range verifyScenarios {
		o, err = parseFlags([]string{"-scenarios", v}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if !o.scenarios["bare"] || !o.scenarios[v] || len(o.scenarios) != 2 {
			t.Errorf("-scenarios %s: got %v, want bare and %s", v, o.scenarios, v)
		}
	}
	// Algorithm names in any case, once each, in the order given.
	o, err = parseFlags([]string{"-algs", "rs256, eddsa,RS256", "-alg-scenarios", "login,refresh"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"RS256", "EdDSA"}; !slices.Equal(o.algs, want) {
		t.Errorf("-algs rs256, eddsa,RS256: %v, want %v", o.algs, want)
	}
	if !o.algScenarios["login"] || len(o.algScenarios) != 2 {
		t.Errorf("-alg-scenarios login,refresh: %v", o.algScenarios)
	}
	for _, args := range [][]string{
		{"-algs", "PS256"},
		{"-algs", ","},
		{"-alg-scenarios", "bcrypt"},
		{"-alg-scenarios", "verify-everything"},
		{"-verify-tokens", "0"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestTokenHeader(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	alg, kid, err := tokenHeader(enc([]byte(`{"alg":"ES256","kid":"k1","typ":"JWT"}`)) + ".e30.sig")
	if err != nil || alg != "ES256" || kid != "k1" {
		t.Errorf("tokenHeader: %q, %q, %v", alg, kid, err)
	}
	for _, bad := range []string{"", "no-dots", "!!.e30.sig", enc([]byte("[1]")) + ".e30.sig"} {
		if _, _, err := tokenHeader(bad); err == nil {
			t.Errorf("tokenHeader(%q): no error", bad)
		}
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
}

// tableRow returns the cells of the first Markdown table row whose first
// cell is name or starts with name and a space.
func tableRow(out, name string) []string {
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		c := cells(line)
		if c[0] == name || strings.HasPrefix(c[0], name+" ") {
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

func TestGroup(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}
