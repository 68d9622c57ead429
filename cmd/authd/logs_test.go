package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// runServeOnce runs serve against a database nothing answers, trying once,
// and returns its error and logs.
func runServeOnce(t *testing.T, extra map[string]string) (error, string) {
	t.Helper()
	env := serveEnv("postgres://postgres@127.0.0.1:1/postgres")
	env["AUTHD_DB_WAIT"] = "0"
	for k, v := range extra {
		env[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"authd", "serve"}, getenv(env), environList(env), strings.NewReader(""), &stdout, &stderr)
	if stdout.Len() != 0 {
		t.Errorf("stdout: got %q, want nothing", stdout.String())
	}
	return err, stderr.String()
}

// TestUnknownVariables: AUTHD_* variables authd does not know are named in
// one warning, with the known name they are probably a typo of.
func TestUnknownVariables(t *testing.T) {
	t.Parallel()
	err, logs := runServeOnce(t, map[string]string{
		"AUTHD_ADRR": ":3001", "AUTHD_BCRYPT_COTS": "12", "AUTHD_WHATEVER_ELSE": "1",
		"AUTHD_SERVICE_HOST": "10.0.0.1", "AUTHD_PORT_3001_TCP": "tcp://10.0.0.1:3001", // Kubernetes service links
	})
	if err == nil {
		t.Fatal("serve: got no error")
	}
	var warnings []map[string]any
	for _, l := range jsonLines(t, logs) {
		if l["level"] == "WARN" {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("got %d warnings, want 1:\n%s", len(warnings), logs)
	}
	var got []string
	for _, v := range warnings[0]["variables"].([]any) {
		got = append(got, v.(string))
	}
	want := []string{"AUTHD_ADRR (did you mean AUTHD_ADDR?)", "AUTHD_BCRYPT_COTS (did you mean AUTHD_BCRYPT_COST?)", "AUTHD_WHATEVER_ELSE"}
	if !slices.Equal(got, want) {
		t.Errorf("unknown variables: got %q, want %q", got, want)
	}

	if _, logs := runServeOnce(t, nil); strings.Contains(logs, `"WARN"`) {
		t.Errorf("warnings without unknown variables:\n%s", logs)
	}
}

// TestKnownVariables: every AUTHD_* variable that authd, its scripts or
// its test helpers read is known, so that none is warned about.
func TestKnownVariables(t *testing.T) {
	t.Parallel()
	var files []string
	for _, pattern := range []string{"*.go", "../../store/storetest/*.go", "../../scripts/*.sh", "../../Makefile"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	name := regexp.MustCompile(`\bAUTHD_[A-Z0-9_]*[A-Z0-9]\b`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") && filepath.Dir(f) == "." {
			continue // the tests' own typos
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range name.FindAllString(string(b), -1) {
			if !slices.Contains(knownVars(), v) && !serviceLink(v) {
				t.Errorf("%s reads %s, which knownVars does not list", f, v)
			}
		}
	}
}

// TestLogFormat: JSON by default, slog's text with AUTHD_LOG_FORMAT=text,
// and a bad value is a configuration error.
func TestLogFormat(t *testing.T) {
	t.Parallel()
	_, logs := runServeOnce(t, map[string]string{"AUTHD_LOG_FORMAT": "text"})
	lines := strings.Split(strings.TrimSuffix(logs, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "time=") || !strings.Contains(last, `level=ERROR msg="authd serve failed" err=`) {
		t.Errorf("text log: got %q, want a key=value line with the error", logs)
	}

	err, logs := runServeOnce(t, map[string]string{"AUTHD_LOG_FORMAT": "yaml", "AUTHD_LOG_LEVEL": "loud"})
	if err == nil || !strings.Contains(err.Error(), `AUTHD_LOG_FORMAT: want json or text, got "yaml"`) ||
		!strings.Contains(err.Error(), `AUTHD_LOG_LEVEL: want debug, info, warn or error, got "loud"`) {
		t.Errorf("got %v, want errors naming AUTHD_LOG_FORMAT and AUTHD_LOG_LEVEL", err)
	}
	if lines := jsonLines(t, logs); len(lines) != 1 || lines[0]["msg"] != "invalid configuration" {
		t.Errorf("got %q, want one JSON line", logs)
	}
}

// TestOneMessagePerProblem: a variable set twice over is one problem, not
// also "not set".
func TestOneMessagePerProblem(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret32+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(getenv(map[string]string{"JWT_SECRET": secret32, "JWT_SECRET_FILE": file}))
	if got := problems(err); len(got) != 1 || got[0] != "JWT_SECRET: JWT_SECRET and JWT_SECRET_FILE are both set: use one" {
		t.Errorf("JWT_SECRET and JWT_SECRET_FILE: got %q, want one problem saying both are set", got)
	}

	_, err = loadNATSConfig(getenv(map[string]string{
		"AUTHD_NATS_USER": "callout", "AUTHD_NATS_PASSWORD": "pw", "AUTHD_NATS_PASSWORD_FILE": file,
	}))
	for _, p := range problems(err) {
		if strings.HasPrefix(p, "AUTHD_NATS_PASSWORD") && !strings.Contains(p, "both set") {
			t.Errorf("AUTHD_NATS_PASSWORD and AUTHD_NATS_PASSWORD_FILE: got %q besides the one saying both are set", p)
		}
	}
}
