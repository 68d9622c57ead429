package store

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// MaxPasswordBytes is bcrypt's input limit. Longer passwords are refused
// rather than silently truncated, which would make every password sharing
// the first 72 bytes equal.
const MaxPasswordBytes = 72

// ErrPasswordTooLong is returned for a password over MaxPasswordBytes.
var ErrPasswordTooLong = fmt.Errorf("password is longer than bcrypt's %d-byte limit", MaxPasswordBytes)

// ErrPasswordEmpty is returned for an empty password.
var ErrPasswordEmpty = errors.New("password is empty")

// HashPassword returns the bcrypt hash of password at cost.
func HashPassword(password string, cost int) (string, error) {
	switch {
	case password == "":
		return "", ErrPasswordEmpty
	case len(password) > MaxPasswordBytes:
		return "", ErrPasswordTooLong
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches hash. A password over
// bcrypt's limit never matches: bcrypt would compare only its first 72
// bytes.
func CheckPassword(hash, password string) bool {
	if len(password) > MaxPasswordBytes {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// NeedsRehash reports whether hash was made at a lower cost than cost, as
// SuperStack's pgcrypto hashes ($2a$06$) were.
func NeedsRehash(hash string, cost int) bool {
	c, err := bcrypt.Cost([]byte(hash))
	return err == nil && c < cost
}
