package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"authd/store"
	"authd/token"
)

// A second factor is a TOTP authenticator (RFC 6238: SHA-1, 6 digits, 30 s
// steps, what every authenticator app reads from an otpauth URI). A user
// enrolls one (EnrollMFA), proves it with a code (VerifyMFA), and from
// then on a login opens a session at aal1 that is short-lived
// (Config.MFAPendingTTL) until the session presents a code or a recovery
// code and steps up to aal2.

// DefaultMFAPendingTTL is how long a session of a user with a second
// factor has to present it, and the longest life of its aal1 access
// tokens, unless configured (AUTHD_MFA_PENDING_TTL).
const DefaultMFAPendingTTL = 5 * time.Minute

// DefaultMFAIssuer names authd in authenticator apps (the otpauth issuer)
// unless configured.
const DefaultMFAIssuer = "authd"

// The TOTP parameters: RFC 6238's defaults, the only ones some apps read.
const (
	totpPeriod = 30 // seconds a code stands for
	totpDigits = otp.DigitsSix
	// totpSkew is how many steps either side of now a code may be from:
	// one, for a phone's clock and the time a user takes to type.
	totpSkew = 1
)

// RecoveryCodeCount is how many recovery codes an activated factor gets.
const RecoveryCodeCount = 10

// recoveryCodeLen is a recovery code's length in base32 characters: 80
// random bits, shown as four groups of four.
const recoveryCodeLen = 16

// qrSize is the side of the enrollment QR code, in pixels.
const qrSize = 256

// Enrollment is a new pending factor, for the user's authenticator app:
// the otpauth URI, its secret (for typing in) and the URI as a QR code.
type Enrollment struct {
	FactorID uuid.UUID
	URI      string
	Secret   string
	QRPNG    []byte
}

// QRDataURI is the QR code as a data: URI, for an <img src>.
func (e Enrollment) QRDataURI() string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QRPNG)
}

// EnrollMFA makes a new TOTP secret for username and stores it as their
// pending factor, replacing a pending one; it guards nothing until
// VerifyMFA proves the user has it. Conflict when username has a verified
// factor: an administrator resets it (`authd user mfa-reset`).
func (c *Core) EnrollMFA(ctx context.Context, username string) (Enrollment, error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: c.cfg.MFAIssuer, AccountName: username,
		Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return Enrollment{}, Failure(fmt.Errorf("make TOTP secret: %w", err))
	}
	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return Enrollment{}, Failure(fmt.Errorf("draw TOTP QR code: %w", err))
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return Enrollment{}, Failure(fmt.Errorf("encode TOTP QR code: %w", err))
	}
	e := Enrollment{FactorID: uuid.New(), URI: key.URL(), Secret: key.Secret(), QRPNG: qr.Bytes()}
	err = c.db.EnrollMFA(ctx, username, e.FactorID, e.Secret)
	switch {
	case errors.Is(err, store.ErrMFAEnrolled):
		return Enrollment{}, &Error{
			Kind: Conflict, Code: "PT409", Message: "MFA is already enrolled",
			Hint: ptr("An administrator can remove the second factor (authd user mfa-reset) so that you can enroll again."),
		}
	case errors.Is(err, store.ErrNotFound):
		return Enrollment{}, errSessionEnded() // the user was deleted meanwhile
	case err != nil:
		return Enrollment{}, Failure(err)
	}
	return e, nil
}

// MFAProof is what a session presents to VerifyMFA: a TOTP code, or a
// recovery code — exactly one — as the client typed it.
type MFAProof struct {
	Code         string
	RecoveryCode string
}

// MFAVerified is what VerifyMFA did: the session's new grant (aal2), and,
// when the proof activated a pending factor, its recovery codes, shown to
// the user this once.
type MFAVerified struct {
	Grant         store.Grant
	Activated     bool
	RecoveryCodes []string
	// Method is "totp" or "recovery", for the audit log.
	Method string
}

