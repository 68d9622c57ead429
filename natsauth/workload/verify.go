package workload

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"authd/identity"
	"authd/token"
)

// ErrNotWorkload is Verify's answer for a token that no configured issuer
// issued (its unverified iss names none of them), or that is no JWT at
// all: the callout then checks it as one of authd's own credentials.
var ErrNotWorkload = errors.New("workload: not a token of a trusted issuer")

// Defaults of an IssuerConfig and a Config.
const (
	DefaultAudience = "nats"
	// DefaultRefreshInterval is the least time between two JWKS fetches of
	// one issuer: a flood of tokens with made-up kids costs the issuer one
	// request per interval.
	DefaultRefreshInterval = 30 * time.Second
	// DefaultKeysTTL is how long fetched keys are used before a token
	// fetches them again, so a key the issuer withdrew stops verifying.
	DefaultKeysTTL = 5 * time.Minute
	// DefaultMaxStale is how long the last keys fetched stay in use while
	// the JWKS cannot be fetched (an API server outage); after it, every
	// token of that issuer is refused until a fetch succeeds.
	DefaultMaxStale = time.Hour
	// DefaultFetchTimeout bounds one JWKS (or discovery) request, well
	// within the callout's 1.5 s per decision.
	DefaultFetchTimeout = time.Second
)

// DefaultAlgorithms are the algorithms accepted when an issuer names none:
// Kubernetes signs service-account tokens with RS256 unless its key is
// an EC key.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// maxJWKSBytes bounds a JWKS or discovery document read.
const maxJWKSBytes = 1 << 20

// minRSABits refuses keys too weak to trust.
const minRSABits = 2048

// IssuerConfig is one trusted issuer.
type IssuerConfig struct {
	// Issuer is the exact iss of its tokens, e.g.
	// https://kubernetes.default.svc. Required.
	Issuer string
	// JWKSURL is where its keys are. Empty: read jwks_uri from
	// Issuer/.well-known/openid-configuration.
	JWKSURL string
	// Audience must be among the token's aud; empty means "nats".
	Audience string
	// Algorithms are the accepted JWS algorithms (RS256, RS384, RS512,
	// ES256, ES384, ES512); nil means DefaultAlgorithms.
	Algorithms []string
	// CAFile, when set, is the only CA trusted for the issuer's HTTPS (the
	// cluster CA at /var/run/secrets/kubernetes.io/serviceaccount/ca.crt).
	// Empty: the system's roots.
	CAFile string
	// TokenFile, when set, holds a bearer token sent with each JWKS and
	// discovery request (in-cluster, the pod's own service-account
	// token: the API server may refuse anonymous reads of its JWKS). It is
	// read again for each fetch, as kubelet rotates projected tokens. It
	// is sent only over HTTPS and only to the host of Issuer or JWKSURL,
	// never to a host that a discovery document names.
	TokenFile string
	// Client, when set, is used instead of one built from CAFile (tests).
	Client *http.Client
}

// Config is a Verifier's issuers and clock.
type Config struct {
	Issuers []IssuerConfig
	// Now is the clock of token expiry and of the key cache; nil means
	// time.Now.
	Now func() time.Time
	// RefreshInterval, KeysTTL, MaxStale and FetchTimeout: 0 means the
	// Default of the same name.
	RefreshInterval, KeysTTL, MaxStale, FetchTimeout time.Duration
}

// Verifier checks workload tokens of trusted issuers against their JWKS.
type Verifier struct {
	issuers                         map[string]*issuer
	now                             func() time.Time
	log                             *slog.Logger
	refresh, ttl, maxStale, timeout time.Duration
}

// issuer is one trusted issuer and its cached keys.
type issuer struct {
	cfg        IssuerConfig
	client     *http.Client
	parser     *jwt.Parser
	bearerHost map[string]bool // hosts the bearer token may be sent to

	// fetchMu makes one fetch at a time: tokens waiting for new keys
	// wait for that fetch instead of starting their own.
	fetchMu sync.Mutex

	mu      sync.Mutex
	jwksURL string                     // cfg.JWKSURL, or found by discovery
	keys    map[string]jose.JSONWebKey // by kid
	fetched time.Time                  // the last successful fetch
	tried   time.Time                  // the last fetch started
	lastErr error                      // the last fetch's failure, nil after a success
}

