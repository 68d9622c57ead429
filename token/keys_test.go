package token_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"authd/token"
)

func genKey(t *testing.T, alg string, at time.Time) *token.Key {
	t.Helper()
	k, err := token.GenerateKey(alg, at)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keySet(t *testing.T, secret []byte, signing string, keys ...*token.Key) *token.KeySet {
	t.Helper()
	ks, err := token.NewKeySet(secret, keys, signing)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestAsymmetricSignAndVerify(t *testing.T) {
	now := time.Now()
	for _, alg := range []string{token.ES256, token.EdDSA, token.RS256} {
		t.Run(alg, func(t *testing.T) {
			k := genKey(t, alg, now)
			iss, err := token.New(keySet(t, nil, "", k), token.Options{TTL: time.Hour, Issuer: "https://auth.example.com", Audience: "postgrest"})
			if err != nil {
				t.Fatal(err)
			}
			raw, _, err := iss.Issue("alice", "web_user", "sid")
			if err != nil {
				t.Fatal(err)
			}
			// An independent check with the public key alone.
			parsed, err := jwt.Parse(raw, func(tok *jwt.Token) (any, error) {
				if tok.Header["kid"] != k.ID {
					t.Errorf("got kid %v, want %s", tok.Header["kid"], k.ID)
				}
				return k.Public(), nil
			}, jwt.WithValidMethods([]string{alg}), jwt.WithIssuer("https://auth.example.com"), jwt.WithAudience("postgrest"))
			if err != nil || !parsed.Valid {
				t.Fatalf("%s token does not verify with its public key: %v", alg, err)
			}
			if _, err := iss.Verify(raw); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	t0 := time.Now()
	old := genKey(t, token.ES256, t0)
	iss, err := token.New(keySet(t, nil, "", old), token.Options{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	byOld, _, _ := iss.Issue("alice", "r", "")
	gen := iss.Generation()

	// A newer key joins: it signs, the old one still verifies.
	next := genKey(t, token.EdDSA, t0.Add(time.Second))
	iss.SetKeys(keySet(t, nil, "", old, next))
	if iss.Generation() == gen {
		t.Error("generation did not change with the key set")
	}
	if got := iss.Keys().SigningKeyID(); got != next.ID {
		t.Errorf("got signing kid %q, want the newest %q", got, next.ID)
	}
	byNext, _, _ := iss.Issue("alice", "r", "")
	for name, raw := range map[string]string{"old": byOld, "new": byNext} {
		if _, err := iss.Verify(raw); err != nil {
			t.Errorf("%s token refused after rotation: %v", name, err)
		}
	}
	// The old key is removed: its tokens die, the new ones live.
	iss.SetKeys(keySet(t, nil, "", next))
	if _, err := iss.Verify(byOld); !errors.Is(err, token.ErrKeyID) {
		t.Errorf("got %v for a token of a removed key, want ErrKeyID", err)
	}
	if _, err := iss.Verify(byNext); err != nil {
		t.Errorf("new token refused: %v", err)
	}
	// signing_kid can hold back a new key (publish first, sign later).
	if got := keySet(t, nil, old.ID, old, next).SigningKeyID(); got != old.ID {
		t.Errorf("got signing kid %q, want the chosen %q", got, old.ID)
	}
}

func TestKeyConfusionRefused(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	ec := genKey(t, token.ES256, time.Now())
	iss, err := token.New(keySet(t, secret, "", ec), token.Options{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"role": "r", "exp": time.Now().Add(time.Hour).Unix()}
	pub, _ := json.Marshal(ec.Public())
	sign := func(m jwt.SigningMethod, key any, kid string) string {
		tok := jwt.NewWithClaims(m, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, tc := range map[string]struct {
		raw  string
		want error
	}{
		"HS256 under the EC key's kid":    {sign(jwt.SigningMethodHS256, secret, ec.ID), token.ErrAlgorithm},
		"HS256 keyed with the public key": {sign(jwt.SigningMethodHS256, pub, ec.ID), token.ErrAlgorithm},
		"ES256 without kid":               {sign(jwt.SigningMethodES256, other, ""), token.ErrAlgorithm},
		"ES256 by another key, same kid":  {sign(jwt.SigningMethodES256, other, ec.ID), jwt.ErrTokenSignatureInvalid},
		"unknown kid":                     {sign(jwt.SigningMethodES256, other, "nope"), token.ErrKeyID},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := iss.Verify(tc.raw); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	// HS256 without kid still works while the secret is in the set.
	if _, err := iss.Verify(sign(jwt.SigningMethodHS256, secret, "")); err != nil {
		t.Errorf("HS256 token refused: %v", err)
	}
}

func TestJWKSHasPublicKeysOnly(t *testing.T) {
	keys := []*token.Key{genKey(t, token.ES256, time.Now()), genKey(t, token.EdDSA, time.Now()), genKey(t, token.RS256, time.Now())}
	b, err := keySet(t, []byte(strings.Repeat("s", 32)), "", keys...).JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 3 {
		t.Fatalf("got %d keys, want 3 (the HMAC secret is never published)", len(set.Keys))
	}
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("JWK %v has private member %q", k["kid"], private)
			}
		}
		if k["kid"] == "" || k["alg"] == "" || k["use"] != "sig" {
			t.Errorf("JWK without kid/alg/use: %v", k)
		}
	}
}

func TestLoadKeyDir(t *testing.T) {
	dir := t.TempDir()
	es := genKey(t, token.ES256, time.Now())
	ed := genKey(t, token.EdDSA, time.Now().Add(time.Second))
	for _, k := range []*token.Key{es, ed} {
		b, err := k.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		// The layout of a Kubernetes secret volume: files in a timestamped
		// directory, reached through ..data and symlinks.
		real := filepath.Join(dir, "..2026_11_25", k.ID+".pem")
		if err := os.MkdirAll(filepath.Dir(real), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(real, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..2026_11_25", k.ID+".pem"), filepath.Join(dir, k.ID+".pem")); err != nil {
			t.Fatal(err)
		}
	}
	keys, signing, err := token.LoadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ks := keySet(t, nil, signing, keys...)
	if got := ks.SigningKeyID(); got != ed.ID {
		t.Errorf("got signing kid %q, want the newest %q", got, ed.ID)
	}
	if got := strings.Join(ks.Algorithms(), ","); got != "ES256,EdDSA" {
		t.Errorf("got algorithms %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, token.SigningKIDFile), []byte(es.ID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, signing, err = token.LoadKeyDir(dir)
	if err != nil || signing != es.ID || keySet(t, nil, signing, keys...).SigningKeyID() != es.ID {
		t.Errorf("signing_kid not honoured: %q, %v", signing, err)
	}
	// A broken file is an error naming it, never a silently smaller set.
	if err := os.WriteFile(filepath.Join(dir, "broken.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := token.LoadKeyDir(dir); err == nil || !strings.Contains(err.Error(), "broken.pem") {
		t.Errorf("got %v, want an error naming broken.pem", err)
	}
}

func TestNestedRoleClaim(t *testing.T) {
	ks := keySet(t, []byte(strings.Repeat("s", 32)), "")
	iss, err := token.New(ks, token.Options{TTL: time.Hour, RolePath: "resource_access.postgrest_api.roles"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := iss.Issue("alice", "web_user", "sid")
	if err != nil {
		t.Fatal(err)
	}
	c := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(raw, c, func(*jwt.Token) (any, error) { return []byte(strings.Repeat("s", 32)), nil },
		jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatal(err)
	}
	// Where Keycloak puts it, and where PostgREST's default looks.
	got, _ := json.Marshal(c["resource_access"])
	if string(got) != `{"postgrest_api":{"roles":["web_user"]}}` || c["role"] != "web_user" {
		t.Errorf("got resource_access %s and role %v", got, c["role"])
	}
	if v, err := iss.Verify(raw); err != nil || v.Role != "web_user" {
		t.Errorf("authd's own Verify: %+v, %v", v, err)
	}
	for _, bad := range []string{"a..b", "exp.x", "role"} {
		if _, err := token.New(ks, token.Options{TTL: time.Hour, RolePath: bad}); err == nil {
			t.Errorf("RolePath %q accepted", bad)
		}
	}
}

func TestKeygenKidsSortByCreation(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 17, 5, 12, 0, time.UTC)
	prev := ""
	for i := range 20 {
		// Same second, a microsecond apart: creation order must win over
		// the random suffix.
		k := genKey(t, token.EdDSA, t0.Add(time.Duration(i)*time.Microsecond))
		if k.ID <= prev {
			t.Fatalf("kid %q sorts before the older %q", k.ID, prev)
		}
		prev = k.ID
	}
}