// The reasons of a refused code (Error.Reason), for the log and audit.
const (
	ReasonWrongCode   = "wrong_code"
	ReasonReplayed    = "replayed_code"
	ReasonNotEnrolled = "not_enrolled"
)

// ParseTOTPCode reads a TOTP code as typed: six ASCII digits, spaces
// (some apps show "123 456") ignored. ok is false for anything else.
func ParseTOTPCode(s string) (code string, ok bool) {
	if len(s) > 32 {
		return "", false
	}
	code = strings.ReplaceAll(s, " ", "")
	if len(code) != int(totpDigits) {
		return "", false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return "", false
		}
	}
	return code, true
}

// ParseRecoveryCode reads a recovery code as typed: 16 base32 characters
// in any case, dashes and spaces ignored; the canonical form (lower case,
// no dashes) is what is hashed. ok is false for anything else.
func ParseRecoveryCode(s string) (code string, ok bool) {
	if len(s) > 64 {
		return "", false
	}
	code = strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(code) != recoveryCodeLen {
		return "", false
	}
	for i := 0; i < len(code); i++ {
		if !(code[i] >= 'a' && code[i] <= 'z' || code[i] >= '2' && code[i] <= '7') {
			return "", false
		}
	}
	return code, true
}

// VerifyMFA checks a second factor presented by session sessionID of
// username and steps the session up to aal2 with a new refresh token
// (hash refreshHash, valid for refreshTTL; a session waiting for its
// factor then ends lifetime after its login instead of its pending time).
//
//   - With a pending factor, a TOTP code activates it and makes its
//     RecoveryCodeCount recovery codes (stored hashed).
//   - With a verified factor, a TOTP code or an unspent recovery code
//     steps the session up.
//
// A code's time step is accepted once per factor, within one step of now
// either side. Attempts are throttled as logins are, and count as failed
// logins of the user and the client: a guesser who has the password gets
// no more tries at the code than at the password. Errors are *Error:
// BadInput for a request with neither or both proofs, or a user with no
// factor; Unauthorized (PT401) for a wrong, malformed or replayed code;
// Throttled; InvalidToken for a session ended meanwhile.
func (c *Core) VerifyMFA(ctx context.Context, username string, sessionID uuid.UUID, p MFAProof, client string,
	refreshHash []byte, refreshTTL, lifetime time.Duration) (MFAVerified, error) {
	if (p.Code == "") == (p.RecoveryCode == "") {
		return MFAVerified{}, badInput("Give either code or recovery_code",
			"code is the 6 digits your authenticator app shows; recovery_code one of the codes given at enrollment.")
	}
	now := c.cfg.Now()
	giveBack, err := c.reserveFailure(ctx, username, client, now)
	if err != nil {
		return MFAVerified{}, err
	}
	f, err := c.db.MFAFactorOf(ctx, username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		giveBack() // nothing was guessed
		return MFAVerified{}, &Error{
			Kind: BadInput, Code: "22023", Message: "MFA is not enrolled", Reason: ReasonNotEnrolled,
			Hint: ptr("Enroll a second factor with /rpc/mfa_enroll first."),
		}
	case err != nil:
		giveBack()
		return MFAVerified{}, Failure(err)
	}
	out := MFAVerified{Activated: !f.Verified}
	proof := store.MFAProof{
		Username: username, SessionID: sessionID, Factor: f,
		RefreshHash: refreshHash, RefreshTTL: refreshTTL, Lifetime: lifetime,
	}
	if p.RecoveryCode != "" {
		code, ok := ParseRecoveryCode(p.RecoveryCode)
		if !ok || !f.Verified { // recovery codes stand in for an active factor only
			return MFAVerified{}, errMFACode(ReasonWrongCode)
		}
		out.Method = token.AMRRecovery
		proof.RecoveryHash = token.HashRefresh(code)
	} else {
		code, ok := ParseTOTPCode(p.Code)
		step, match := int64(0), false
		if ok {
			step, match = totpStep(f.Secret, code, now)
		}
		if !match {
			return MFAVerified{}, errMFACode(ReasonWrongCode)
		}
		out.Method = token.AMRTOTP
		proof.Step = step
	}
	proof.AMR = []string{token.AMRPassword, out.Method}
	if out.Activated {
		if out.RecoveryCodes, proof.NewRecoveryHashes, err = newRecoveryCodes(); err != nil {
			giveBack()
			return MFAVerified{}, Failure(err)
		}
	}
	out.Grant, err = c.db.VerifyMFA(ctx, proof)
	switch {
	case errors.Is(err, store.ErrMFACodeRefused):
		return MFAVerified{}, errMFACode(ReasonReplayed)
	case errors.Is(err, store.ErrSessionEnded):
		giveBack()
		return MFAVerified{}, errSessionEnded()
	case err != nil:
		giveBack()
		return MFAVerified{}, Failure(err)
	}
	giveBack()
	return out, nil
}

