package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strings"
)

// API keys look like authd_<id>_<secret>:
//
//   - id is 12 characters of lowercase base32 (a-z, 2-7), 60 random bits:
//     public, the primary key of auth.api_key, safe for lists and logs;
//   - secret is 43 characters of base64url, 256 random bits: never stored,
//     only the SHA-256 of the whole key is.
//
// The fixed prefix lets secret scanners and people recognise a leaked key;
// the id inside lets a log line or a support request name a key without
// revealing it. The secret's alphabet includes '_', so the key is split by
// position, never on '_'.
const (
	APIKeyPrefix    = "authd_"
	APIKeyIDLen     = 12
	apiKeySecretLen = 43
	apiKeyLen       = len(APIKeyPrefix) + APIKeyIDLen + 1 + apiKeySecretLen
	apiKeyBytes     = 32
)

var apiKeyIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewAPIKey returns a new API key: its public id, the plaintext to hand to
// its holder once, and the hash to store.
func NewAPIKey() (id, plain string, hash []byte, err error) {
	b := make([]byte, 8) // 64 bits, of which the 12 characters keep 60
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, fmt.Errorf("read random api key id: %w", err)
	}
	id = apiKeyIDEncoding.EncodeToString(b)[:APIKeyIDLen]
	plain, hash, err = NewAPIKeySecret(id)
	if err != nil {
		return "", "", nil, err
	}
	return id, plain, hash, nil
}

// NewAPIKeySecret returns a new key for the existing id, with a fresh
// secret: what rotating a key hands out.
func NewAPIKeySecret(id string) (plain string, hash []byte, err error) {
	if !ValidAPIKeyID(id) {
		return "", nil, fmt.Errorf("api key id %q: want %d characters of a-z and 2-7", id, APIKeyIDLen)
	}
	b := make([]byte, apiKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("read random api key: %w", err)
	}
	plain = APIKeyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(b)
	return plain, HashAPIKey(plain), nil
}

// ParseAPIKey checks that plain has the shape of an API key (prefix,
// lengths, alphabets) and returns its id and the hash to look up. It does
// no I/O and allocates only the hash, so a gateway can afford it on every
// request; whether the key exists is the store's question. Anything at all
// may come in from X-API-Key, so it never panics.
func ParseAPIKey(plain string) (id string, hash []byte, ok bool) {
	if len(plain) != apiKeyLen || !strings.HasPrefix(plain, APIKeyPrefix) {
		return "", nil, false
	}
	id = plain[len(APIKeyPrefix) : len(APIKeyPrefix)+APIKeyIDLen]
	sep := len(APIKeyPrefix) + APIKeyIDLen
	if !ValidAPIKeyID(id) || plain[sep] != '_' {
		return "", nil, false
	}
	for i := sep + 1; i < len(plain); i++ {
		if !isBase64URL(plain[i]) {
			return "", nil, false
		}
	}
	return id, HashAPIKey(plain), true
}

// ValidAPIKeyID reports whether id has the shape of an API key id.
func ValidAPIKeyID(id string) bool {
	if len(id) != APIKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// HashAPIKey is the form in which an API key is stored: the SHA-256 of the
// whole key. As for refresh tokens, a fast hash is right for 256 random
// bits; bcrypt would cost every gateway request tens of milliseconds and
// protect nothing.
func HashAPIKey(plain string) []byte {
	sum := sha256.Sum256([]byte(plain))
	return sum[:]
}
