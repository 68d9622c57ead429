package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nkeys"

	"authd/store/storetest"
)

// jsonLines parses every line of a log as one JSON object, failing the
// test on a line that is not.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not one JSON object: %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

// withMsg is the log lines whose msg is msg.
func withMsg(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

const retryMsg = "database not reachable; retrying"

// TestRetry: attempts back off from 250 ms, doubling, capped at 5 s, each
// failure logged with its number, until the wait has passed.
func TestRetry(t *testing.T) {
	refused := errors.New("connect to database postgres@127.0.0.1:1/x: dial tcp 127.0.0.1:1: connect: connection refused")

	t.Run("gives up after the wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var logs bytes.Buffer
			start := time.Now()
			var at []time.Duration
			err := retry(t.Context(), 10*time.Second, newLogger(&logs, "json", "info"), func(context.Context) error {
				at = append(at, time.Since(start))
				return refused
			})
			if err == nil || !strings.Contains(err.Error(), "database not reachable within AUTHD_DB_WAIT=10s (7 attempts)") || !errors.Is(err, refused) {
				t.Errorf("got %v, want the wait, the attempts and the last error", err)
			}
			want := []time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond, 1750 * time.Millisecond,
				3750 * time.Millisecond, 7750 * time.Millisecond, 10 * time.Second}
			if fmt.Sprint(at) != fmt.Sprint(want) {
				t.Errorf("attempts at %v, want %v", at, want)
			}
			lines := withMsg(jsonLines(t, logs.String()), retryMsg)
			if len(lines) != 6 {
				t.Fatalf("got %d retry lines, want 6:\n%s", len(lines), logs.String())
			}
			for i, l := range lines {
				if l["level"] != "WARN" || l["attempt"] != float64(i+1) || l["err"] != refused.Error() {
					t.Errorf("line %d: got %v, want a warning with attempt %d and the error", i, l, i+1)
				}
			}
			if got := lines[4]["retry_in_ms"]; got != float64(4000) {
				t.Errorf("5th pause: got %v ms, want 4000", got)
			}
		})
	})

	t.Run("succeeds on the third attempt", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var logs bytes.Buffer
			n := 0
			err := retry(t.Context(), time.Minute, newLogger(&logs, "json", "info"), func(context.Context) error {
				if n++; n < 3 {
					return refused
				}
				return nil
			})
			if err != nil || n != 3 {
				t.Errorf("got %v after %d attempts, want success after 3", err, n)
			}
			if lines := withMsg(jsonLines(t, logs.String()), retryMsg); len(lines) != 2 {
				t.Errorf("got %d retry lines, want 2:\n%s", len(lines), logs.String())
			}
		})
	})

	t.Run("0 tries once", func(t *testing.T) {
		var logs bytes.Buffer
		n := 0
		err := retry(t.Context(), 0, newLogger(&logs, "json", "info"), func(context.Context) error { n++; return refused })
		if !errors.Is(err, refused) || n != 1 || logs.Len() != 0 {
			t.Errorf("got %v after %d attempts, logs %q; want the error after 1, no logs", err, n, logs.String())
		}
	})

	t.Run("stopped while waiting", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			err := retry(ctx, time.Minute, newLogger(io.Discard, "json", "info"), func(context.Context) error { return refused })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("got %v, want the context's error", err)
			}
		})
	})
}

