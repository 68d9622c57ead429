package token_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"authd/token"
)

// writeKeyFile writes k as DIR/<kid>.pem with mode perm.
func writeKeyFile(t *testing.T, dir string, k *token.Key, perm os.FileMode) string {
	t.Helper()
	b, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, k.ID+".pem")
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; set it exactly.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func kids(d *token.KeyDir) string {
	var ids []string
	for _, k := range d.Keys() {
		ids = append(ids, k.ID)
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

// TestKeyDirRefusesWritableFiles: a key file or key directory that group
// or others may write is refused at start-up, as ssh refuses such key
// files; mode bits count, so this holds for root too.
func TestKeyDirRefusesWritableFiles(t *testing.T) {
	k := genKey(t, token.ES256, time.Now())
	for _, tc := range []struct {
		name     string
		dirMode  os.FileMode
		fileMode os.FileMode
		want     string // "" for accepted
	}{
		{"0700 directory, 0600 file", 0o700, 0o600, ""},
		{"0755 directory, 0644 file", 0o755, 0o644, ""},
		{"group-writable file", 0o700, 0o660, "key file"},
		{"world-writable file", 0o700, 0o602, "key file"},
		{"group-writable directory", 0o770, 0o600, "key directory"},
		{"world-writable sticky directory, as /tmp", 0o1777, 0o600, "key directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			writeKeyFile(t, dir, k, tc.fileMode)
			chmod(t, dir, tc.dirMode)
			keys, _, err := token.LoadKeyDir(dir)
			if tc.want == "" {
				if err != nil || len(keys) != 1 {
					t.Fatalf("got %d keys, %v; want the key", len(keys), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want+" ") || !strings.Contains(err.Error(), "writable by group or others") {
				t.Fatalf("got %d keys, error %v; want a refusal of the %s", len(keys), err, tc.want)
			}
		})
	}

	// A symlink (as in a Kubernetes secret volume) is judged by where it
	// points: a 0600 file in a world-writable directory can be replaced.
	dir, elsewhere := t.TempDir(), t.TempDir()
	real := writeKeyFile(t, elsewhere, k, 0o600)
	chmod(t, elsewhere, 0o777)
	if err := os.Symlink(real, filepath.Join(dir, k.ID+".pem")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := token.LoadKeyDir(dir); err == nil || !strings.Contains(err.Error(), elsewhere) {
		t.Errorf("key behind a symlink into a world-writable directory: got %v, want a refusal naming %s", err, elsewhere)
	}
}

// TestKeyDirReload: a reading after a good one keeps, for each file that
// is still there but cannot be used now, the key it held before; adds no
// key from a file nobody vetted; and drops the key of every removed file,
// whatever else is broken.
func TestKeyDirReload(t *testing.T) {
	t0 := time.Now()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a, b, c := genKey(t, token.ES256, t0), genKey(t, token.EdDSA, t0.Add(time.Second)), genKey(t, token.ES256, t0.Add(2*time.Second))
	pathA, pathB := writeKeyFile(t, dir, a, 0o600), writeKeyFile(t, dir, b, 0o600)
	if err := os.WriteFile(filepath.Join(dir, token.SigningKIDFile), []byte(a.ID), 0o600); err != nil {
		t.Fatal(err)
	}
	prev, problems, err := token.ReadKeyDir(dir, nil)
	if err != nil || len(problems) != 0 || kids(prev) != a.ID+","+b.ID || prev.SigningKID() != a.ID {
		t.Fatalf("first reading: %s signing %q, %v, %v", kids(prev), prev.SigningKID(), problems, err)
	}

	// a removed (while signing_kid still names it), b half-rewritten, a
	// broken newcomer.
	if err := os.Remove(pathA); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pathB, []byte("-----BEGIN PRIVATE KEY-----\nAAAA"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zzz.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, problems, err := token.ReadKeyDir(dir, prev)
	if err != nil {
		t.Fatal(err)
	}
	if kids(d) != b.ID || d.SigningKID() != "" {
		t.Errorf("got keys %s signing %q; want only %s (its previous version), the newest signing", kids(d), d.SigningKID(), b.ID)
	}
	if got := joinErrs(problems); !strings.Contains(got, pathB) || !strings.Contains(got, "zzz.pem") || !strings.Contains(got, token.SigningKIDFile) {
		t.Errorf("problems %q: want %s, zzz.pem and signing_kid named", got, pathB)
	}
	if got := joinErrs(problems); strings.Contains(got, "AAAA") || strings.Contains(got, "not a key") {
		t.Errorf("problems quote file contents: %q", got)
	}

	// The directory turns world-writable: a new key there is not trusted,
	// the vetted one stays, and a removal still counts.
	chmod(t, dir, 0o777)
	writeKeyFile(t, dir, c, 0o600)
	d2, problems, err := token.ReadKeyDir(dir, d)
	if err != nil || kids(d2) != b.ID || !strings.Contains(joinErrs(problems), "key directory") {
		t.Errorf("writable directory: got %s, %v, %v; want %s kept and the directory named", kids(d2), problems, err, b.ID)
	}
	if err := os.Remove(pathB); err != nil {
		t.Fatal(err)
	}
	d3, _, err := token.ReadKeyDir(dir, d2)
	if err != nil || kids(d3) != "" {
		t.Errorf("removed from a writable directory: got %q, %v; want no key", kids(d3), err)
	}

	// Fixed: the newcomer is read; a second file claiming its kid later
	// is not.
	chmod(t, dir, 0o700)
	d3, problems, err = token.ReadKeyDir(dir, d3)
	if err != nil || kids(d3) != c.ID {
		t.Errorf("after the fix: got %s, %v, %v; want %s", kids(d3), problems, err, c.ID)
	}
	if err := os.WriteFile(filepath.Join(dir, "copy.json"), []byte(`{"kty":"OKP","crv":"Ed25519","kid":"`+c.ID+`","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d4, problems, err := token.ReadKeyDir(dir, d3)
	if err != nil || kids(d4) != c.ID || !strings.Contains(joinErrs(problems), "also in") {
		t.Errorf("kid claimed twice: got %s, %v, %v; want %s alone and the clash reported", kids(d4), problems, err, c.ID)
	}

	// The directory itself gone: no key from it is trusted.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if d5, _, err := token.ReadKeyDir(dir, d4); err != nil || kids(d5) != "" {
		t.Errorf("directory removed: got %q, %v; want no key", kids(d5), err)
	}
}

func joinErrs(errs []error) string {
	var s []string
	for _, err := range errs {
		s = append(s, err.Error())
	}
	return strings.Join(s, "\n")
}
