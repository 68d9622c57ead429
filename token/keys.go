package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// Algorithms authd signs and verifies with. PostgREST (v13+) verifies all
// of them; PS256 is left out because PostgREST does not support it.
const (
	HS256 = "HS256"
	ES256 = "ES256"
	EdDSA = "EdDSA"
	RS256 = "RS256"
)

// Key is one asymmetric signing key with its id. Tokens it signs carry
// its kid, and only this key verifies a token with that kid.
type Key struct {
	ID      string
	Alg     string
	private crypto.Signer // nil for a verify-only key
	public  crypto.PublicKey
}

// Public returns the key's public half.
func (k *Key) Public() crypto.PublicKey { return k.public }

func (k *Key) method() jwt.SigningMethod { return jwt.GetSigningMethod(k.Alg) }

// KeySet is every key authd trusts at one moment: the shared HMAC secret
// (optional once asymmetric keys are in use) and asymmetric keys by kid,
// one of which signs. It never changes; a reload builds a new one.
type KeySet struct {
	secret  []byte
	keys    map[string]*Key
	signing *Key // nil: HS256 with secret signs
}

// NewKeySet checks and assembles a key set. secret may be nil when keys
// are given. signingKID names the key that signs; empty means the key
// whose kid sorts last (keygen's kids sort by creation time), or HS256
// when there are no asymmetric keys.
func NewKeySet(secret []byte, keys []*Key, signingKID string) (*KeySet, error) {
	if secret != nil && len(secret) < MinSecretLen {
		return nil, fmt.Errorf("JWT secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	if secret == nil && len(keys) == 0 {
		return nil, errors.New("no JWT secret and no signing keys")
	}
	ks := &KeySet{secret: append([]byte(nil), secret...), keys: map[string]*Key{}}
	if secret == nil {
		ks.secret = nil
	}
	var kids []string
	for _, k := range keys {
		if _, dup := ks.keys[k.ID]; dup {
			return nil, fmt.Errorf("two keys with kid %q", k.ID)
		}
		ks.keys[k.ID] = k
		if k.private != nil {
			kids = append(kids, k.ID)
		}
	}
	sort.Strings(kids)
	switch {
	case signingKID != "":
		k, ok := ks.keys[signingKID]
		if !ok || k.private == nil {
			return nil, fmt.Errorf("signing key %q: no private key with that kid", signingKID)
		}
		ks.signing = k
	case len(kids) > 0:
		ks.signing = ks.keys[kids[len(kids)-1]]
	}
	return ks, nil
}

// SigningKeyID is the kid of the key that signs, or "" for HS256.
func (ks *KeySet) SigningKeyID() string {
	if ks.signing == nil {
		return ""
	}
	return ks.signing.ID
}

// Algorithms lists the algorithms this set verifies, sorted.
func (ks *KeySet) Algorithms() []string {
	seen := map[string]bool{}
	if ks.secret != nil {
		seen[HS256] = true
	}
	for _, k := range ks.keys {
		seen[k.Alg] = true
	}
	var out []string
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// JWKS returns the public keys as a JSON Web Key Set, sorted by kid. The
// HMAC secret is never in it: it is not public.
func (ks *KeySet) JWKS() ([]byte, error) {
	kids := make([]string, 0, len(ks.keys))
	for kid := range ks.keys {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, kid := range kids {
		k := ks.keys[kid]
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.public, KeyID: k.ID, Algorithm: k.Alg, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode JWKS: %w", err)
	}
	return b, nil
}

// keyFor finds the key a token must verify with: the one named by its kid
// (and of the token's algorithm), else the HMAC secret for an HS256 token
// without kid, as PostgREST does.
func (ks *KeySet) keyFor(t *jwt.Token) (any, error) {
	alg, _ := t.Header["alg"].(string)
	if raw, has := t.Header["kid"]; has {
		kid, _ := raw.(string)
		k, ok := ks.keys[kid]
		if !ok {
			return nil, ErrKeyID
		}
		if alg != k.Alg {
			return nil, fmt.Errorf("%w: %q for a %s key", ErrAlgorithm, alg, k.Alg)
		}
		return k.public, nil
	}
	if alg != HS256 {
		return nil, fmt.Errorf("%w: %q without kid", ErrAlgorithm, alg)
	}
	if ks.secret == nil {
		return nil, ErrKeyID
	}
	return ks.secret, nil
}

// NewKey wraps a private key (ECDSA P-256, Ed25519 or RSA ≥ 2048 bits).
func NewKey(kid string, private crypto.Signer) (*Key, error) {
	if kid == "" {
		return nil, errors.New("key without kid")
	}
	alg, err := algFor(private.Public())
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", kid, err)
	}
	return &Key{ID: kid, Alg: alg, private: private, public: private.Public()}, nil
}

func algFor(pub crypto.PublicKey) (string, error) {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA curve %s: only P-256 (ES256) is supported", p.Curve.Params().Name)
		}
		return ES256, nil
	case ed25519.PublicKey:
		return EdDSA, nil
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits: at least 2048 are needed", p.N.BitLen())
		}
		return RS256, nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// GenerateKey makes a new key for alg with a fresh kid that sorts after
// every earlier one (creation time, then randomness).
func GenerateKey(alg string, now time.Time) (*Key, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("unsupported algorithm %q: want ES256, EdDSA or RS256", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	// Microseconds, fixed width: two keygens in the same second still sort
	// in creation order, and the newest signs.
	kid := now.UTC().Format("20060102T150405.000000Z") + "-" + strings.ToLower(alg) + "-" + hex.EncodeToString(suffix)
	return NewKey(kid, priv)
}

// MarshalPEM encodes the private key as PKCS #8 PEM.
func (k *Key) MarshalPEM() ([]byte, error) {
	if k.private == nil {
		return nil, fmt.Errorf("key %q has no private half", k.ID)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.private)
	if err != nil {
		return nil, fmt.Errorf("encode key %q: %w", k.ID, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// SigningKIDFile is the optional file in a key directory naming the kid
// that signs; without it the newest key signs.
const SigningKIDFile = "signing_kid"

// LoadKeyDir reads a directory of keys: <kid>.pem (PKCS #8, or SEC 1 / PKCS
// #1 private keys; a PUBLIC KEY PEM is a verify-only key) and <kid>.json
// (a private or public JWK; its own kid wins). Names starting with "." are
// skipped, which covers the ..data links of Kubernetes secret volumes.
func LoadKeyDir(dir string) (keys []*Key, signingKID string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", fmt.Errorf("read key directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") {
			continue
		}
		var k *Key
		switch {
		case name == SigningKIDFile:
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, "", fmt.Errorf("read %s: %w", path, err)
			}
			signingKID = strings.TrimSpace(string(b))
			continue
		case strings.HasSuffix(name, ".pem"):
			k, err = loadPEM(path, strings.TrimSuffix(name, ".pem"))
		case strings.HasSuffix(name, ".json"):
			k, err = loadJWK(path, strings.TrimSuffix(name, ".json"))
		default:
			continue
		}
		if err != nil {
			return nil, "", err
		}
		keys = append(keys, k)
	}
	return keys, signingKID, nil
}

func loadPEM(path, kid string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("key %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("key %s: unsupported PEM block %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return keyFrom(path, kid, key)
}

func loadJWK(path, kid string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	if jwk.KeyID != "" {
		kid = jwk.KeyID
	}
	return keyFrom(path, kid, jwk.Key)
}

func keyFrom(path, kid string, key any) (*Key, error) {
	switch k := key.(type) {
	case crypto.Signer:
		out, err := NewKey(kid, k)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", path, err)
		}
		return out, nil
	case ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey:
		alg, err := algFor(k)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", path, err)
		}
		return &Key{ID: kid, Alg: alg, public: k}, nil
	}
	return nil, fmt.Errorf("key %s: unsupported key type %T", path, key)
}
