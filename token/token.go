// Package token issues and verifies authd's tokens: HS256 access JWTs that
// PostgREST accepts with the same jwt-secret, and opaque refresh tokens that
// are stored only as hashes.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// MinSecretLen is PostgREST's minimum jwt-secret length (since v13): a
// shorter secret is refused at start-up by both servers.
const MinSecretLen = 32

// Leeway is the clock skew PostgREST allows on exp, nbf and iat.
const Leeway = 30 * time.Second

// Claims are the access token's claims. role is at the top level, where
// PostgREST's default jwt-role-claim-key looks; sub repeats the username
// because caddy-jwt refuses tokens without a user claim.
type Claims struct {
	Role      string `json:"role"`
	Username  string `json:"username"`
	SessionID string `json:"sid,omitempty"`
	jwt.RegisteredClaims
}

// Issuer signs and verifies access tokens with one HMAC secret.
type Issuer struct {
	secret   []byte
	ttl      time.Duration
	audience string
	now      func() time.Time

	parser       *jwt.Parser // full validation: signature, exp (required), nbf, iat, aud
	parserNoTime *jwt.Parser // signature only, for logout with an expired token
}

// NewIssuer returns an Issuer. audience may be empty; now may be nil for
// time.Now.
func NewIssuer(secret []byte, ttl time.Duration, audience string, now func() time.Time) (*Issuer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("JWT secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("access token lifetime must be positive, got %s", ttl)
	}
	if now == nil {
		now = time.Now
	}
	// The algorithm list is explicit: a token claiming "none" or an
	// asymmetric algorithm (the HMAC-key-as-public-key confusion) never
	// reaches the key function.
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithTimeFunc(now),
	}
	full := append(opts[:len(opts):len(opts)], jwt.WithLeeway(Leeway), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if audience != "" {
		full = append(full, jwt.WithAudience(audience))
	}
	return &Issuer{
		secret:       append([]byte(nil), secret...),
		ttl:          ttl,
		audience:     audience,
		now:          now,
		parser:       jwt.NewParser(full...),
		parserNoTime: jwt.NewParser(append(opts, jwt.WithoutClaimsValidation())...),
	}, nil
}

// TTL is the lifetime of the access tokens this Issuer signs.
func (i *Issuer) TTL() time.Duration { return i.ttl }

// Issue signs an access token for username acting as role in session
// sessionID, returning the token and its expiry.
func (i *Issuer) Issue(username, role, sessionID string) (string, time.Time, error) {
	return i.IssueFor(username, role, sessionID, i.ttl)
}

// IssueFor is Issue with another lifetime (the short tokens minted for API
// keys).
func (i *Issuer) IssueFor(username, role, sessionID string, ttl time.Duration) (string, time.Time, error) {
	now := i.now().Truncate(time.Second)
	exp := now.Add(ttl)
	c := Claims{
		Role:      role,
		Username:  username,
		SessionID: sessionID,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   username,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        uuid.NewString(),
		},
	}
	if i.audience != "" {
		c.Audience = jwt.ClaimStrings{i.audience}
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(i.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return signed, exp, nil
}

// Verify checks an access token's signature and its time and audience
// claims, allowing PostgREST's 30 s of clock skew.
func (i *Issuer) Verify(raw string) (*Claims, error) {
	return i.parse(i.parser, raw)
}

// VerifySignature checks only the signature, so that an expired token can
// still name the session to revoke at logout. Never use it to grant access.
func (i *Issuer) VerifySignature(raw string) (*Claims, error) {
	return i.parse(i.parserNoTime, raw)
}

// ErrAlgorithm reports a token signed with an algorithm authd does not
// accept (anything but HS256, "none" included).
var ErrAlgorithm = errors.New("wrong or unsupported signing algorithm")

// ErrKeyID reports a token naming a key (kid) that authd does not have. As
// in PostgREST, a token with a kid is checked only against that key.
var ErrKeyID = errors.New("no key with the token's kid")

func (i *Issuer) parse(p *jwt.Parser, raw string) (*Claims, error) {
	var c Claims
	tok, err := p.ParseWithClaims(raw, &c, i.key)
	if err != nil {
		if tok != nil && errors.Is(err, jwt.ErrTokenSignatureInvalid) && tok.Header["alg"] != jwt.SigningMethodHS256.Alg() {
			err = fmt.Errorf("%w: %q", ErrAlgorithm, tok.Header["alg"])
		}
		return nil, fmt.Errorf("verify access token: %w", err)
	}
	return &c, nil
}

func (i *Issuer) key(t *jwt.Token) (any, error) {
	if _, ok := t.Header["kid"]; ok {
		return nil, ErrKeyID
	}
	return i.secret, nil
}

// refreshBytes is the refresh token's entropy: 256 bits.
const refreshBytes = 32

// NewRefresh returns a new opaque refresh token and the hash to store.
func NewRefresh() (plain string, hash []byte, err error) {
	b := make([]byte, refreshBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("read random refresh token: %w", err)
	}
	plain = base64.RawURLEncoding.EncodeToString(b)
	return plain, HashRefresh(plain), nil
}

// HashRefresh is the form in which a refresh token is stored and looked up.
// A fast hash is right here: the token is 256 random bits, so there is
// nothing to brute-force, and the lookup is by exact hash in a unique index,
// which reveals nothing about the plaintext through timing.
func HashRefresh(plain string) []byte {
	sum := sha256.Sum256([]byte(plain))
	return sum[:]
}