// get fetches url, returning the status, the Retry-After header and the
// body.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// waitLog waits until cond holds of serve's logs, or serve exits, or a
// minute passes.
func waitLog(t *testing.T, what string, logs *syncBuffer, done chan error, cond func(lines []map[string]any) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for !cond(jsonLines(t, logs.String())) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s: serve exited: %v\n%s", what, err, logs)
		case <-deadline:
			t.Fatalf("%s: not within a minute; logs:\n%s", what, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestServeWaitsForDatabase: serve started before its PostgreSQL listens
// answers liveness at once and 503 elsewhere, logs each attempt, and
// serves once the database is up.
func TestServeWaitsForDatabase(t *testing.T) {
	t.Parallel()
	pg := newPrivatePG(t)
	admin := connect(t, pg.url("postgres"))
	if _, err := admin.Exec(t.Context(), `create database authd`); err != nil {
		t.Fatal(err)
	}
	mustRun(t, baseEnv(pg.url("authd")), "", "migrate", "up")
	pg.stop()

	// Trust authentication ignores the password; it must not be logged.
	const password = "pw-that-must-not-be-logged"
	url := fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/authd?sslmode=disable", password, pg.port)
	env := serveEnv(url)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"authd", "serve"}, getenv(env), environList(env), strings.NewReader(""), io.Discard, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	})

	var base string
	waitLog(t, "listening", logs, done, func(lines []map[string]any) bool {
		if l := withMsg(lines, "authd listening"); len(l) > 0 {
			base = "http://" + l[0]["addr"].(string)
			return true
		}
		return false
	})
	waitLog(t, "first retry", logs, done, func(lines []map[string]any) bool { return len(withMsg(lines, retryMsg)) > 0 })

	if status, _, body := get(t, base+"/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while waiting: got %d %s, want 200", status, body)
	}
	for _, path := range []string{"/readyz", "/.well-known/jwks.json"} {
		status, retryAfter, body := get(t, base+path)
		if status != http.StatusServiceUnavailable || retryAfter == "" ||
			body != `{"code":"PT503","details":"authd is starting and waiting for its database","hint":null,"message":"Database unavailable"}` {
			t.Errorf("%s while waiting: got %d (Retry-After %q) %s, want 503 PT503 with Retry-After", path, status, retryAfter, body)
		}
	}
	r := (&testServer{base: base}).post(t, "/rpc/login", `{"user_":"a","pass":"b"}`, nil)
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"PT503"`) {
		t.Errorf("login while waiting: got %d %s, want 503 PT503", r.StatusCode, r.body)
	}

	pg.start()
	waitLog(t, "ready", logs, done, func(lines []map[string]any) bool { return len(withMsg(lines, "authd ready")) > 0 })
	if status, _, body := get(t, base+"/readyz"); status != http.StatusOK {
		t.Errorf("/readyz once the database is up: got %d %s, want 200", status, body)
	}

	lines := jsonLines(t, logs.String())
	for i, l := range withMsg(lines, retryMsg) {
		if l["attempt"] != float64(i+1) || l["level"] != "WARN" || !strings.Contains(l["err"].(string), fmt.Sprint(pg.port)) {
			t.Errorf("retry line %d: got %v, want a warning with attempt %d and the error naming the port", i, l, i+1)
		}
	}
	for _, l := range withMsg(lines, "request") {
		if _, ok := l["latency_ms"].(float64); !ok {
			t.Errorf("request line without a number latency_ms: %v", l)
		}
	}
	if strings.Contains(logs.String(), password) {
		t.Errorf("the database password appears in the logs:\n%s", logs)
	}
}

// TestServeDatabaseWaitEnds: serve gives up when AUTHD_DB_WAIT has passed,
// with one error line; a failure that waiting cannot fix ends it at once.
func TestServeDatabaseWaitEnds(t *testing.T) {
	t.Parallel()
	const password = "pw-that-must-not-be-logged"
	nothing := serveEnv(fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/authd?sslmode=disable", password, freePort(t)))
	nothing["AUTHD_DB_WAIT"] = "1s"
	missing := serveEnv(storetest.WithDatabase(storetest.AdminURL(), "authd_no_such_database_"+storetest.Unique()))
	missing["AUTHD_DB_WAIT"] = "1m"

	for _, tt := range []struct {
		name    string
		env     map[string]string
		want    string
		retries bool
	}{
		{"nothing listens", nothing, "database not reachable within AUTHD_DB_WAIT=1s", true},
		{"missing database", missing, "does not exist", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			err := run(ctx, []string{"authd", "serve"}, getenv(tt.env), environList(tt.env), strings.NewReader(""), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			lines := jsonLines(t, stderr.String())
			if n := len(withMsg(lines, retryMsg)); (n > 0) != tt.retries {
				t.Errorf("got %d retry lines, want retries %v:\n%s", n, tt.retries, stderr.String())
			}
			last := lines[len(lines)-1]
			if last["level"] != "ERROR" || last["msg"] != "authd serve failed" || !strings.Contains(last["err"].(string), tt.want) {
				t.Errorf("last log line: got %v, want the error", last)
			}
			if len(withMsg(lines, "authd ready")) > 0 {
				t.Errorf("serve said it was ready:\n%s", stderr.String())
			}
			if strings.Contains(stderr.String(), password) {
				t.Errorf("the database password appears in the logs:\n%s", stderr.String())
			}
		})
	}
}

// TestNATSCalloutWaitsForDatabase: nats-callout, too, waits for its
// database, its health endpoint alive but not ready meanwhile, and stops
// cleanly when told to while it waits.
func TestNATSCalloutWaitsForDatabase(t *testing.T) {
	t.Parallel()
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	issuerSeedFile, _ := calloutKeyFile(t, account)
	env := baseEnv(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/authd?sslmode=disable", freePort(t)))
	env["JWT_SECRET"] = secret32
	env["AUTHD_NATS_USER"], env["AUTHD_NATS_PASSWORD"] = "authd", "pw"
	env["AUTHD_NATS_ISSUER_SEED_FILE"] = issuerSeedFile
	env["AUTHD_NATS_HEALTH_ADDR"] = "127.0.0.1:0"
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"authd", "nats-callout"}, getenv(env), environList(env), strings.NewReader(""), io.Discard, logs)
	}()

	var health string
	waitLog(t, "health listening and a retry", logs, done, func(lines []map[string]any) bool {
		if l := withMsg(lines, "authd nats-callout health listening"); len(l) > 0 {
			health = "http://" + l[0]["addr"].(string)
		}
		return health != "" && len(withMsg(lines, retryMsg)) > 0
	})
	if status, _, body := get(t, health+"/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while waiting: got %d %s, want 200", status, body)
	}
	if status, retryAfter, body := get(t, health+"/readyz"); status != http.StatusServiceUnavailable || retryAfter == "" {
		t.Errorf("/readyz while waiting: got %d (Retry-After %q) %s, want 503 with Retry-After", status, retryAfter, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopped while waiting: got %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("nats-callout did not stop while waiting for its database")
	}
	lines := jsonLines(t, logs.String())
	if last := lines[len(lines)-1]; last["msg"] != "stopped" {
		t.Errorf("last log line: got %v, want stopped", last)
	}
}
