package identity

import (
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// DefaultPasswordMinLength is the shortest password a user may choose,
// in characters: NIST SP 800-63B §3.1.1.2 asks for at least 8.
const DefaultPasswordMinLength = 8

// MaxPasswordMinLength bounds the configurable minimum: NIST asks that
// passwords of at least 64 characters be allowed, and bcrypt takes at
// most 72 bytes (store.MaxPasswordBytes), which a longer minimum of
// non-ASCII characters could not fit.
const MaxPasswordMinLength = 64

// PasswordTooShortError is CheckNewPassword's refusal of a password under
// Min characters.
type PasswordTooShortError struct{ Min int }

func (e *PasswordTooShortError) Error() string {
	return fmt.Sprintf("password is too short: at least %d characters", e.Min)
}

// ErrPasswordCommon is CheckNewPassword's refusal of a password on the
// list of the most common ones, or equal to the username.
var ErrPasswordCommon = errors.New("password is one of the most common passwords, or the username: choose another")

//go:embed common-passwords.txt
var commonPasswordList string

// isCommonPassword reports whether lower, a lower-case password, is on
// commonPasswordList. A scan of a hundred lines, run only when a password
// is set, needs no set kept in memory.
func isCommonPassword(lower string) bool {
	for _, line := range strings.Split(commonPasswordList, "\n") {
		if !strings.HasPrefix(line, "#") && strings.ToLower(strings.TrimSpace(line)) == lower {
			return true
		}
	}
	return false
}

// CheckNewPassword applies the password policy to a password being set for
// username (NIST SP 800-63B §3.1.1.2): at least minLen characters (Unicode
// code points, as NIST counts), not one of the most common passwords nor
// the username, ignoring case. There is no rule on character classes and
// no maximum but bcrypt's 72 bytes, which store.HashPassword enforces.
// The policy is for passwords being chosen; logins are checked against
// whatever hash is stored.
func CheckNewPassword(password, username string, minLen int) error {
	if utf8.RuneCountInString(password) < minLen {
		return &PasswordTooShortError{Min: minLen}
	}
	lower := strings.ToLower(password)
	if isCommonPassword(lower) || lower == strings.ToLower(username) {
		return ErrPasswordCommon
	}
	return nil
}
