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
	"io/fs"
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

// ErrNoKeys reports a key set with neither an HMAC secret nor a key.
var ErrNoKeys = errors.New("no JWT secret and no signing keys")

// NoKeys is the key set left when a reload finds every key removed: it
// verifies nothing and signs nothing, because keeping a removed key would
// be worse.
func NoKeys() *KeySet { return &KeySet{keys: map[string]*Key{}} }

// NewKeySet checks and assembles a key set. secret may be nil when keys
// are given. signingKID names the key that signs; empty means the key
// whose kid sorts last (keygen's kids sort by creation time), or HS256
// when there are no asymmetric keys.
func NewKeySet(secret []byte, keys []*Key, signingKID string) (*KeySet, error) {
	if secret != nil && len(secret) < MinSecretLen {
		return nil, fmt.Errorf("JWT secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	if secret == nil && len(keys) == 0 {
		return nil, ErrNoKeys
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
// Any problem is an error: this is the start-up reading, where a broken or
// unprotected file must stop authd rather than leave a key out.
func LoadKeyDir(dir string) (keys []*Key, signingKID string, err error) {
	d, problems, err := ReadKeyDir(dir, nil)
	if err != nil {
		return nil, "", err
	}
	if len(problems) > 0 {
		return nil, "", errors.Join(problems...)
	}
	return d.Keys(), d.SigningKID(), nil
}

// KeyDir is what one reading of a key directory found: the key of each
// usable file by file name, and the kid the signing_kid file names.
type KeyDir struct {
	files      map[string]*Key
	signingKID string
	pinned     bool // signing_kid exists and was usable
}

// Keys returns the keys, sorted by file name.
func (d *KeyDir) Keys() []*Key {
	names := make([]string, 0, len(d.files))
	for name := range d.files {
		names = append(names, name)
	}
	sort.Strings(names)
	keys := make([]*Key, 0, len(names))
	for _, name := range names {
		keys = append(keys, d.files[name])
	}
	return keys
}

// SigningKID is the kid signing_kid names, "" when the newest key signs.
func (d *KeyDir) SigningKID() string { return d.signingKID }

// ReadKeyDir reads dir as LoadKeyDir does, but a file that cannot be used
// — unreadable, broken, writable by group or others, in a directory
// writable by group or others, or claiming a kid another file has — is
// reported in problems and left out, except that the key prev read from
// the same file name, if any, is kept: a half-written update must not
// drop a key in use, and a key nobody vetted must not enter. A file that
// is gone is gone: its key is never kept, so removing a compromised key
// always takes effect. A signing_kid naming no private key is a problem
// too, and the newest key signs. A directory that no longer exists holds
// no keys; err is only for a directory that cannot be listed.
func ReadKeyDir(dir string, prev *KeyDir) (d *KeyDir, problems []error, err error) {
	if prev == nil {
		prev = &KeyDir{}
	}
	d = &KeyDir{files: map[string]*Key{}}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) && prev.files != nil {
		return d, []error{fmt.Errorf("key directory %s is gone: no keys from it are trusted", dir)}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read key directory: %w", err)
	}
	dirErr := checkNotWritable(dir)
	if dirErr != nil {
		problems = append(problems, fmt.Errorf("%w; none of its key files is read", dirErr))
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if name == SigningKIDFile {
			kid, err := readSigningKID(path, dirErr)
			switch {
			case err == nil:
				d.signingKID, d.pinned = kid, true
			case prev.pinned:
				d.signingKID, d.pinned = prev.signingKID, true
				fallthrough
			default:
				if dirErr == nil {
					problems = append(problems, err)
				}
			}
			continue
		}
		k, err := loadKeyFile(path, name, dirErr)
		if err != nil {
			if dirErr == nil {
				problems = append(problems, err)
			}
			if old, ok := prev.files[name]; ok {
				d.files[name] = old
			}
			continue
		}
		if k != nil {
			d.files[name] = k
		}
	}
	problems = append(problems, d.dropClashes(dir, prev)...)
	if d.pinned && !d.hasPrivate(d.signingKID) {
		problems = append(problems, fmt.Errorf("%s names %q, which is no private key here: the newest key signs", filepath.Join(dir, SigningKIDFile), d.signingKID))
		d.signingKID, d.pinned = "", false
	}
	return d, problems, nil
}

// dropClashes leaves out files whose kid another file has too: a file
// that held that kid in prev keeps it, the newcomers are refused.
func (d *KeyDir) dropClashes(dir string, prev *KeyDir) (problems []error) {
	byKID := map[string][]string{}
	for name, k := range d.files {
		byKID[k.ID] = append(byKID[k.ID], name)
	}
	for kid, names := range byKID {
		if len(names) < 2 {
			continue
		}
		sort.Strings(names)
		for _, name := range names {
			if old, ok := prev.files[name]; ok && old.ID == kid {
				continue
			}
			delete(d.files, name)
			problems = append(problems, fmt.Errorf("key %s: kid %q is also in %s", filepath.Join(dir, name), kid, strings.Join(names, ", ")))
		}
	}
	return problems
}

func (d *KeyDir) hasPrivate(kid string) bool {
	for _, k := range d.files {
		if k.ID == kid && k.private != nil {
			return true
		}
	}
	return false
}

// loadKeyFile reads one entry of a key directory: nil for a file that is
// not a key. dirErr, when set, refuses the file as it stands.
func loadKeyFile(path, name string, dirErr error) (*Key, error) {
	var load func(path, kid string) (*Key, error)
	switch {
	case strings.HasSuffix(name, ".pem"):
		load = loadPEM
	case strings.HasSuffix(name, ".json"):
		load = loadJWK
	default:
		return nil, nil
	}
	if dirErr != nil {
		return nil, dirErr
	}
	if err := checkNotWritable(path); err != nil {
		return nil, err
	}
	return load(path, strings.TrimSuffix(name, filepath.Ext(name)))
}

func readSigningKID(path string, dirErr error) (string, error) {
	if dirErr != nil {
		return "", dirErr
	}
	if err := checkNotWritable(path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// CheckKeyDir refuses a key directory that group or others may write, as
// the server would: keygen checks before it writes a key there.
func CheckKeyDir(dir string) error { return checkNotWritable(dir) }

// checkNotWritable refuses a key file or directory that group or others
// may write, as ssh refuses such key files: whoever can write there can
// add a key that authd would then trust, or replace one. It checks mode
// bits, not access(2), so it means the same when authd runs as root. A
// symlinked file (a Kubernetes secret volume's) is checked where it
// points, and so is the directory that holds it. A read-only mount is
// exempt: nobody writes there, whatever its bits say.
func checkNotWritable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("key %s: %w", path, err)
	}
	if err := notWritable(path, fi); err != nil {
		return err
	}
	if fi.IsDir() {
		return nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("key %s: %w", path, err)
	}
	if realDir := filepath.Dir(real); realDir != filepath.Dir(path) {
		di, err := os.Stat(realDir)
		if err != nil {
			return fmt.Errorf("key %s: %w", path, err)
		}
		return notWritable(realDir, di)
	}
	return nil
}

func notWritable(path string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o022 == 0 || readOnlyMount(path) {
		return nil
	}
	what := "key file"
	if fi.IsDir() {
		what = "key directory"
	}
	return fmt.Errorf("%s %s is writable by group or others (mode %04o): refused until chmod go-w %s", what, path, fi.Mode().Perm(), path)
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
	// JSON syntax errors quote the offending character: never a piece of
	// a key in the logs.
	if !json.Valid(b) {
		return nil, fmt.Errorf("key %s: not valid JSON", path)
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
