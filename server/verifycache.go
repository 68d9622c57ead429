package server

import (
	"sync"
	"time"

	"authd/token"
)

// maxVerified bounds the verified-token cache; when it is full an
// arbitrary entry makes room.
const maxVerified = 10000

// verifiedCache remembers access tokens that passed full verification,
// keyed by the whole token (signature included), as PostgREST's JWT cache
// does: a browser sends the same token on every request, and decoding its
// JSON costs more than everything else /auth/verify does. A hit still
// checks expiry; nbf, iat and aud cannot turn bad once they were good.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[string]*token.Claims
}

func (vc *verifiedCache) get(raw string, now time.Time) (*token.Claims, bool) {
	vc.mu.RLock()
	c, ok := vc.m[raw]
	vc.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if c.ExpiresAt == nil || now.Add(-token.Leeway).After(c.ExpiresAt.Time) {
		vc.mu.Lock()
		delete(vc.m, raw)
		vc.mu.Unlock()
		return nil, false
	}
	return c, true
}

func (vc *verifiedCache) put(raw string, c *token.Claims) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.m == nil {
		vc.m = make(map[string]*token.Claims)
	}
	if len(vc.m) >= maxVerified {
		for k := range vc.m {
			delete(vc.m, k)
			break
		}
	}
	vc.m[raw] = c
}
