package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"authd/store/storetest"
)

// TestSmoke soaks authd for three seconds against the real PostgreSQL
// server (AUTHD_TEST_DATABASE_URL or the local default) and checks the
// report: a line per interval with RSS, goroutines and pool, a summary
// row per kind, and no failed request.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-duration", "3s", "-interval", "1s", "-users", "4",
		"-login-rate", "5", "-refresh-rate", "50", "-verify-rate", "50", "-apikey-rate", "50",
		"-db-prefix", storetest.Prefix()}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("report:\n%s", out)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	line := regexp.MustCompile(`(?m)^\| \d+s \| (\d+) \| 0 \|( [\d.]+ ms \|){5} [\d.]+ MB \| \d+ \| \d+ \(\d+ busy\) \|$`)
	if n := len(line.FindAllString(out, -1)); n < 2 {
		t.Errorf("%d interval lines with every column filled and no errors, want at least 2", n)
	}
	for _, k := range kinds {
		row := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(k) + ` \| [1-9]\d* \| 0 \|`)
		if !row.MatchString(out) {
			t.Errorf("no summary row for %s with requests and no errors", k)
		}
	}
	if !strings.Contains(out, "- authd RSS: min ") {
		t.Error("no RSS summary")
	}
}
