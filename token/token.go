// Package token issues and verifies authd's tokens: access JWTs that
// PostgREST accepts (HS256 with the shared jwt-secret, or ES256, EdDSA or
// RS256 with a kid from authd's published JWKS), and opaque refresh tokens
// and API keys that are stored only as hashes.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
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
// because caddy-jwt refuses tokens without a user claim. aal and amr are
// named as GoTrue names them, so row-level-security policies written for
// Supabase read them unchanged.
type Claims struct {
	Role      string `json:"role"`
	Username  string `json:"username"`
	SessionID string `json:"sid,omitempty"`
	// AAL is the authenticator assurance level (NIST SP 800-63B): "aal1"
	// for one factor, "aal2" after a second. AMR lists the methods that
	// authenticated the holder (RFC 8176 values where there is one).
	AAL string   `json:"aal,omitempty"`
	AMR []string `json:"amr,omitempty"`
	jwt.RegisteredClaims
}

// Assurance is how the holder of a token authenticated: its aal and amr
// claims.
type Assurance struct {
	AAL string
	AMR []string
}

// The assurance levels.
const (
	AAL1 = "aal1"
	AAL2 = "aal2"
)

// The methods of the amr claim. RFC 8176 has "pwd" and "otp"; authd says
// "totp" as GoTrue does, and "recovery" (a recovery code) and "api_key"
// (a token minted for an API key), which RFC 8176 has no value for.
const (
	AMRPassword = "pwd"
	AMRTOTP     = "totp"
	AMRRecovery = "recovery"
	AMRAPIKey   = "api_key"
)

// PasswordOnly is the assurance of a password alone: a login, or a NATS
// client's user and password.
func PasswordOnly() Assurance { return Assurance{AAL: AAL1, AMR: []string{AMRPassword}} }

// Issuer signs and verifies access tokens with its current KeySet, which
// a reload may swap at any time without a lock on the request path.
type Issuer struct {
	keys     atomic.Pointer[KeySet]
	gen      atomic.Uint64
	ttl      time.Duration
	audience string
	issuer   string
	rolePath []string
	maxLife  time.Duration
	now      func() time.Time

	parser       *jwt.Parser // full validation: signature, exp (required), nbf, iat, aud
	parserNoTime *jwt.Parser // signature only, for logout with an expired token
}

// Options are an Issuer's settings besides its keys.
type Options struct {
	TTL      time.Duration
	Audience string // aud claim, and required on verification; may be empty
	// Issuer is the iss claim; when set, verification requires it too.
	Issuer string
	// MaxLifetime bounds a verified token's lifetime (exp - iat, or exp -
	// now without iat), plus Leeway: authd accepts only tokens it could
	// have minted. Zero means TTL; set it to the longest lifetime this
	// Issuer's tokens are minted with (IssueFor).
	MaxLifetime time.Duration
	// RolePath, when set, also places the role as a one-element list at
	// this dotted path (e.g. "resource_access.postgrest_api.roles", where
	// Keycloak puts client roles), so a PostgREST configured with a nested
	// jwt-role-claim-key for Keycloak accepts authd's tokens unchanged.
	RolePath string
	Now      func() time.Time
}

// NewIssuer returns an HS256-only Issuer for secret. audience may be
// empty; now may be nil for time.Now.
func NewIssuer(secret []byte, ttl time.Duration, audience string, now func() time.Time) (*Issuer, error) {
	ks, err := NewKeySet(secret, nil, "")
	if err != nil {
		return nil, err
	}
	return New(ks, Options{TTL: ttl, Audience: audience, Now: now})
}

