// Package workloadtest is a stand-in for a Kubernetes API server, for
// tests: an HTTPS server with its own test CA serving the token issuer's
// JWKS (and OpenID discovery) and ServiceAccounts (GET
// /api/v1/namespaces/NS/serviceaccounts/NAME), and the service-account
// tokens it mints.
package workloadtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// JWKSPath is where the Issuer serves its keys, as the API server does.
const JWKSPath = "/openid/v1/jwks"

// Issuer is a test token issuer. Its URL is its iss.
type Issuer struct {
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	keys     []*Key // published
	down     bool
	requests int
	bearer   []string                     // Authorization headers of the JWKS requests
	accounts map[string]map[string]string // "ns/name" -> annotations
	saBearer []string                     // Authorization headers of the ServiceAccount requests
}

// Key is a signing key and its kid.
type Key struct {
	ID      string
	Private *rsa.PrivateKey
}

// NewKey returns a fresh RS256 key named kid.
func NewKey(t testing.TB, kid string) *Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{ID: kid, Private: k}
}

// NewIssuer starts an issuer publishing one key, kid "k1", until the test
// ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{keys: []*Key{NewKey(t, "k1")}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if is.refuse(w) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.URL, "jwks_uri": is.URL + JWKSPath})
	})
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		is.requests++
		is.bearer = append(is.bearer, r.Header.Get("Authorization"))
		is.mu.Unlock()
		if is.refuse(w) {
			return
		}
		set := jose.JSONWebKeySet{}
		for _, k := range is.Keys() {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.Private.PublicKey, KeyID: k.ID, Algorithm: "RS256", Use: "sig"})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/serviceaccounts/{name}", func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.PathValue("ns"), r.PathValue("name")
		is.mu.Lock()
		is.saBearer = append(is.saBearer, r.Header.Get("Authorization"))
		ann, ok := is.accounts[ns+"/"+name]
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure",
				"reason": "NotFound", "code": 404, "message": `serviceaccounts "` + name + `" not found`})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "ServiceAccount", "apiVersion": "v1",
			"metadata": map[string]any{"name": name, "namespace": ns, "annotations": ann}})
	})
	is.srv = httptest.NewUnstartedServer(mux)
	// Handshakes a test makes fail on purpose (an untrusted CA) are not news.
	is.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	is.srv.StartTLS()
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	return is
}

func (is *Issuer) refuse(w http.ResponseWriter) bool {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}
	return is.down
}

// Client trusts the issuer's test CA.
func (is *Issuer) Client() *http.Client { return is.srv.Client() }

// CAFile writes the issuer's CA certificate as PEM, as the
// service-account mount's ca.crt.
func (is *Issuer) CAFile(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ca.crt")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Keys are the published keys; the first signs.
func (is *Issuer) Keys() []*Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]*Key(nil), is.keys...)
}

// Publish replaces the published keys (a rotation: the first signs).
func (is *Issuer) Publish(keys ...*Key) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = keys
}

// SetDown makes the JWKS and discovery answer 503 (down) or serve again.
func (is *Issuer) SetDown(down bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.down = down
}

// Requests is how many JWKS requests the issuer received, and their
// Authorization headers.
func (is *Issuer) Requests() (int, []string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.requests, append([]string(nil), is.bearer...)
}

// SetServiceAccount creates or replaces the ServiceAccount ns/name with
// annotations (nil: none).
func (is *Issuer) SetServiceAccount(ns, name string, annotations map[string]string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.accounts == nil {
		is.accounts = map[string]map[string]string{}
	}
	is.accounts[ns+"/"+name] = annotations
}

// DeleteServiceAccount removes ns/name.
func (is *Issuer) DeleteServiceAccount(ns, name string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	delete(is.accounts, ns+"/"+name)
}

// ServiceAccountRequests are the Authorization headers of the
// ServiceAccount reads so far.
func (is *Issuer) ServiceAccountRequests() []string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]string(nil), is.saBearer...)
}

// Token describes a service-account token to mint; zero fields get a
// projected token's defaults.
type Token struct {
	Issuer         string    // default: the issuer's URL
	Audience       []string  // default: nats
	Namespace      string    // default: my-app
	ServiceAccount string    // default: my-nats-client
	Pod            string    // default: my-pod
	Subject        string    // default: system:serviceaccount:NS:SA
	Expires        time.Time // default: now + 1 h
	IssuedAt       time.Time // default: now
	NoKubernetes   bool      // leave out the kubernetes.io claim
	Key            *Key      // default: the first published key
	KeyID          *string   // kid header; default: Key.ID
}

// Mint signs a token (RS256).
func (is *Issuer) Mint(t testing.TB, tok Token) string {
	t.Helper()
	now := time.Now()
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&tok.Issuer, is.URL)
	def(&tok.Namespace, "my-app")
	def(&tok.ServiceAccount, "my-nats-client")
	def(&tok.Pod, "my-pod")
	def(&tok.Subject, "system:serviceaccount:"+tok.Namespace+":"+tok.ServiceAccount)
	if tok.Audience == nil {
		tok.Audience = []string{"nats"}
	}
	if tok.IssuedAt.IsZero() {
		tok.IssuedAt = now
	}
	if tok.Expires.IsZero() {
		tok.Expires = tok.IssuedAt.Add(time.Hour)
	}
	if tok.Key == nil {
		tok.Key = is.Keys()[0]
	}
	claims := jwt.MapClaims{
		"iss": tok.Issuer, "sub": tok.Subject, "aud": tok.Audience,
		"exp": tok.Expires.Unix(), "iat": tok.IssuedAt.Unix(), "nbf": tok.IssuedAt.Unix(),
	}
	if !tok.NoKubernetes {
		claims["kubernetes.io"] = map[string]any{
			"namespace":      tok.Namespace,
			"serviceaccount": map[string]string{"name": tok.ServiceAccount, "uid": "0d4f8f0e-1111-4c1e-9a55-5d7e0a3c0b01"},
			"pod":            map[string]string{"name": tok.Pod, "uid": "7a1c2b3d-2222-4c1e-9a55-5d7e0a3c0b02"},
		}
	}
	jt := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	jt.Header["kid"] = tok.Key.ID
	if tok.KeyID != nil {
		if *tok.KeyID == "" {
			delete(jt.Header, "kid")
		} else {
			jt.Header["kid"] = *tok.KeyID
		}
	}
	s, err := jt.SignedString(tok.Key.Private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
