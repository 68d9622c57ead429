package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"authd/token"
)

func newKeys(t *testing.T, secret []byte, keys ...*token.Key) *token.KeySet {
	t.Helper()
	ks, err := token.NewKeySet(secret, keys, "")
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func genKey(t *testing.T, alg string, at time.Time) *token.Key {
	t.Helper()
	k, err := token.GenerateKey(alg, at)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fetchJWKS reads the published key set as a verifier would.
func fetchJWKS(t *testing.T, e *env) jose.JSONWebKeySet {
	t.Helper()
	r := do(t, nil, http.MethodGet, e.srv.URL+"/.well-known/jwks.json", nil, "")
	wantStatus(t, r, http.StatusOK)
	if got := r.header.Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("got Cache-Control %q", got)
	}
	if got := r.header.Get("Content-Type"); got != "application/jwk-set+json" {
		t.Errorf("got Content-Type %q", got)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(r.body), &set); err != nil {
		t.Fatalf("JWKS %s: %v", r.body, err)
	}
	return set
}

// verifyWithJWKS checks a token the way PostgREST with a pasted JWKS does:
// the key is the one whose kid the token names, its algorithm pinned.
func verifyWithJWKS(t *testing.T, set jose.JSONWebKeySet, raw string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"ES256", "EdDSA", "RS256"})).ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) != 1 || keys[0].Algorithm != tok.Method.Alg() {
			return nil, jwt.ErrTokenUnverifiable
		}
		return keys[0].Key, nil
	})
	if err != nil {
		t.Fatalf("token does not verify with the published JWKS: %v", err)
	}
	return claims
}

func TestJWKSAndDiscovery(t *testing.T) {
	t.Parallel()
	es := genKey(t, token.ES256, time.Now())
	e := newEnv(t, withKeys(newKeys(t, []byte(testSecret), es)), withIssuer("https://auth.example.com/"))

	set := fetchJWKS(t, e)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != es.ID || set.Keys[0].Algorithm != "ES256" || !set.Keys[0].IsPublic() {
		t.Fatalf("got JWKS %+v, want only the public ES256 key %s", set.Keys, es.ID)
	}
	access := accessValue(t, e.login())
	c := verifyWithJWKS(t, set, access)
	if c["iss"] != "https://auth.example.com/" || c["role"] != e.role {
		t.Errorf("got claims %v", c)
	}
	wantStatus(t, e.verify(http.MethodGet, http.Header{"Authorization": {"Bearer " + access}}), http.StatusOK)

	r := do(t, nil, http.MethodGet, e.srv.URL+"/.well-known/openid-configuration", nil, "")
	wantStatus(t, r, http.StatusOK)
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != "https://auth.example.com" || doc["jwks_uri"] != "https://auth.example.com/.well-known/jwks.json" {
		t.Errorf("got issuer %v, jwks_uri %v", doc["issuer"], doc["jwks_uri"])
	}
	if algs, _ := json.Marshal(doc["id_token_signing_alg_values_supported"]); string(algs) != `["ES256","HS256"]` {
		t.Errorf("got algorithms %s", algs)
	}
}

// TestRotationUnderLoad: clients keep verifying and refreshing while keys
// rotate; no request fails, and tokens of a removed key stop working.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	k1 := genKey(t, token.ES256, t0)
	e := newEnv(t, withKeys(newKeys(t, nil, k1)), withGrace(time.Minute))
	login := e.login()
	byK1, refresh := accessValue(t, login), refreshValue(t, login)

	var (
		stop     atomic.Bool
		failures atomic.Int64
		requests atomic.Int64
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r := do(t, nil, http.MethodGet, e.srv.URL+"/auth/verify", http.Header{"Authorization": {"Bearer " + byK1}}, "")
				requests.Add(1)
				if r.status != http.StatusOK {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // one tab refreshing all along
		defer wg.Done()
		tok := refresh
		for !stop.Load() {
			r := e.refreshWith(tok)
			requests.Add(1)
			if r.status != http.StatusNoContent {
				failures.Add(1)
				return
			}
			tok = refreshValue(t, r)
			if _, err := e.tokens.Verify(accessValue(t, r)); err != nil {
				failures.Add(1)
			}
		}
	}()

	// Rotate: publish k2 and k3 one after the other, each becoming the
	// signer; k1 stays for verification.
	k2 := genKey(t, token.EdDSA, t0.Add(time.Second))
	k3 := genKey(t, token.RS256, t0.Add(2*time.Second))
	// Some requests before, between and after the changes, however slow
	// the machine.
	served := func() {
		t.Helper()
		target := requests.Load() + 10
		waitFor(t, "ten more requests", func() bool { return requests.Load() >= target || failures.Load() > 0 })
	}
	for _, ks := range []*token.KeySet{newKeys(t, nil, k1, k2), newKeys(t, nil, k1, k2, k3)} {
		served()
		e.tokens.SetKeys(ks)
	}
	served()
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 || requests.Load() < 20 {
		t.Fatalf("%d of %d requests failed during rotation", n, requests.Load())
	}
	if got := e.tokens.Keys().SigningKeyID(); got != k3.ID {
		t.Errorf("got signing kid %q, want %q", got, k3.ID)
	}

	// k1 retired: its tokens are refused at once, even though cached.
	e.tokens.SetKeys(newKeys(t, nil, k2, k3))
	r := e.verify(http.MethodGet, http.Header{"Authorization": {"Bearer " + byK1}})
	wantStatus(t, r, http.StatusUnauthorized)
	if !strings.Contains(r.body, "No suitable key") {
		t.Errorf("got %s", r.body)
	}
}

// TestDiscoveryIgnoresTheRequestHost: the discovery document's issuer is
// AUTHD_JWT_ISS only. Without it there is no document (a Host header must
// never choose where verifiers fetch keys from), and with it, Host and
// X-Forwarded-Proto change nothing.
func TestDiscoveryIgnoresTheRequestHost(t *testing.T) {
	t.Parallel()
	discover := func(e *env) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil)
		req.Host = "attacker.example"
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", "attacker.example")
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		return rec
	}
	const noDoc = `{"code":"PGRST125","details":null,"hint":"Set AUTHD_JWT_ISS to authd's public URL, e.g. https://auth.example.com","message":"No discovery document: the issuer is not configured as a URL"}`
	for _, iss := range []string{"", "authd", "/auth"} {
		rec := discover(newEnv(t, withIssuer(iss)))
		if rec.Code != http.StatusNotFound || strings.TrimSpace(rec.Body.String()) != noDoc {
			t.Errorf("issuer %q: got %d %s, want 404 %s", iss, rec.Code, rec.Body, noDoc)
		}
		if cc := rec.Header().Get("Cache-Control"); strings.Contains(cc, "public") {
			t.Errorf("issuer %q: refusal is cacheable: %q", iss, cc)
		}
	}
	rec := discover(newEnv(t, withIssuer("https://auth.example.com")))
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	if doc["issuer"] != "https://auth.example.com" || doc["jwks_uri"] != "https://auth.example.com/.well-known/jwks.json" {
		t.Errorf("got issuer %v, jwks_uri %v", doc["issuer"], doc["jwks_uri"])
	}
}
