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
// checks expiry; nbf, iat and aud cannot turn bad once they were good. An
// entry counts only for the key-set generation that verified it, so a key
// removed by a reload stops verifying its tokens at once.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[string]verified
}

type verified struct {
	claims *token.Claims
	gen    uint64
}

func (vc *verifiedCache) get(raw string, gen uint64, now time.Time) (*token.Claims, bool) {
	vc.mu.RLock()
	v, ok := vc.m[raw]
	vc.mu.RUnlock()
	if !ok {
		return nil, false
	}
	c := v.claims
	if v.gen != gen || c.ExpiresAt == nil || now.Add(-token.Leeway).After(c.ExpiresAt.Time) {
		vc.mu.Lock()
		delete(vc.m, raw)
		vc.mu.Unlock()
		return nil, false
	}
	return c, true
}

func (vc *verifiedCache) put(raw string, gen uint64, c *token.Claims) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.m == nil {
		vc.m = make(map[string]verified)
	}
	if len(vc.m) >= maxVerified {
		for k := range vc.m {
			delete(vc.m, k)
			break
		}
	}
	vc.m[raw] = verified{claims: c, gen: gen}
}
