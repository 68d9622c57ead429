package server

import (
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"authd/token"
)

func TestVerifiedCacheChecksExpiryOnEveryHit(t *testing.T) {
	var vc verifiedCache
	exp := time.Unix(1_800_000_000, 0)
	vc.put("tok", 1, &token.Claims{Role: "r", RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(exp)}})

	if _, ok := vc.get("tok", 1, exp.Add(29*time.Second)); !ok {
		t.Error("miss within PostgREST's 30 s leeway")
	}
	if _, ok := vc.get("tok", 2, exp); ok {
		t.Error("hit for a token verified under another key set")
	}
	vc.put("tok", 1, &token.Claims{Role: "r", RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(exp)}})
	if _, ok := vc.get("tok", 1, exp.Add(31*time.Second)); ok {
		t.Error("hit for a token expired beyond the leeway")
	}
	if _, ok := vc.m["tok"]; ok {
		t.Error("expired token kept in the cache")
	}
	if _, ok := vc.get("other", 1, exp); ok {
		t.Error("hit for a token never verified")
	}
}

func TestVerifiedCacheIsBounded(t *testing.T) {
	var vc verifiedCache
	exp := jwt.NewNumericDate(time.Now().Add(time.Hour))
	for i := range maxVerified + 500 {
		vc.put(strconv.Itoa(i), 1, &token.Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: exp}})
	}
	if n := len(vc.m); n != maxVerified {
		t.Errorf("cache holds %d tokens, want at most %d", n, maxVerified)
	}
}
