package identity

import (
	"strings"
	"testing"
	"time"
)

// FuzzMFACode feeds arbitrary text to the code parsers of /rpc/mfa_verify
// and to the TOTP check: they must never panic; a TOTP code they accept
// is six ASCII digits, a recovery code 16 base32 characters in lower
// case, each a fixed point of its parser; and only a code the parser
// accepts can match a step.
func FuzzMFACode(f *testing.F) {
	for _, s := range []string{
		"123456", "123 456", " 12345 6 ", "12345", "1234567", "12345a", "١٢٣٤٥٦", "123456\x00",
		"abcd-efgh-ijkl-mnop", "ABCD EFGH IJKL MNOP", "abcdefghijklmnop", "abcd-efgh-ijkl-mno1",
		"abcd-efgh-ijkl-mnop-", "--------------------------------", "ａｂｃｄefghijklmnop", "\xff\xfe", "",
		strings.Repeat("2", 100),
	} {
		f.Add(s)
	}
	const secret = "JBSWY3DPEHPK3PXP"
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, s string) {
		if code, ok := ParseTOTPCode(s); ok {
			if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
				t.Fatalf("ParseTOTPCode(%q) = %q, want six ASCII digits", s, code)
			}
			if again, ok := ParseTOTPCode(code); !ok || again != code {
				t.Fatalf("ParseTOTPCode(%q) = %q, %v; want itself", code, again, ok)
			}
		} else if _, match := totpStep(secret, s, now); match {
			t.Fatalf("totpStep matched %q, which ParseTOTPCode refuses", s)
		}
		if code, ok := ParseRecoveryCode(s); ok {
			if len(code) != recoveryCodeLen || strings.Trim(code, "abcdefghijklmnopqrstuvwxyz234567") != "" {
				t.Fatalf("ParseRecoveryCode(%q) = %q, want 16 lower-case base32 characters", s, code)
			}
			if again, ok := ParseRecoveryCode(code); !ok || again != code {
				t.Fatalf("ParseRecoveryCode(%q) = %q, %v; want itself", code, again, ok)
			}
		}
	})
}

// TestRecoveryCodesParse: every recovery code made reads back, as shown
// and as typed in upper case without dashes, to the form that is hashed.
func TestRecoveryCodesParse(t *testing.T) {
	shown, hashes, err := newRecoveryCodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(shown) != RecoveryCodeCount || len(hashes) != RecoveryCodeCount {
		t.Fatalf("got %d codes, %d hashes; want %d", len(shown), len(hashes), RecoveryCodeCount)
	}
	for _, c := range shown {
		a, ok1 := ParseRecoveryCode(c)
		b, ok2 := ParseRecoveryCode(strings.ToUpper(strings.ReplaceAll(c, "-", "")))
		if !ok1 || !ok2 || a != b {
			t.Errorf("code %s reads as %q (%v) and %q (%v)", c, a, ok1, b, ok2)
		}
	}
}