// NewVerifier checks cfg and returns a Verifier. It fetches nothing yet: a
// JWKS that cannot be reached at start-up only refuses workload tokens.
func NewVerifier(cfg Config, log *slog.Logger) (*Verifier, error) {
	v := &Verifier{
		issuers:  map[string]*issuer{},
		now:      cfg.Now,
		log:      log,
		refresh:  orDefault(cfg.RefreshInterval, DefaultRefreshInterval),
		ttl:      orDefault(cfg.KeysTTL, DefaultKeysTTL),
		maxStale: orDefault(cfg.MaxStale, DefaultMaxStale),
		timeout:  orDefault(cfg.FetchTimeout, DefaultFetchTimeout),
	}
	if v.now == nil {
		v.now = time.Now
	}
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("workload: no trusted issuer")
	}
	for _, ic := range cfg.Issuers {
		iss, err := newIssuer(ic, v.now)
		if err != nil {
			return nil, err
		}
		if v.issuers[ic.Issuer] != nil {
			return nil, fmt.Errorf("workload: issuer %s configured twice", ic.Issuer)
		}
		v.issuers[ic.Issuer] = iss
	}
	return v, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func newIssuer(ic IssuerConfig, now func() time.Time) (*issuer, error) {
	iu, err := url.Parse(ic.Issuer)
	if err != nil || iu.Scheme != "https" || iu.Host == "" {
		return nil, fmt.Errorf("workload: issuer %q is not an https URL", ic.Issuer)
	}
	hosts := map[string]bool{iu.Host: true}
	if ic.JWKSURL != "" {
		ju, err := url.Parse(ic.JWKSURL)
		if err != nil || ju.Scheme != "https" || ju.Host == "" {
			return nil, fmt.Errorf("workload: JWKS URL %q is not an https URL", ic.JWKSURL)
		}
		hosts[ju.Host] = true
	}
	if ic.Audience == "" {
		ic.Audience = DefaultAudience
	}
	if len(ic.Algorithms) == 0 {
		ic.Algorithms = DefaultAlgorithms
	}
	for _, alg := range ic.Algorithms {
		switch alg {
		case "RS256", "RS384", "RS512", "ES256", "ES384", "ES512":
		default:
			return nil, fmt.Errorf("workload: issuer %s: algorithm %q is not supported (want RS256, RS384, RS512, ES256, ES384 or ES512)", ic.Issuer, alg)
		}
	}
	client := ic.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if ic.CAFile != "" {
			pem, err := os.ReadFile(ic.CAFile)
			if err != nil {
				return nil, fmt.Errorf("workload: issuer %s: CA file: %w", ic.Issuer, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("workload: issuer %s: CA file %s holds no PEM certificate", ic.Issuer, ic.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		// Redirects are not followed: a bearer token must not travel on.
		client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &issuer{
		cfg:        ic,
		client:     client,
		bearerHost: hosts,
		jwksURL:    ic.JWKSURL,
		// The algorithm list is explicit, and the key function insists on
		// a key of the algorithm's type: "none", HMAC with a public key as
		// secret, or an ES256 token for an RSA kid never verify.
		parser: jwt.NewParser(
			jwt.WithValidMethods(ic.Algorithms),
			jwt.WithIssuer(ic.Issuer),
			jwt.WithAudience(ic.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(token.Leeway),
			jwt.WithTimeFunc(now),
		),
	}, nil
}

// Token is a verified workload token: who it names and until when.
type Token struct {
	Identity
	Expires time.Time
}

// Verify checks raw and returns who it names. The error is ErrNotWorkload
// when no configured issuer issued it; any other error is a refusal (an
// *identity.Error worded as PostgREST words a bad JWT, or PT503 when the
// issuer's keys are unavailable).
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	t, err := v.VerifyToken(ctx, raw)
	return t.Identity, err
}

// VerifyToken is Verify, with the token's expiry. On a refusal it still
// returns the Identity the token claims (unverified: for the log only).
func (v *Verifier) VerifyToken(ctx context.Context, raw string) (Token, error) {
	if identity.CheckTokenSize(raw) != nil {
		return Token{}, ErrNotWorkload // authd's own check refuses it
	}
	// The issuer is read before the signature is checked, only to choose
	// the keys to check it with.
	var claimed k8sClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &claimed); err != nil {
		return Token{}, ErrNotWorkload
	}
	iss := v.issuers[claimed.Issuer]
	if iss == nil {
		return Token{}, ErrNotWorkload
	}
	unverified, _ := claimed.identity(iss.cfg.Issuer)

	var c k8sClaims
	_, err := iss.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, fmt.Errorf("%w: token has no kid", token.ErrKeyID)
		}
		return v.key(ctx, iss, kid, t.Method.Alg())
	})
	if err != nil {
		var u *unavailableError
		if errors.As(err, &u) {
			return Token{Identity: unverified}, &identity.Error{Kind: identity.Unavailable, Code: "PT503",
				Message: "Workload token issuer keys unavailable", RetryAfter: 1, Cause: u}
		}
		return Token{Identity: unverified}, identity.TokenRefusal(raw, err)
	}
	id, err := c.identity(iss.cfg.Issuer)
	if err != nil {
		return Token{Identity: unverified}, &identity.Error{Kind: identity.InvalidToken, Code: "PGRST303", Message: err.Error()}
	}
	return Token{Identity: id, Expires: c.ExpiresAt.Time}, nil
}

