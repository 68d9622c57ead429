package token_test

import (
	"bytes"
	"crypto/sha256"
	"regexp"
	"strings"
	"testing"

	"authd/token"
)

// apiKeyRe is the documented shape of an API key, the oracle for
// ParseAPIKey.
var apiKeyRe = regexp.MustCompile(`^authd_([a-z2-7]{12})_[A-Za-z0-9_-]{43}$`)

func TestNewAPIKey(t *testing.T) {
	seenID, seenKey := map[string]bool{}, map[string]bool{}
	for range 200 {
		id, plain, hash, err := token.NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		m := apiKeyRe.FindStringSubmatch(plain)
		if m == nil || m[1] != id {
			t.Fatalf("got key %q with id %q, want authd_<id>_<43 base64url characters>", plain, id)
		}
		if seenID[id] || seenKey[plain] {
			t.Fatalf("got id %q / key %q twice", id, plain)
		}
		seenID[id], seenKey[plain] = true, true
		sum := sha256.Sum256([]byte(plain))
		if !bytes.Equal(hash, sum[:]) || !bytes.Equal(token.HashAPIKey(plain), sum[:]) {
			t.Fatal("hash is not the SHA-256 of the whole key")
		}
		gotID, gotHash, ok := token.ParseAPIKey(plain)
		if !ok || gotID != id || !bytes.Equal(gotHash, hash) {
			t.Fatalf("ParseAPIKey(%q) = %q, %x, %v; want %q, %x, true", plain, gotID, gotHash, ok, id, hash)
		}
	}
}

func TestNewAPIKeySecret(t *testing.T) {
	id, old, oldHash, err := token.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	plain, hash, err := token.NewAPIKeySecret(id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain, "authd_"+id+"_") || plain == old || bytes.Equal(hash, oldHash) {
		t.Errorf("rotated %q to %q: want the same id and a new secret", old, plain)
	}
	if gotID, gotHash, ok := token.ParseAPIKey(plain); !ok || gotID != id || !bytes.Equal(gotHash, hash) {
		t.Errorf("ParseAPIKey of the rotated key: got %q, %x, %v", gotID, gotHash, ok)
	}
	for _, bad := range []string{"", "abcdefghijk", "abcdefghijklm", "ABCDEFGHIJKL", "abcdefghijk1", "abcdefghijk8", "abcdefghijk_"} {
		if _, _, err := token.NewAPIKeySecret(bad); err == nil {
			t.Errorf("NewAPIKeySecret(%q): got no error", bad)
		}
	}
}

func TestParseAPIKey(t *testing.T) {
	const (
		id     = "abcdefgh2345"
		secret = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd-_e" // 43
	)
	good := "authd_" + id + "_" + secret
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"valid", good, true},
		{"secret of underscores", "authd_" + id + "_" + strings.Repeat("_", 43), true},
		{"empty", "", false},
		{"prefix only", "authd_", false},
		{"other prefix", "authx_" + id + "_" + secret, false},
		{"upper-case prefix", "AUTHD_" + id + "_" + secret, false},
		{"upper-case id", "authd_" + strings.ToUpper(id) + "_" + secret, false},
		{"id with a digit outside base32", "authd_abcdefgh2340_" + secret, false},
		{"short id, long secret", "authd_abcdefgh234_5" + secret, false},
		{"other separator", "authd_" + id + "-" + secret, false},
		{"secret one short", good[:len(good)-1], false},
		{"secret one long", good + "A", false},
		{"standard base64", "authd_" + id + "_" + secret[:41] + "+/", false},
		{"padding", "authd_" + id + "_" + secret[:42] + "=", false},
		{"trailing newline", good[:len(good)-1] + "\n", false},
		{"space inside", "authd_" + id + "_" + secret[:20] + " " + secret[21:], false},
		{"non-ASCII", "authd_" + id + "_" + secret[:41] + "é", false},
		{"a refresh token", secret, false},
		{"a JWT", "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoid2ViX2Fub24ifQ.c2lnbmF0dXJl", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotID, hash, ok := token.ParseAPIKey(tt.key)
			if ok != tt.ok {
				t.Fatalf("ParseAPIKey(%q): got ok=%v, want %v", tt.key, ok, tt.ok)
			}
			if !ok {
				if gotID != "" || hash != nil {
					t.Errorf("refused key: got id %q and hash %x, want neither", gotID, hash)
				}
				return
			}
			if gotID != id {
				t.Errorf("id: got %q, want %q", gotID, id)
			}
			if sum := sha256.Sum256([]byte(tt.key)); !bytes.Equal(hash, sum[:]) {
				t.Errorf("hash: got %x, want %x", hash, sum)
			}
		})
	}
}

// FuzzParseAPIKey checks that ParseAPIKey never panics, accepts exactly
// the documented shape, and hashes the whole key it accepts.
func FuzzParseAPIKey(f *testing.F) {
	f.Add("authd_abcdefgh2345_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd-_e")
	f.Add("authd_abcdefgh2345_" + strings.Repeat("_", 43))
	f.Add("authd_abcdefgh2345_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd-_")
	f.Add("authd_ABCDEFGH2345_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd-_e")
	f.Add("")
	f.Fuzz(func(t *testing.T, key string) {
		id, hash, ok := token.ParseAPIKey(key)
		m := apiKeyRe.FindStringSubmatch(key)
		if ok != (m != nil) {
			t.Fatalf("ParseAPIKey(%q): got ok=%v, the documented shape says %v", key, ok, m != nil)
		}
		if !ok {
			if id != "" || hash != nil {
				t.Fatalf("ParseAPIKey(%q) refused the key but returned id %q, hash %x", key, id, hash)
			}
			return
		}
		if id != m[1] {
			t.Fatalf("ParseAPIKey(%q): got id %q, want %q", key, id, m[1])
		}
		if !bytes.Equal(hash, token.HashAPIKey(key)) {
			t.Fatalf("ParseAPIKey(%q): hash is not HashAPIKey of the key", key)
		}
	})
}
