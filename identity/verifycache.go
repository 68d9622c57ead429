package identity

import (
	"crypto/sha256"
	"time"
	"unique"

	"authd/token"
)

// verifiedCacheSize bounds the verified-token cache. PostgREST's own JWT
// cache holds 1,000 by default; 4,096 users active within a token's
// lifetime is a busy gateway, and a miss only costs one full verification.
const verifiedCacheSize = 4096

// The verified-token cache remembers access tokens that passed full
// verification, as PostgREST's JWT cache does: a browser sends the same
// token on every request, and decoding its JSON costs more than everything
// else /auth/verify does. An entry expires when the parser would refuse
// the token (exp + leeway); nbf, iat and aud cannot turn bad once they
// were good. An entry counts only for the key-set generation that
// verified it, so a key removed by a reload stops verifying its tokens at
// once.
//
// Entries are keyed by the token's SHA-256 and keep only what an identity
// needs, with user and role names interned (a user's tokens share them,
// and roles are few): about 160 bytes each, not the token and its parsed
// claims (about 1 KB), so the full cache costs under a megabyte, and no
// token sits in memory longer than its request.
type verifiedCache struct {
	c *Cache[[sha256.Size]byte, verified]
}

func newVerifiedCache(now func() time.Time) verifiedCache {
	return verifiedCache{c: NewCache[[sha256.Size]byte, verified](verifiedCacheSize, now)}
}

type verified struct {
	user, role string
	sid        string // the session (or API key secret) the token is for
	aal        string // the token's aal claim
	issued     int64  // Unix seconds, as in the token's iat; 0 without one
	expires    int64  // Unix seconds, as in the token's exp
	gen        uint64
}

// newVerified is the entry for a verified token's identity.
func newVerified(user, role, sid, aal string, issued, expires time.Time, gen uint64) verified {
	v := verified{user: unique.Make(user).Value(), role: unique.Make(role).Value(), sid: sid,
		aal: unique.Make(aal).Value(), expires: expires.Unix(), gen: gen}
	if !issued.IsZero() {
		v.issued = issued.Unix()
	}
	return v
}

// get returns what raw was verified as under key generation gen.
func (vc verifiedCache) get(raw string, gen uint64) (verified, bool) {
	v, ok := vc.c.Get(sha256.Sum256([]byte(raw)))
	if !ok || v.gen != gen {
		return verified{}, false
	}
	return v, true
}

// put caches v for raw until the parser would refuse raw: from exp +
// leeway on, as jwt's verifyExpiresAt has it, so a hit never outlives a
// full verification.
func (vc verifiedCache) put(raw string, v verified) {
	vc.c.Put(sha256.Sum256([]byte(raw)), v, time.Unix(v.expires, 0).Add(token.Leeway))
}