// k8sClaims are the claims of a Kubernetes service-account token
// (projected, or any OIDC token naming a service account in sub).
type k8sClaims struct {
	jwt.RegisteredClaims
	Kubernetes *struct {
		Namespace      string   `json:"namespace"`
		ServiceAccount *k8sName `json:"serviceaccount"`
		Pod            *k8sName `json:"pod"`
	} `json:"kubernetes.io"`
}

type k8sName struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// saPrefix starts the sub of a service-account token.
const saPrefix = "system:serviceaccount:"

// identity is who c names: the kubernetes.io claims when present (and
// then sub, if it names a service account, must name the same one), else
// sub. A token that names no service account is refused: there would be
// nothing to find permissions for.
func (c *k8sClaims) identity(issuer string) (Identity, error) {
	id := Identity{Issuer: issuer, Subject: c.Subject}
	subNS, subName, subOK := parseSASubject(c.Subject)
	if k := c.Kubernetes; k != nil {
		id.Namespace = k.Namespace
		if k.ServiceAccount != nil {
			id.ServiceAccount = k.ServiceAccount.Name
		}
		if k.Pod != nil {
			id.Pod = k.Pod.Name
		}
		if id.Namespace == "" || id.ServiceAccount == "" {
			return id, errors.New("JWT kubernetes.io claim names no namespace and service account")
		}
		if strings.HasPrefix(c.Subject, saPrefix) && (!subOK || subNS != id.Namespace || subName != id.ServiceAccount) {
			return id, errors.New("JWT sub and kubernetes.io claim name different service accounts")
		}
		return id, nil
	}
	if !subOK {
		return id, errors.New("JWT names no service account (sub is not system:serviceaccount:NAMESPACE:NAME)")
	}
	id.Namespace, id.ServiceAccount = subNS, subName
	return id, nil
}

// parseSASubject splits system:serviceaccount:NS:NAME.
func parseSASubject(sub string) (ns, name string, ok bool) {
	rest, found := strings.CutPrefix(sub, saPrefix)
	if !found {
		return "", "", false
	}
	ns, name, found = strings.Cut(rest, ":")
	if !found || ns == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return ns, name, true
}

// unavailableError is a key lookup that failed because the issuer's JWKS
// could not be fetched (or not for longer than MaxStale).
type unavailableError struct{ err error }

func (e *unavailableError) Error() string {
	return "workload token issuer keys unavailable: " + e.err.Error()
}
func (e *unavailableError) Unwrap() error { return e.err }

// key returns the public key kid names, for alg. Keys are fetched when
// none are cached, when kid is unknown (a rotated key) or when they are
// older than KeysTTL — at most once per RefreshInterval. If fetching
// fails, the keys of the last success stay in use for MaxStale.
func (v *Verifier) key(ctx context.Context, iss *issuer, kid, alg string) (any, error) {
	keys, fetched, _ := iss.snapshot()
	k, ok := keys[kid]
	if !ok || v.now().Sub(fetched) >= v.ttl {
		v.fetch(ctx, iss)
		var lastErr error
		keys, fetched, lastErr = iss.snapshot()
		if fetched.IsZero() || v.now().Sub(fetched) > v.maxStale {
			if lastErr == nil {
				lastErr = errors.New("no keys fetched yet")
			}
			return nil, &unavailableError{lastErr}
		}
		if k, ok = keys[kid]; !ok {
			return nil, fmt.Errorf("%w: kid %q is not in the issuer's JWKS", token.ErrKeyID, kid)
		}
	}
	if k.Algorithm != "" && k.Algorithm != alg {
		return nil, fmt.Errorf("%w: %q for a %s key", token.ErrAlgorithm, alg, k.Algorithm)
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "RS") {
			return pub, nil
		}
	case *ecdsa.PublicKey:
		if strings.HasPrefix(alg, "ES") {
			return pub, nil
		}
	}
	return nil, fmt.Errorf("%w: %q for kid %q of another key type", token.ErrAlgorithm, alg, kid)
}