// totpStep finds the time step, within totpSkew of now either side, whose
// code is code. Every candidate is computed and compared in constant
// time, so the answer's timing does not say which step matched.
func totpStep(secret, code string, now time.Time) (step int64, ok bool) {
	at := now.Unix() / totpPeriod
	opts := totp.ValidateOpts{Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1}
	for s := at - totpSkew; s <= at+totpSkew; s++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*totpPeriod, 0), opts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			step, ok = s, true
		}
	}
	return step, ok
}

// newRecoveryCodes makes RecoveryCodeCount recovery codes, shown as
// xxxx-xxxx-xxxx-xxxx, and the hashes to store (of the canonical form,
// ParseRecoveryCode's). A code is 80 random bits, so SHA-256 suffices, as
// for refresh tokens.
func newRecoveryCodes() (shown []string, hashes [][]byte, err error) {
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	for range RecoveryCodeCount {
		b := make([]byte, recoveryCodeLen*5/8)
		if _, err := rand.Read(b); err != nil {
			return nil, nil, fmt.Errorf("read random recovery code: %w", err)
		}
		code := strings.ToLower(enc.EncodeToString(b))
		shown = append(shown, code[0:4]+"-"+code[4:8]+"-"+code[8:12]+"-"+code[12:16])
		hashes = append(hashes, token.HashRefresh(code))
	}
	return shown, hashes, nil
}

// errMFACode refuses a wrong, malformed or replayed code, or a spent
// recovery code, in one message (as a wrong password is): reason is for
// the log and audit only.
func errMFACode(reason string) *Error {
	return &Error{Kind: Unauthorized, Code: "PT401", Message: "Invalid MFA code", Reason: reason,
		Hint: ptr("Enter the current code of your authenticator app; each code works once.")}
}

// SessionToken signs the access token of a session's grant, with the
// session's assurance (aal, amr). A session waiting for its second factor
// gets one that lives MFAPendingTTL at most. It returns the token and its
// life.
func (c *Core) SessionToken(g store.Grant) (string, time.Duration, error) {
	ttl := c.tokens.TTL()
	if g.MFAPending {
		ttl = min(ttl, c.cfg.MFAPendingTTL)
	}
	a := token.Assurance{AAL: g.AAL, AMR: g.AMR}
	if a.AAL == "" {
		a = token.PasswordOnly()
	}
	tok, _, err := c.tokens.IssueAs(g.Username, g.Role, g.SessionID.String(), ttl, a)
	if err != nil {
		return "", 0, Failure(err)
	}
	return tok, ttl, nil
}

// LoginSessionLifetime is the lifetime of the session a login of u opens:
// lifetime, or MFAPendingTTL if shorter when u has a second factor, which
// the session then waits for (store.StartSessionFrom's mfaPending).
func (c *Core) LoginSessionLifetime(u store.User, lifetime time.Duration) (time.Duration, bool) {
	if !u.MFA {
		return lifetime, false
	}
	return min(lifetime, c.cfg.MFAPendingTTL), true
}
