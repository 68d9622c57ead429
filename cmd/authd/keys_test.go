package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeygenAndJWKS(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	var kids []string
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		r := mustRun(t, map[string]string{}, "", "keygen", "--alg", alg, "--out", dir)
		kid := strings.TrimPrefix(strings.SplitN(r.stdout, "\n", 2)[0], "kid: ")
		path := filepath.Join(dir, kid+".pem")
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("keygen %s: %v (stdout %q)", alg, err, r.stdout)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s written with mode %v, want 0600", path, fi.Mode().Perm())
		}
		kids = append(kids, kid)
	}
	r := mustRun(t, map[string]string{"AUTHD_SIGNING_KEYS_DIR": dir}, "", "jwks")
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &set); err != nil {
		t.Fatalf("jwks output %q: %v", r.stdout, err)
	}
	if len(set.Keys) != 3 {
		t.Fatalf("got %d keys, want 3", len(set.Keys))
	}
	for _, k := range set.Keys {
		if _, private := k["d"]; private {
			t.Errorf("JWKS holds a private key: %v", k["kid"])
		}
		if !strings.Contains(strings.Join(kids, " "), k["kid"].(string)) {
			t.Errorf("unknown kid %v", k["kid"])
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keygen", "--alg", "HS512", "--out", dir}, "unsupported algorithm"},
		{[]string{"keygen", "--alg", "ES256"}, "usage"},
		{[]string{"jwks", "--dir", t.TempDir()}, "no keys"},
	} {
		r := runCLI(t, map[string]string{}, "", tc.args...)
		if r.err == nil || !strings.Contains(r.err.Error(), tc.want) || strings.Contains(r.err.Error(), "\n") {
			t.Errorf("authd %s: got %v, want one line containing %q", strings.Join(tc.args, " "), r.err, tc.want)
		}
	}
}

// TestKeygenDirectory: keygen makes a missing directory and its missing
// parents for the owner only, and refuses a directory that group or
// others may write (serve would refuse the key in it), writing nothing.
func TestKeygenDirectory(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, "etc", "authd", "keys")
	mustRun(t, map[string]string{}, "", "keygen", "--out", dir)
	for _, d := range []string{filepath.Join(base, "etc"), filepath.Join(base, "etc", "authd"), dir} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: got %v, %v; want a 0700 directory", d, fi.Mode(), err)
		}
	}
	if r := mustRun(t, map[string]string{"AUTHD_SIGNING_KEYS_DIR": dir}, "", "jwks"); !strings.Contains(r.stdout, `"kid"`) {
		t.Errorf("jwks of the new directory: %q", r.stdout)
	}

	open := filepath.Join(base, "shared")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, map[string]string{}, "", "keygen", "--out", open)
	if r.err == nil || !strings.Contains(r.err.Error(), "writable by group or others") || strings.Contains(r.err.Error(), "\n") {
		t.Errorf("keygen into a 0777 directory: got %v, want one line refusing it", r.err)
	}
	if entries, _ := os.ReadDir(open); len(entries) != 0 {
		t.Errorf("keygen wrote %d files into the refused directory", len(entries))
	}
}
