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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	// Any failed request fails the test, so logins must not be shed on a
	// busy machine: bcrypt at normal priority (at nice 10 two CPU-bound
	// neighbours leave it a tenth of a CPU) and a wait for a slot far
	// longer than a cost-10 compare takes there. Shedding is tested in
	// server; this checks the report.
	err := run(ctx, []string{"-duration", "3s", "-interval", "1s", "-users", "4",
		"-login-rate", "5", "-refresh-rate", "50", "-verify-rate", "50", "-apikey-rate", "50",
		"-server-env", "AUTHD_BCRYPT_NICE=0", "-server-env", "AUTHD_LOGIN_QUEUE_WAIT=1m",
		"-server-env", "AUTHD_LOGIN_QUEUE=64",
		"-db-prefix", storetest.Prefix()}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("report:\n%s", out)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	// A kind with no answer within an interval shows "–" there: on a busy
	// machine a second may pass without a login. The summary rows below
	// require every kind to have been answered.
	line := regexp.MustCompile(`(?m)^\| \d+s \| (\d+) \| 0 \|( ([\d.]+ ms|–) \|){5} [\d.]+ MB \| \d+ \| \d+ \(\d+ busy\) \|$`)
	if n := len(line.FindAllString(out, -1)); n < 2 {
		t.Errorf("%d interval lines with RSS, goroutines and pool filled and no errors, want at least 2", n)
	}
	for _, k := range kinds {
		row := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(k) + ` \| [1-9]\d* \| 0 \|`)
		if !row.MatchString(out) {
			t.Errorf("no summary row for %s with requests and no errors", k)
		}
	}
	if !strings.Contains(out, "- authd RSS over time: ") {
		t.Error("no RSS summary")
	}
}
