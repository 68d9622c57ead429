package identity

import (
	"context"
	"crypto/subtle"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"authd/store"
	"authd/token"
)

// keyCache is what IdentifyAPIKey remembers, so that a busy key costs one
// database read per recheck and one signature per token lifetime, not one
// of each per request.
type keyCache struct {
	// rows holds each key's row, or the fact that no key has its id, for
	// Config.CacheRecheck — or until a change notification drops it
	// (ForgetAPIKey). Remembering unknown ids makes a flood of made-up
	// keys cost one query per id per recheck, not one per request.
	rows *Cache[string, keyRow]
	// state holds each key's rate limiter and minted JWT while the key is
	// in use; it survives row reloads, so reloading never refills a
	// limiter, and lapses after keyIdle without a request.
	state *Cache[string, *keyState]
}

type keyRow struct {
	key   store.APIKey
	found bool
}

type keyState struct {
	mu sync.Mutex
	// allowance is what is left of the requests this process took from
	// the key's shared rate (store.TakeAPIKeyAllowance).
	allowance int
	// limiter counts the key's requests in this process alone: it decides
	// while the shared rate cannot be asked, until sharedAfter.
	limiter     *rate.Limiter
	sharedAfter time.Time
	rpm         int
	role        string // the role token was minted for
	sid         string // and the key's secret (keyTokenSession)
	token       string
	tokenExp    time.Time
	touchedAt   time.Time
}

// maxKeys bounds each of the key caches; past it, an arbitrary entry makes
// room and is read again when next needed.
const maxKeys = 10000

// keyIdle is how long an unused key's state is kept: a limiter idle for a
// minute has refilled its per-minute bucket anyway, so dropping it then
// changes no answer.
const keyIdle = time.Minute

func newKeyCache(now func() time.Time) keyCache {
	return keyCache{rows: NewCache[string, keyRow](maxKeys, now), state: NewCache[string, *keyState](maxKeys, now)}
}

// ForgetAPIKey drops what is cached about key id, so its next use reads
// the row again: for a change notification (the auth.api_key trigger).
func (c *Core) ForgetAPIKey(id string) { c.keys.rows.Delete(id) }

// ForgetAll drops every cached key row and user state, for when change
// notifications may have been missed (the listening connection was lost).
func (c *Core) ForgetAll() {
	c.keys.rows.Clear()
	c.users.Clear()
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
	row, err := c.apiKeyRow(ctx, id)
	if err != nil {
		return Identity{}, Failure(err)
	}
	if !row.found {
		return Identity{}, errInvalidAPIKey("Invalid API key")
	}
	k := row.key
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
	case k.RoleRefusal != "":
		return Identity{}, RolePrivileged(k.Role, k.RoleRefusal)
	}
	e, err := c.keys.state.Load(ctx, id, func(context.Context) (*keyState, time.Time, error) {
		return &keyState{}, now.Add(keyIdle), nil
	})
	if err != nil {
		return Identity{}, Failure(err)
	}
	c.keys.state.Put(id, e, now.Add(keyIdle))
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.limiter == nil || k.RequestsPerMinute != e.rpm {
		e.limiter = rate.NewLimiter(rate.Limit(float64(k.RequestsPerMinute)/60), k.RequestsPerMinute)
		e.rpm = k.RequestsPerMinute
		e.allowance = 0
	}
	if wait := c.admitKey(ctx, k, e, now); wait > 0 {
		return Identity{}, &Error{
			Kind: Forbidden, Code: "PT403",
			Message:    "API key rate limit exceeded (" + strconv.Itoa(k.RequestsPerMinute) + " requests per minute)",
			RetryAfter: retryAfter(wait),
		}
	}
	if now.Sub(e.touchedAt) >= c.cfg.CacheRecheck {
		e.touchedAt = now
		c.touchAPIKey(id)
	}
	// Re-mint when less than a fifth of the token's life is left, so the
	// upstream never receives a token about to expire; never hand out a
	// token minted for another role.
	if e.token == "" || e.role != k.Role || e.sid != keyTokenSession(k) || e.tokenExp.Sub(now) < c.cfg.APIKeyTokenTTL/5 {
		tok, exp, err := c.tokens.IssueAs("apikey:"+k.ID, k.Role, keyTokenSession(k), c.cfg.APIKeyTokenTTL,
			token.Assurance{AAL: token.AAL1, AMR: []string{token.AMRAPIKey}})
		if err != nil {
			return Identity{}, Failure(err)
		}
		e.token, e.tokenExp, e.role, e.sid = tok, exp, k.Role, keyTokenSession(k)
	}
	return Identity{User: "apikey:" + k.ID, Role: k.Role, Token: e.token, Expires: e.tokenExp, AAL: token.AAL1}, nil
}

// sharedRateRetry is how long a key's requests are counted in this
// process alone after the shared rate could not be asked: a database
// outage must not add a failing statement to every request.
const sharedRateRetry = time.Second

// admitKey counts one request of key k (state e, locked) against its
// plan's rate, which every authd instance shares through the database: it
// spends this process's allowance, taking up to a second's worth of the
// plan's rate when it runs out. So N instances admit no more than the plan
// in all, and at most N seconds' worth less while allowances sit unused
// (docs/security.md#api-keys). While the database cannot be asked, each
// process limits the key on its own. It returns how long to wait when the
// key is over its rate, else 0.
func (c *Core) admitKey(ctx context.Context, k store.APIKey, e *keyState, now time.Time) time.Duration {
	local := e.limiter.ReserveN(now, 1)
	localWait := local.DelayFrom(now)
	if localWait > 0 {
		local.CancelAt(now)
	}
	if e.allowance > 0 {
		e.allowance--
		return 0
	}
	if now.Before(e.sharedAfter) {
		return localWait
	}
	r := store.KeyRate{Capacity: float64(k.RequestsPerMinute), PerSecond: float64(k.RequestsPerMinute) / 60}
	granted, wait, err := c.db.TakeAPIKeyAllowance(ctx, k.ID, r, max(1, k.RequestsPerMinute/60), now)
	if err != nil {
		if e.sharedAfter.IsZero() || ctx.Err() == nil {
			c.log.Warn("API key rate limited by this process alone for a second: the shared rate cannot be read", "key_id", k.ID, "err", err)
		}
		e.sharedAfter = now.Add(sharedRateRetry)
		return localWait
	}
	if granted == 0 {
		return wait
	}
	e.allowance = granted - 1
	return 0
}

// touchAPIKey records that a key passed; last_used_at is written in the
// background, at most once per recheck per key, off the request path
// (Wait waits for it).
func (c *Core) touchAPIKey(id string) {
	c.touches.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.db.TouchAPIKeys(ctx, []string{id}); err != nil {
			c.log.Warn("record api key use", "key_id", id, "err", err)
		}
	})
}

func errInvalidAPIKey(message string) *Error {
	return &Error{Kind: InvalidToken, Code: "PT401", Message: message}
}
