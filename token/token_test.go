package token_test

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"authd/token"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func issuer(t *testing.T, aud string, now func() time.Time) *token.Issuer {
	t.Helper()
	iss, err := token.NewIssuer(secret, time.Hour, aud, now)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func TestNewIssuerRefusesShortSecret(t *testing.T) {
	if _, err := token.NewIssuer(secret[:31], time.Hour, "", nil); err == nil {
		t.Fatal("got nil error for a 31-byte secret, want a refusal")
	}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	iss := issuer(t, "", clock)
	issAud := issuer(t, "postgrest", clock)
	good, _, err := iss.Issue("alice", "web_user", "sid-1")
	if err != nil {
		t.Fatal(err)
	}
	base := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"role": "web_user", "sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	cases := []struct {
		name string
		iss  *token.Issuer
		raw  string
		ok   bool
	}{
		{"issued", iss, good, true},
		{"alg none", iss, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, base(nil)), false},
		{"HS512 with the same secret", iss, sign(t, jwt.SigningMethodHS512, secret, base(nil)), false},
		{"wrong secret", iss, sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), base(nil)), false},
		{"expired 20s ago: within PostgREST's 30s leeway", iss, sign(t, jwt.SigningMethodHS256, secret, base(jwt.MapClaims{"exp": now.Add(-20 * time.Second).Unix()})), true},
		{"expired 40s ago", iss, sign(t, jwt.SigningMethodHS256, secret, base(jwt.MapClaims{"exp": now.Add(-40 * time.Second).Unix()})), false},
		{"no exp", iss, sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"role": "web_user"}), false},
		{"not yet valid", iss, sign(t, jwt.SigningMethodHS256, secret, base(jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()})), false},
		{"issued in the future", iss, sign(t, jwt.SigningMethodHS256, secret, base(jwt.MapClaims{"iat": now.Add(time.Minute).Unix()})), false},
		{"audience required and missing", issAud, sign(t, jwt.SigningMethodHS256, secret, base(nil)), false},
		{"audience matches", issAud, sign(t, jwt.SigningMethodHS256, secret, base(jwt.MapClaims{"aud": []string{"other", "postgrest"}})), true},
		{"audience differs", issAud, sign(t, jwt.SigningMethodHS256, secret, base(jwt.MapClaims{"aud": "other"})), false},
		{"garbage", iss, "a.b.c", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.iss.Verify(tc.raw)
			if (err == nil) != tc.ok {
				t.Errorf("Verify: got error %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestIssuedClaims(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	iss := issuer(t, "postgrest", func() time.Time { return now })
	raw, exp, err := iss.Issue("alice", "web_user", "sid-1")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("got exp %v, want %v", exp, now.Add(time.Hour))
	}
	c, err := iss.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Role != "web_user" || c.Username != "alice" || c.Subject != "alice" || c.SessionID != "sid-1" || c.ID == "" {
		t.Errorf("got claims %+v", c)
	}
	if hdr := strings.Split(raw, ".")[0]; hdr != "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" {
		t.Errorf("got header %q, want {\"alg\":\"HS256\",\"typ\":\"JWT\"}", hdr)
	}
}

func TestVerifySignatureIgnoresExpiryOnly(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	old := issuer(t, "", func() time.Time { return now.Add(-48 * time.Hour) })
	raw, _, _ := old.Issue("alice", "web_user", "sid-1")
	iss := issuer(t, "", func() time.Time { return now })
	if _, err := iss.Verify(raw); err == nil {
		t.Fatal("Verify accepted a token expired for a day")
	}
	c, err := iss.VerifySignature(raw)
	if err != nil || c.SessionID != "sid-1" {
		t.Fatalf("VerifySignature: got %+v, %v; want the expired token's claims", c, err)
	}
	forged := raw[:len(raw)-4] + "AAAA"
	if _, err := iss.VerifySignature(forged); err == nil {
		t.Error("VerifySignature accepted a forged signature")
	}
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sid": "x"})
	if _, err := iss.VerifySignature(none); err == nil {
		t.Error("VerifySignature accepted alg none")
	}
}

func TestNewRefresh(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		plain, hash, err := token.NewRefresh()
		if err != nil {
			t.Fatal(err)
		}
		if len(plain) != 43 || seen[plain] {
			t.Fatalf("got token %q (len %d, seen %v), want 43 fresh characters", plain, len(plain), seen[plain])
		}
		seen[plain] = true
		sum := sha256.Sum256([]byte(plain))
		if string(hash) != string(sum[:]) || string(token.HashRefresh(plain)) != string(sum[:]) {
			t.Fatalf("hash is not the token's SHA-256")
		}
	}
}

