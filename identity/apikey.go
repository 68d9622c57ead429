package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"authd/store"
	"authd/token"
)

// keyCache holds, per API key id, the key's row (re-read every recheck,
// Config.APIKeyRecheck), its rate limiter and the JWT minted for it. A
// busy key thus costs one database read per recheck and one signature per
// token lifetime, not one of each per request.
type keyCache struct {
	recheck time.Duration

	mu      sync.Mutex
	entries map[string]*keyEntry
	// unknown remembers ids not found, for recheck, so a flood of made-up
	// keys costs one query per id per recheck, not one per request.
	unknown map[string]time.Time
}

// maxUnknown bounds the negative cache; past it, it starts over.
const maxUnknown = 10000

type keyEntry struct {
	mu        sync.Mutex
	key       store.APIKey
	loadedAt  time.Time
	touchedAt time.Time
	limiter   *rate.Limiter
	rpm       int
	token     string
	tokenExp  time.Time
}

func (kc *keyCache) entry(id string) *keyEntry {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if kc.entries == nil {
		kc.entries = map[string]*keyEntry{}
	}
	e, ok := kc.entries[id]
	if !ok {
		e = &keyEntry{}
		kc.entries[id] = e
	}
	return e
}

// knownMissing reports whether id was looked up and not found less than
// recheck ago.
func (kc *keyCache) knownMissing(id string, now time.Time) bool {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	at, ok := kc.unknown[id]
	return ok && now.Sub(at) < kc.recheck
}

// missing records that id does not exist, and drops any entry for it.
func (kc *keyCache) missing(id string, now time.Time) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	delete(kc.entries, id)
	if kc.unknown == nil || len(kc.unknown) >= maxUnknown {
		kc.unknown = map[string]time.Time{}
	}
	kc.unknown[id] = now
}

// IdentifyAPIKey checks an API key (X-API-Key, or a NATS client's key):
// the identity carries a short-lived JWT for the key's role. Refusals are
// InvalidToken (unknown, disabled, expired) or Forbidden (over the plan's
// rate, role dropped), never another kind: over HTTP they are 401 and 403,
// and nginx's auth_request would turn any other status into a 500.
func (c *Core) IdentifyAPIKey(ctx context.Context, plain string) (Identity, error) {
	id, hash, ok := token.ParseAPIKey(plain)
	if !ok {
		return Identity{}, errInvalidAPIKey("Invalid API key")
	}
	now := c.cfg.Now()
	if c.keys.knownMissing(id, now) {
		return Identity{}, errInvalidAPIKey("Invalid API key")
	}
	e := c.keys.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()

	if now.Sub(e.loadedAt) >= c.keys.recheck {
		k, err := c.db.APIKey(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			c.keys.missing(id, now)
			return Identity{}, errInvalidAPIKey("Invalid API key")
		}
		if err != nil {
			return Identity{}, Failure(err)
		}
		if k.RequestsPerMinute != e.rpm || e.limiter == nil {
			e.limiter = rate.NewLimiter(rate.Limit(float64(k.RequestsPerMinute)/60), k.RequestsPerMinute)
			e.rpm = k.RequestsPerMinute
		}
		if k.Role != e.key.Role || !k.Enabled {
			e.token = "" // never hand out a token minted for another role
		}
		e.key, e.loadedAt = k, now
	}
	k := e.key
	// The id is public; the hash is the secret part. Compare in constant
	// time so response timing says nothing about how much of it matched.
	if subtle.ConstantTimeCompare(k.SecretHash, hash) != 1 {
		return Identity{}, errInvalidAPIKey("Invalid API key")
	}
	switch {
	case !k.Enabled:
		return Identity{}, errInvalidAPIKey("API key disabled")
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return Identity{}, errInvalidAPIKey("API key expired")
	case !k.RoleExists:
		return Identity{}, &Error{Kind: Forbidden, Code: "PT403", Message: "role \"" + k.Role + "\" does not exist"}
	}
	if r := e.limiter.ReserveN(now, 1); r.DelayFrom(now) > 0 {
		wait := r.DelayFrom(now)
		r.CancelAt(now)
		return Identity{}, &Error{
			Kind: Forbidden, Code: "PT403",
			Message:    "API key rate limit exceeded (" + strconv.Itoa(k.RequestsPerMinute) + " requests per minute)",
			RetryAfter: retryAfter(wait),
		}
	}
	if now.Sub(e.touchedAt) >= c.keys.recheck {
		e.touchedAt = now
		c.touchAPIKey(id)
	}
	// Re-mint when less than a fifth of the token's life is left, so the
	// upstream never receives a token about to expire.
	if e.token == "" || e.tokenExp.Sub(now) < c.cfg.APIKeyTokenTTL/5 {
		tok, exp, err := c.tokens.IssueFor("apikey:"+k.ID, k.Role, "", c.cfg.APIKeyTokenTTL)
		if err != nil {
			return Identity{}, Failure(err)
		}
		e.token, e.tokenExp = tok, exp
	}
	return Identity{User: "apikey:" + k.ID, Role: k.Role, Token: e.token, Expires: e.tokenExp}, nil
}

// touchAPIKey records that a key passed; last_used_at is written in the
// background, at most once per recheck per key, off the request path.
func (c *Core) touchAPIKey(id string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.db.TouchAPIKeys(ctx, []string{id}); err != nil {
			c.log.Warn("record api key use", "key_id", id, "err", err)
		}
	}()
}

func errInvalidAPIKey(message string) *Error {
	return &Error{Kind: InvalidToken, Code: "PT401", Message: message}
}
