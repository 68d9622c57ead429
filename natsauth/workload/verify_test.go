package workload_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"authd/identity"
	"authd/natsauth/workload"
	"authd/natsauth/workload/workloadtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newVerifier(t *testing.T, ic workload.IssuerConfig, now func() time.Time) *workload.Verifier {
	t.Helper()
	v, err := workload.NewVerifier(workload.Config{Issuers: []workload.IssuerConfig{ic}, Now: now}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantCode checks that err is an identity.Error with code and a message
// containing msg.
func wantCode(t *testing.T, name string, err error, code, msg string) {
	t.Helper()
	var e *identity.Error
	if !errors.As(err, &e) || e.Code != code || !strings.Contains(e.Message, msg) {
		t.Errorf("%s: got %v, want %s %q", name, err, code, msg)
	}
}

func TestVerify(t *testing.T) {
	is := workloadtest.NewIssuer(t)
	clk := &clock{t: time.Now()}
	v := newVerifier(t, workload.IssuerConfig{Issuer: is.URL, JWKSURL: is.URL + workloadtest.JWKSPath, Client: is.Client()}, clk.now)
	ctx := context.Background()

	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok, err := v.VerifyToken(ctx, is.Mint(t, workloadtest.Token{Expires: exp}))
	want := workload.Identity{Issuer: is.URL, Subject: "system:serviceaccount:my-app:my-nats-client",
		Namespace: "my-app", ServiceAccount: "my-nats-client", Pod: "my-pod"}
	if err != nil || tok.Identity != want || !tok.Expires.Equal(exp) {
		t.Fatalf("got %+v, %v; want %+v expiring %v", tok, err, want, exp)
	}
	// Without the kubernetes.io claim, sub names the service account.
	id, err := v.Verify(ctx, is.Mint(t, workloadtest.Token{NoKubernetes: true, Subject: "system:serviceaccount:ns2:sa2"}))
	if err != nil || id.Namespace != "ns2" || id.ServiceAccount != "sa2" || id.Pod != "" {
		t.Errorf("sub only: got %+v, %v", id, err)
	}

	// Tokens of issuers not configured, and no JWTs at all, are not for
	// this verifier: authd checks them as its own.
	for name, raw := range map[string]string{
		"other issuer": is.Mint(t, workloadtest.Token{Issuer: "https://elsewhere.example"}),
		"not a JWT":    "authd-or-what",
		"opaque":       "a.b.c",
	} {
		if _, err := v.Verify(ctx, raw); !errors.Is(err, workload.ErrNotWorkload) {
			t.Errorf("%s: got %v, want ErrNotWorkload", name, err)
		}
	}

	other := workloadtest.NewKey(t, "k1") // same kid, another key
	noKid := ""
	unknown := "k9"
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": is.URL, "aud": "nats", "sub": "system:serviceaccount:a:b", "exp": time.Now().Add(time.Hour).Unix()})
	hs.Header["kid"] = "k1"
	hsRaw, err := hs.SignedString([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, raw, code, msg string
	}{
		{"wrong audience", is.Mint(t, workloadtest.Token{Audience: []string{"api"}}), "PGRST303", "JWT not in audience"},
		{"expired", is.Mint(t, workloadtest.Token{IssuedAt: time.Now().Add(-2 * time.Hour)}), "PGRST303", "JWT expired"},
		{"issued in the future", is.Mint(t, workloadtest.Token{IssuedAt: time.Now().Add(time.Hour)}), "PGRST303", "JWT"},
		{"unknown kid", is.Mint(t, workloadtest.Token{KeyID: &unknown}), "PGRST301", "No suitable key"},
		{"no kid", is.Mint(t, workloadtest.Token{KeyID: &noKid}), "PGRST301", "No suitable key"},
		{"another key", is.Mint(t, workloadtest.Token{Key: other}), "PGRST301", "No suitable key"},
		{"HS256", hsRaw, "PGRST301", ""},
		{"no service account", is.Mint(t, workloadtest.Token{NoKubernetes: true, Subject: "alice"}), "PGRST303", "names no service account"},
		{"sub and claim disagree", is.Mint(t, workloadtest.Token{Subject: "system:serviceaccount:other:sa"}), "PGRST303", "different service accounts"},
	} {
		id, err := v.Verify(ctx, tc.raw)
		wantCode(t, tc.name, err, tc.code, tc.msg)
		if tc.name == "wrong audience" && (id.Namespace != "my-app" || id.ServiceAccount != "my-nats-client") {
			t.Errorf("wrong audience: refusal names %+v, want the claimed service account for the log", id)
		}
	}
	// The unknown kids above came within the refresh interval of the first
	// fetch: they fetched nothing.
	if n, _ := is.Requests(); n != 1 {
		t.Errorf("JWKS requests: got %d, want 1", n)
	}
}

// TestVerifyRotation: a key the cluster starts signing with is picked up
// on its first token, once the refresh interval since the last fetch has
// passed; a withdrawn key stops verifying once the cached keys age out.
func TestVerifyRotation(t *testing.T) {
	is := workloadtest.NewIssuer(t)
	clk := &clock{t: time.Now()}
	v := newVerifier(t, workload.IssuerConfig{Issuer: is.URL, JWKSURL: is.URL + workloadtest.JWKSPath, Client: is.Client()}, clk.now)
	ctx := context.Background()
	k1 := is.Keys()[0]
	if _, err := v.Verify(ctx, is.Mint(t, workloadtest.Token{})); err != nil {
		t.Fatal(err)
	}
	k2 := workloadtest.NewKey(t, "k2")
	is.Publish(k2, k1)
	clk.add(workload.DefaultRefreshInterval)
	if _, err := v.Verify(ctx, is.Mint(t, workloadtest.Token{})); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if _, err := v.Verify(ctx, is.Mint(t, workloadtest.Token{Key: k1})); err != nil {
		t.Fatalf("old key still published: %v", err)
	}
	is.Publish(k2)
	clk.add(workload.DefaultKeysTTL)
	wantCode(t, "withdrawn key", func() error { _, err := v.Verify(ctx, is.Mint(t, workloadtest.Token{Key: k1})); return err }(), "PGRST301", "No suitable key")
}

// TestVerifyOutage: while the JWKS cannot be fetched, the last keys stay
// in use for DefaultMaxStale; then tokens are refused (PT503) until a
// fetch succeeds again.
func TestVerifyOutage(t *testing.T) {
	is := workloadtest.NewIssuer(t)
	clk := &clock{t: time.Now()}
	v := newVerifier(t, workload.IssuerConfig{Issuer: is.URL, JWKSURL: is.URL + workloadtest.JWKSPath, Client: is.Client()}, clk.now)
	ctx := context.Background()
	// Tokens minted on the verifier's clock, so they stay valid as it moves.
	mint := func() string {
		return is.Mint(t, workloadtest.Token{IssuedAt: clk.now(), Expires: clk.now().Add(time.Hour)})
	}
	if _, err := v.Verify(ctx, mint()); err != nil {
		t.Fatal(err)
	}
	is.SetDown(true)
	clk.add(workload.DefaultKeysTTL) // the keys are due for a refresh, which fails
	if _, err := v.Verify(ctx, mint()); err != nil {
		t.Fatalf("outage, within the bound: %v", err)
	}
	clk.add(workload.DefaultMaxStale - workload.DefaultKeysTTL - time.Second)
	if _, err := v.Verify(ctx, mint()); err != nil {
		t.Fatalf("outage, a second before the bound: %v", err)
	}
	clk.add(2 * time.Second)
	wantCode(t, "outage past the bound", func() error { _, err := v.Verify(ctx, mint()); return err }(), "PT503", "unavailable")
	is.SetDown(false)
	clk.add(workload.DefaultRefreshInterval)
	if _, err := v.Verify(ctx, mint()); err != nil {
		t.Fatalf("JWKS back: %v", err)
	}

	// An issuer never reached refuses, without keys to fall back on.
	down := workloadtest.NewIssuer(t)
	down.SetDown(true)
	v2 := newVerifier(t, workload.IssuerConfig{Issuer: down.URL, Client: down.Client()}, nil)
	wantCode(t, "never fetched", func() error { _, err := v2.Verify(ctx, down.Mint(t, workloadtest.Token{})); return err }(), "PT503", "unavailable")
}

// TestVerifyDiscoveryCAToken: the JWKS found by discovery, over HTTPS
// trusting only the CA file, with the bearer token read from its file on
// each fetch (kubelet rotates it).
func TestVerifyDiscoveryCAToken(t *testing.T) {
	is := workloadtest.NewIssuer(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("pod-token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	v := newVerifier(t, workload.IssuerConfig{Issuer: is.URL, CAFile: is.CAFile(t, dir), TokenFile: tokenFile}, clk.now)
	ctx := context.Background()
	if _, err := v.Verify(ctx, is.Mint(t, workloadtest.Token{})); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("pod-token-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.add(workload.DefaultKeysTTL)
	if _, err := v.Verify(ctx, is.Mint(t, workloadtest.Token{})); err != nil {
		t.Fatal(err)
	}
	if _, bearer := is.Requests(); strings.Join(bearer, ",") != "Bearer pod-token-1,Bearer pod-token-2" {
		t.Errorf("JWKS Authorization headers: got %q", bearer)
	}

	// Without the CA file, the issuer's certificate is not trusted.
	v2 := newVerifier(t, workload.IssuerConfig{Issuer: is.URL}, nil)
	wantCode(t, "untrusted CA", func() error { _, err := v2.Verify(ctx, is.Mint(t, workloadtest.Token{})); return err }(), "PT503", "unavailable")
}

func TestNewVerifierErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ic   workload.IssuerConfig
		want string
	}{
		{"http issuer", workload.IssuerConfig{Issuer: "http://k8s"}, "not an https URL"},
		{"http JWKS", workload.IssuerConfig{Issuer: "https://k8s", JWKSURL: "http://k8s/jwks"}, "not an https URL"},
		{"HS256", workload.IssuerConfig{Issuer: "https://k8s", Algorithms: []string{"HS256"}}, `algorithm "HS256" is not supported`},
		{"missing CA", workload.IssuerConfig{Issuer: "https://k8s", CAFile: "/nonexistent/ca.crt"}, "CA file"},
	} {
		_, err := workload.NewVerifier(workload.Config{Issuers: []workload.IssuerConfig{tc.ic}}, quiet)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestStandInServiceAccounts checks the stand-in API server's
// ServiceAccount endpoint, which the permission sources' tests read.
func TestStandInServiceAccounts(t *testing.T) {
	is := workloadtest.NewIssuer(t)
	is.SetServiceAccount("my-app", "my-nats-client", map[string]string{"nats.io/allowed-pub-subjects": "a.>"})
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, is.URL+path, nil)
		req.Header.Set("Authorization", "Bearer x")
		resp, err := is.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/api/v1/namespaces/my-app/serviceaccounts/my-nats-client"); code != 200 || !strings.Contains(body, `"nats.io/allowed-pub-subjects":"a.\u003e"`) {
		t.Errorf("existing ServiceAccount: %d %s", code, body)
	}
	is.DeleteServiceAccount("my-app", "my-nats-client")
	if code, body := get("/api/v1/namespaces/my-app/serviceaccounts/my-nats-client"); code != 404 || !strings.Contains(body, `"reason":"NotFound"`) {
		t.Errorf("deleted ServiceAccount: %d %s", code, body)
	}
	if got := is.ServiceAccountRequests(); len(got) != 2 || got[0] != "Bearer x" {
		t.Errorf("requests: %q", got)
	}
}