// New returns an Issuer for the key set ks.
func New(ks *KeySet, o Options) (*Issuer, error) {
	if o.TTL <= 0 {
		return nil, fmt.Errorf("access token lifetime must be positive, got %s", o.TTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxLifetime < o.TTL {
		o.MaxLifetime = o.TTL
	}
	var rolePath []string
	if o.RolePath != "" {
		rolePath = strings.Split(o.RolePath, ".")
		for _, seg := range rolePath {
			if seg == "" {
				return nil, fmt.Errorf("role claim path %q has an empty segment", o.RolePath)
			}
		}
		switch rolePath[0] {
		case "role", "username", "sid", "aal", "amr", "sub", "iss", "aud", "exp", "nbf", "iat", "jti":
			return nil, fmt.Errorf("role claim path %q would overwrite the %q claim", o.RolePath, rolePath[0])
		}
	}
	// The algorithm list is explicit and the key function then insists on
	// the algorithm of the key the kid names: "none", an HMAC "signature"
	// made with a public key, or an RS256 token for an ES256 kid never
	// verify.
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{HS256, ES256, EdDSA, RS256}),
		jwt.WithTimeFunc(o.Now),
	}
	full := append(opts[:len(opts):len(opts)], jwt.WithLeeway(Leeway), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if o.Audience != "" {
		full = append(full, jwt.WithAudience(o.Audience))
	}
	// A token of another issuer that happens to share the HMAC secret
	// (PostgREST's, or another service's) is not authd's.
	if o.Issuer != "" {
		full = append(full, jwt.WithIssuer(o.Issuer))
	}
	i := &Issuer{
		ttl:          o.TTL,
		audience:     o.Audience,
		issuer:       o.Issuer,
		rolePath:     rolePath,
		maxLife:      o.MaxLifetime,
		now:          o.Now,
		parser:       jwt.NewParser(full...),
		parserNoTime: jwt.NewParser(append(opts, jwt.WithoutClaimsValidation())...),
	}
	i.SetKeys(ks)
	return i, nil
}

// SetKeys replaces the key set: tokens are signed with the new signing key
// from now on, and only the new set's keys verify.
func (i *Issuer) SetKeys(ks *KeySet) {
	i.keys.Store(ks)
	i.gen.Add(1)
}

// Keys returns the current key set.
func (i *Issuer) Keys() *KeySet { return i.keys.Load() }

// Generation changes whenever the key set does; caches of verified
// tokens compare it to drop what an old key set verified.
func (i *Issuer) Generation() uint64 { return i.gen.Load() }

// IssuerName is the iss claim, if any.
func (i *Issuer) IssuerName() string { return i.issuer }

// TTL is the lifetime of the access tokens this Issuer signs.
func (i *Issuer) TTL() time.Duration { return i.ttl }

// Issue signs an access token for username acting as role in session
// sessionID, authenticated by password alone, returning the token and its
// expiry.
func (i *Issuer) Issue(username, role, sessionID string) (string, time.Time, error) {
	return i.IssueAs(username, role, sessionID, i.ttl, PasswordOnly())
}

// IssueFor is Issue with another lifetime.
func (i *Issuer) IssueFor(username, role, sessionID string, ttl time.Duration) (string, time.Time, error) {
	return i.IssueAs(username, role, sessionID, ttl, PasswordOnly())
}

// IssueAs is Issue with another lifetime (the short tokens minted for API
// keys, or of a session waiting for its second factor) and assurance.
func (i *Issuer) IssueAs(username, role, sessionID string, ttl time.Duration, a Assurance) (string, time.Time, error) {
	now := i.now().Truncate(time.Second)
	exp := now.Add(ttl)
	c := Claims{
		Role:      role,
		Username:  username,
		SessionID: sessionID,
		AAL:       a.AAL,
		AMR:       a.AMR,
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
	c.Issuer = i.issuer
	var claims jwt.Claims = c
	if i.rolePath != nil {
		claims = nestedRole{Claims: c, path: i.rolePath}
	}
	ks := i.keys.Load()
	var (
		signed string
		err    error
	)
	switch k := ks.signing; {
	case k == nil && ks.secret == nil:
		// HS256 with an empty key would be a token anyone can forge.
		return "", time.Time{}, fmt.Errorf("sign access token: %w", ErrNoKeys)
	case k != nil:
		t := jwt.NewWithClaims(k.method(), claims)
		t.Header["kid"] = k.ID
		signed, err = t.SignedString(k.private)
	default:
		signed, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(ks.secret)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return signed, exp, nil
}

// Verify checks an access token's signature, its time, audience and
// issuer claims, allowing PostgREST's 30 s of clock skew, and that it
// lives no longer than authd's own tokens.
func (i *Issuer) Verify(raw string) (*Claims, error) {
	c, err := i.parse(i.parser, raw)
	if err != nil {
		return nil, err
	}
	// exp is required, so set. A token without iat is measured from now.
	from := i.now()
	if c.IssuedAt != nil {
		from = c.IssuedAt.Time
	}
	if life := c.ExpiresAt.Sub(from); life > i.maxLife+Leeway {
		return nil, fmt.Errorf("verify access token: %w: %s, at most %s", ErrLifetime, life, i.maxLife)
	}
	return c, nil
}

// VerifySignature checks only the signature, so that an expired token can
// still name the session to revoke at logout. Never use it to grant access.
func (i *Issuer) VerifySignature(raw string) (*Claims, error) {
	return i.parse(i.parserNoTime, raw)
}

// ErrAlgorithm reports a token whose algorithm authd does not accept: one
// outside HS256, ES256, EdDSA and RS256 ("none" included), one that differs
// from the algorithm of the key its kid names, or one other than HS256
// without a kid.
var ErrAlgorithm = errors.New("wrong or unsupported signing algorithm")

// ErrKeyID reports a token naming a key (kid) that authd does not have. As
// in PostgREST, a token with a kid is checked only against that key.
var ErrKeyID = errors.New("no key with the token's kid")

// ErrLifetime reports a token that lives longer (exp - iat) than any
// token authd mints: a leaked HMAC secret or a careless minter must not
// yield a token that works for years.
var ErrLifetime = errors.New("token lifetime exceeds the maximum")

func (i *Issuer) parse(p *jwt.Parser, raw string) (*Claims, error) {
	if err := checkJSON(raw); err != nil {
		return nil, fmt.Errorf("verify access token: %w", err)
	}
	var c Claims
	ks := i.keys.Load()
	tok, err := p.ParseWithClaims(raw, &c, ks.keyFor)
	if err != nil {
		// golang-jwt reports a missing iss as a missing claim, as it does
		// a missing exp; the client is told which.
		if i.issuer != "" && c.Issuer == "" && errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
			err = fmt.Errorf("%w: %w", jwt.ErrTokenInvalidIssuer, err)
		}
		// An algorithm outside the parser's list never reaches keyFor.
		if tok != nil && errors.Is(err, jwt.ErrTokenSignatureInvalid) && !errors.Is(err, ErrAlgorithm) {
			if alg, _ := tok.Header["alg"].(string); !slices.Contains([]string{HS256, ES256, EdDSA, RS256}, alg) {
				err = fmt.Errorf("%w: %q", ErrAlgorithm, alg)
			}
		}
		return nil, fmt.Errorf("verify access token: %w", err)
	}
	return &c, nil
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

// nestedRole is Claims with the role repeated as [role] at a nested path.
type nestedRole struct {
	Claims
	path []string
}

func (n nestedRole) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(n.Claims)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	at := m
	for _, seg := range n.path[:len(n.path)-1] {
		next := map[string]any{}
		at[seg] = next
		at = next
	}
	at[n.path[len(n.path)-1]] = []string{n.Role}
	return json.Marshal(m)
}