func (iss *issuer) snapshot() (map[string]jose.JSONWebKey, time.Time, error) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.keys, iss.fetched, iss.lastErr
}

// fetch reads the issuer's JWKS, unless a fetch started less than
// RefreshInterval ago.
func (v *Verifier) fetch(ctx context.Context, iss *issuer) {
	iss.fetchMu.Lock()
	defer iss.fetchMu.Unlock()
	now := v.now()
	iss.mu.Lock()
	if !iss.tried.IsZero() && now.Sub(iss.tried) < v.refresh {
		iss.mu.Unlock()
		return
	}
	iss.tried = now
	jwksURL := iss.jwksURL
	iss.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	keys, jwksURL, err := iss.fetchKeys(ctx, jwksURL)

	iss.mu.Lock()
	defer iss.mu.Unlock()
	if err != nil {
		iss.lastErr = err
		v.log.Warn("workload issuer JWKS not fetched; keeping the last keys", "issuer", iss.cfg.Issuer,
			"keys_from", iss.fetched, "max_stale", v.maxStale, "err", err)
		return
	}
	iss.keys, iss.fetched, iss.lastErr, iss.jwksURL = keys, now, nil, jwksURL
	v.log.Debug("workload issuer JWKS fetched", "issuer", iss.cfg.Issuer, "keys", len(keys))
}

// fetchKeys reads the JWKS at jwksURL, or at the jwks_uri of the issuer's
// discovery document when jwksURL is "".
func (iss *issuer) fetchKeys(ctx context.Context, jwksURL string) (map[string]jose.JSONWebKey, string, error) {
	if jwksURL == "" {
		var disc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := iss.getJSON(ctx, strings.TrimSuffix(iss.cfg.Issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil {
			return nil, "", err
		}
		// OpenID Connect Discovery 1.0, section 4.3: the document must
		// name the issuer it was fetched for.
		if disc.Issuer != iss.cfg.Issuer {
			return nil, "", fmt.Errorf("discovery document names issuer %q, want %q", disc.Issuer, iss.cfg.Issuer)
		}
		if u, err := url.Parse(disc.JWKSURI); err != nil || u.Scheme != "https" {
			return nil, "", fmt.Errorf("discovery document's jwks_uri %q is not an https URL", disc.JWKSURI)
		}
		jwksURL = disc.JWKSURI
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := iss.getJSON(ctx, jwksURL, &set); err != nil {
		return nil, "", err
	}
	keys := map[string]jose.JSONWebKey{}
	for _, raw := range set.Keys {
		// A key of a type this verifier cannot use is skipped, not fatal:
		// the issuer may publish others beside the ones it signs with.
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || k.KeyID == "" || !k.IsPublic() || !k.Valid() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if rk, ok := k.Key.(*rsa.PublicKey); ok && rk.N.BitLen() < minRSABits {
			continue
		}
		keys[k.KeyID] = k
	}
	if len(keys) == 0 {
		return nil, "", fmt.Errorf("JWKS at %s has no usable signing key", jwksURL)
	}
	return keys, jwksURL, nil
}

// getJSON GETs u into v, with the bearer token when u may have it.
func (iss *issuer) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	if iss.cfg.TokenFile != "" && req.URL.Scheme == "https" && iss.bearerHost[req.URL.Host] {
		b, err := os.ReadFile(iss.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("bearer token for %s: %w", u, err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	resp, err := iss.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("GET %s: larger than %d bytes", u, maxJWKSBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// Issuers lists the configured issuers, for start-up logs.
func (v *Verifier) Issuers() []string {
	return slices.Sorted(maps.Keys(v.issuers))
}