// TestVerifyRefusesAmbiguousTokens: tokens signed with the real secret
// whose only fault is one property golang-jwt lets through.
func TestVerifyRefusesAmbiguousTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ks, err := token.NewKeySet(secret, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.New(ks, token.Options{TTL: time.Hour, MaxLifetime: 2 * time.Hour, Issuer: "https://auth.example.com", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	craft := func(header, payload string) string {
		enc := base64.RawURLEncoding.EncodeToString
		signing := enc([]byte(header)) + "." + enc([]byte(payload))
		sig, err := jwt.SigningMethodHS256.Sign(signing, secret)
		if err != nil {
			t.Fatal(err)
		}
		return signing + "." + enc(sig)
	}
	n := now.Unix()
	good := fmt.Sprintf(`"role":"r","iss":"https://auth.example.com","iat":%d,"exp":%d`, n, n+7200)
	const hs = `{"alg":"HS256"}`
	for _, tc := range []struct {
		name, header, payload string
		want                  error // nil: accepted
		signatureOnly         bool  // VerifySignature refuses it too
	}{
		{"two hours, the maximum", hs, "{" + good + "}", nil, false},
		{"two hours and the leeway", hs, fmt.Sprintf(`{"iss":"https://auth.example.com","iat":%d,"exp":%d}`, n, n+7230), nil, false},
		{"no iss", hs, fmt.Sprintf(`{"iat":%d,"exp":%d}`, n, n+60), jwt.ErrTokenInvalidIssuer, false},
		{"another iss", hs, fmt.Sprintf(`{"iss":"https://auth.example.com/","exp":%d}`, n+60), jwt.ErrTokenInvalidIssuer, false},
		{"exp a string", hs, fmt.Sprintf(`{"iss":"https://auth.example.com","exp":"%d"}`, n+60), token.ErrNotNumber, true},
		{"iat a string", hs, fmt.Sprintf(`{"iss":"https://auth.example.com","iat":"%d","exp":%d}`, n, n+60), token.ErrNotNumber, true},
		{"nbf null", hs, "{" + good + `,"nbf":null}`, token.ErrNotNumber, true},
		{"a second longer than the leeway allows", hs, fmt.Sprintf(`{"iss":"https://auth.example.com","iat":%d,"exp":%d}`, n, n+7231), token.ErrLifetime, false},
		{"no iat, exp in a year", hs, fmt.Sprintf(`{"iss":"https://auth.example.com","exp":%d}`, n+365*86400), token.ErrLifetime, false},
		{"crit", `{"alg":"HS256","crit":["b64"],"b64":true}`, "{" + good + "}", token.ErrCritical, true},
		{"duplicate claim", hs, "{" + good + `,"role":"postgres"}`, token.ErrDuplicateKey, true},
		{"duplicate nested key", hs, "{" + good + `,"x":[{"a":1,"a":2}]}`, token.ErrDuplicateKey, true},
		{"duplicate header key", `{"alg":"HS256","kid":"a","kid":"a"}`, "{" + good + "}", token.ErrDuplicateKey, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := craft(tc.header, tc.payload)
			_, err := iss.Verify(raw)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Verify: got %v, want %v", err, tc.want)
			}
			if _, err := iss.VerifySignature(raw); tc.signatureOnly != (err != nil) {
				t.Errorf("VerifySignature: got %v, want refused=%v", err, tc.signatureOnly)
			}
		})
	}
}
