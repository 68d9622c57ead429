package identity

import (
	"crypto/sha256"
	"sync"
	"time"
	"unique"

	"authd/token"
)

// verifiedCacheSize bounds the verified-token cache; when it is full an
// arbitrary entry makes room. PostgREST's own JWT cache holds 1,000 by
// default; 4,096 users active within a token's lifetime is a busy
// gateway, and a miss only costs one full verification.
const verifiedCacheSize = 4096

// verifiedCache remembers access tokens that passed full verification, as
// PostgREST's JWT cache does: a browser sends the same token on every
// request, and decoding its JSON costs more than everything else
// /auth/verify does. A hit still checks expiry; nbf, iat and aud cannot
// turn bad once they were good. An entry counts only for the key-set
// generation that verified it, so a key removed by a reload stops
// verifying its tokens at once.
//
// Entries are keyed by the token's SHA-256 and keep only what an identity
// needs, with user and role names interned (a user's tokens share them,
// and roles are few): about 160 bytes each, not the token and its parsed
// claims (about 1 KB), so the full cache costs under a megabyte, and no
// token sits in memory longer than its request.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]verified
}

type verified struct {
	user, role string
	expires    int64 // Unix seconds, as in the token's exp
	gen        uint64
}

// newVerified is the entry for a verified token's identity.
func newVerified(user, role string, expires time.Time, gen uint64) verified {
	return verified{user: unique.Make(user).Value(), role: unique.Make(role).Value(), expires: expires.Unix(), gen: gen}
}

func (vc *verifiedCache) get(raw string, gen uint64, now time.Time) (verified, bool) {
	key := sha256.Sum256([]byte(raw))
	vc.mu.RLock()
	v, ok := vc.m[key]
	vc.mu.RUnlock()
	if !ok {
		return verified{}, false
	}
	// Expired from exp + leeway on, as the parser has it (jwt's
	// verifyExpiresAt): a hit must never outlive a full verification.
	if v.gen != gen || !now.Before(time.Unix(v.expires, 0).Add(token.Leeway)) {
		vc.mu.Lock()
		delete(vc.m, key)
		vc.mu.Unlock()
		return verified{}, false
	}
	return v, true
}

func (vc *verifiedCache) put(raw string, v verified) {
	key := sha256.Sum256([]byte(raw))
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if vc.m == nil {
		vc.m = make(map[[sha256.Size]byte]verified)
	}
	if len(vc.m) >= verifiedCacheSize {
		for k := range vc.m {
			delete(vc.m, k)
			break
		}
	}
	vc.m[key] = v
}
