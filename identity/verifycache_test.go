package identity

import (
	"crypto/sha256"
	"strconv"
	"testing"
	"time"
)

func TestVerifiedCacheChecksExpiryOnEveryHit(t *testing.T) {
	exp := time.Unix(1_800_000_000, 0)
	now := exp.Add(29 * time.Second)
	vc := newVerifiedCache(func() time.Time { return now })
	vc.put("tok", newVerified("u", "r", "", "", time.Time{}, exp, 1))

	if v, ok := vc.get("tok", 1); !ok || v.user != "u" || v.role != "r" {
		t.Errorf("got %+v, %v within PostgREST's 30 s leeway, want the entry", v, ok)
	}
	if _, ok := vc.get("tok", 2); ok {
		t.Error("hit for a token verified under another key set")
	}
	now = exp.Add(30 * time.Second)
	if _, ok := vc.get("tok", 1); ok {
		t.Error("hit for a token at exp + leeway, which the parser refuses")
	}
	if n := vc.c.Len(); n != 0 {
		t.Errorf("expired token kept in the cache (%d entries)", n)
	}
	if _, ok := vc.get("other", 1); ok {
		t.Error("hit for a token never verified")
	}
}

func TestVerifiedCacheIsBounded(t *testing.T) {
	vc := newVerifiedCache(nil)
	exp := time.Now().Add(time.Hour)
	for i := range verifiedCacheSize + 500 {
		vc.put(strconv.Itoa(i), newVerified("", "r", "", "", time.Time{}, exp, 1))
	}
	if n := vc.c.Len(); n != verifiedCacheSize {
		t.Errorf("cache holds %d tokens, want at most %d", n, verifiedCacheSize)
	}
}

// TestVerifiedCacheHoldsNoTokens: the cache is keyed by a digest, so a
// heap dump of a busy authd does not hand out the tokens it verified.
func TestVerifiedCacheHoldsNoTokens(t *testing.T) {
	vc := newVerifiedCache(nil)
	vc.put("eyJ.secret.token", newVerified("", "r", "", "", time.Time{}, time.Now().Add(time.Hour), 1))
	for k := range vc.c.entries {
		if k != sha256.Sum256([]byte("eyJ.secret.token")) {
			t.Errorf("key %x is not the token's SHA-256", k)
		}
	}
}
