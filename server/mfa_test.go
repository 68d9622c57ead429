package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp/totp"

	"authd/identity"
	"authd/server"
)

const wrongCodeMsg = `{"code":"PT401","details":null,"hint":"Enter the current code of your authenticator app; each code works once.","message":"Invalid MFA code"}`

func withMFAPendingTTL(d time.Duration) option {
	return func(_ *server.Config, ic *identity.Config, _ *envOpts) { ic.MFAPendingTTL = d }
}

type enrollment struct {
	FactorID string `json:"factor_id"`
	URI      string `json:"uri"`
	Secret   string `json:"secret"`
	QRCode   string `json:"qr_code"`
}

// enroll calls /rpc/mfa_enroll with access token tok.
func (e *env) enroll(tok string) enrollment {
	e.t.Helper()
	r := e.post("/rpc/mfa_enroll", selfHeader(tok), "")
	wantStatus(e.t, r, http.StatusOK)
	var en enrollment
	if err := json.Unmarshal([]byte(r.body), &en); err != nil {
		e.t.Fatalf("enroll body %s: %v", r.body, err)
	}
	return en
}

// code is secret's TOTP code at at.
func code(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func codeBody(c string) string { return `{"code": "` + c + `"}` }

// enrollMFA gives testUser an active factor, from a session of their
// own, and returns its secret and recovery codes.
func (e *env) enrollMFA(clk *clock) (secret string, recovery []string) {
	e.t.Helper()
	tok := accessValue(e.t, e.login())
	en := e.enroll(tok)
	r := e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(code(e.t, en.Secret, clk.now())))
	wantStatus(e.t, r, http.StatusOK)
	var body struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		e.t.Fatalf("verify body %s: %v", r.body, err)
	}
	return en.Secret, body.RecoveryCodes
}

// mfaLogin logs testUser, who has a factor, in: 200 {"mfa_required"}.
func (e *env) mfaLogin() response {
	e.t.Helper()
	r := e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
	wantStatus(e.t, r, http.StatusOK)
	wantBody(e.t, r, `{"mfa_required":true,"aal":"aal1"}`)
	return r
}

// wantAssurance checks access token tok's aal and amr claims, and its
// life (exp - iat).
func wantAssurance(t *testing.T, tok, aal string, amr []string, life time.Duration) {
	t.Helper()
	c := verifyJWT(t, tok)
	var gotAMR []string
	for _, m := range c["amr"].([]any) {
		gotAMR = append(gotAMR, m.(string))
	}
	if c["aal"] != aal || !reflect.DeepEqual(gotAMR, amr) {
		t.Errorf("got aal %v amr %v, want %s %v", c["aal"], gotAMR, aal, amr)
	}
	if got := time.Duration(c["exp"].(float64)-c["iat"].(float64)) * time.Second; got != life {
		t.Errorf("got a token life of %s, want %s", got, life)
	}
}

// TestMFAEnrollAndActivate: enrolling answers an otpauth URI, its secret
// and a QR code PNG; a pending factor can be replaced and guards nothing;
// the first right code activates it, answers ten recovery codes (stored
// hashed) and steps the session up to aal2; enrolling again is 409.
func TestMFAEnrollAndActivate(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	in := e.login()
	tok := accessValue(t, in)
	wantAssurance(t, tok, "aal1", []string{"pwd"}, time.Hour)

	first := e.enroll(tok)
	en := e.enroll(tok) // replaces the pending factor
	if en.Secret == first.Secret || en.FactorID == first.FactorID {
		t.Errorf("a second enrollment kept the pending secret or id")
	}
	if _, err := uuid.Parse(en.FactorID); err != nil {
		t.Errorf("factor_id %q: %v", en.FactorID, err)
	}
	u, err := url.Parse(en.URI)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/authd:"+testUser ||
		u.Query().Get("secret") != en.Secret || u.Query().Get("issuer") != "authd" {
		t.Errorf("uri %q: want otpauth://totp/authd:%s?secret=%s&issuer=authd", en.URI, testUser, en.Secret)
	}
	b64, ok := strings.CutPrefix(en.QRCode, "data:image/png;base64,")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil {
		t.Fatalf("qr_code is not a base64 PNG data URI: %.40q", en.QRCode)
	}
	if _, err := png.Decode(bytes.NewReader(raw)); err != nil {
		t.Errorf("qr_code is not a PNG: %v", err)
	}
	// Pending: a login is as before.
	e.login()
	if n := e.count(`select count(*) from auth.mfa_factor where verified_at is null`); n != 1 {
		t.Errorf("got %d pending factors, want 1", n)
	}

	r := e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(code(t, first.Secret, clk.now())))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, wrongCodeMsg)
	r = e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(code(t, en.Secret, clk.now())))
	wantStatus(t, r, http.StatusOK)
	var body struct {
		RecoveryCodes []string `json:"recovery_codes"`
		AccessToken   *string  `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.RecoveryCodes) != 10 || body.AccessToken != nil {
		t.Fatalf("got %s, want 10 recovery codes and no tokens (no Prefer)", r.body)
	}
	access := accessValue(t, r)
	wantAssurance(t, access, "aal2", []string{"pwd", "totp"}, time.Hour)
	if sessionOf(t, access) != sessionOf(t, tok) {
		t.Errorf("verify changed the session")
	}
	// The old refresh token of the session is replaced.
	wantStatus(t, e.refreshWith(refreshValue(t, in)), http.StatusUnauthorized)
	refreshed := e.refreshWith(refreshValue(t, r))
	wantStatus(t, refreshed, http.StatusNoContent)
	wantAssurance(t, accessValue(t, refreshed), "aal2", []string{"pwd", "totp"}, time.Hour)

	// Stored hashed: 32-byte digests, no plain code anywhere.
	if n := e.count(`select count(*) from auth.mfa_recovery_code where octet_length(code_hash) = 32 and used_at is null`); n != 10 {
		t.Errorf("got %d unspent 32-byte recovery code hashes, want 10", n)
	}
	for _, c := range body.RecoveryCodes {
		plain := strings.ReplaceAll(c, "-", "")
		if n := e.count(`select count(*) from auth.mfa_recovery_code
			where position(convert_to($1, 'UTF8') in code_hash) > 0 or encode(code_hash, 'escape') like '%' || $1 || '%'`, plain); n != 0 {
			t.Errorf("recovery code %s is stored in the clear", c)
		}
	}

	r = e.post("/rpc/mfa_enroll", selfHeader(access), "{}")
	wantStatus(t, r, http.StatusConflict)
	wantBody(t, r, `{"code":"PT409","details":null,"hint":"An administrator can remove the second factor (authd user mfa-reset) so that you can enroll again.","message":"MFA is already enrolled"}`)

	// /rpc/sessions tells the sessions' levels apart.
	r = e.post("/rpc/sessions", selfHeader(access), "")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `"aal":"aal2"`) || !strings.Contains(r.body, `"aal":"aal1"`) {
		t.Errorf("sessions %s: want an aal2 session and the aal1 ones", r.body)
	}

	events := map[string]int{}
	for _, ev := range e.auditRows() {
		if strings.HasPrefix(ev.Event, "mfa_") {
			events[auditLine(ev)]++
		}
	}
	want := map[string]int{
		`mfa_enroll ok user="alice" sid client=127.0.0.1 ua="Go-http-client/1.1" map[]`:                           2,
		`mfa_verify failed user="alice" sid client=127.0.0.1 ua="Go-http-client/1.1" map[reason:wrong_code]`:      1,
		`mfa_verify ok user="alice" sid client=127.0.0.1 ua="Go-http-client/1.1" map[activated:true method:totp]`: 1,
	}
	if !reflect.DeepEqual(events, want) {
		t.Errorf("audit rows:\n got %v\nwant %v", events, want)
	}
}

// TestMFALogin: a user with a factor logs in to an aal1 session with a
// short access token (200 mfa_required); a code steps it up to aal2, as a
// login answers; a code is accepted once, one step either side of now,
// and a recovery code once.
func TestMFALogin(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	secret, recovery := e.enrollMFA(clk)

	in := e.mfaLogin()
	tok := accessValue(t, in)
	wantAssurance(t, tok, "aal1", []string{"pwd"}, 5*time.Minute)
	if c := in.cookie("access_token", "/"); c.MaxAge != 300 {
		t.Errorf("access cookie Max-Age %d, want 300", c.MaxAge)
	}
	h := jsonHeader()
	h.Set("Prefer", "return=representation")
	r := e.post("/rpc/login", h, loginBody(testUser, testPassword))
	wantStatus(t, r, http.StatusOK)
	var rep map[string]any
	if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep["mfa_required"] != true || rep["aal"] != "aal1" || rep["access_token"] == nil || rep["expires_in"] != 300.0 {
		t.Errorf("login with Prefer: got %s, want mfa_required, aal and the tokens", r.body)
	}

	// The step of the activation's code was spent.
	r = e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(code(t, secret, clk.now())))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, wrongCodeMsg)
	clk.advance(30 * time.Second)
	now := code(t, secret, clk.now())
	r = e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(now))
	wantStatus(t, r, http.StatusNoContent)
	stepped := accessValue(t, r)
	wantAssurance(t, stepped, "aal2", []string{"pwd", "totp"}, time.Hour)
	// Replay, from another session.
	other := accessValue(t, e.mfaLogin())
	r = e.post("/rpc/mfa_verify", selfHeader(other), codeBody(now))
	wantStatus(t, r, http.StatusUnauthorized)

	// One step of skew either side, never two; never a step before the
	// last one accepted.
	clk.advance(90 * time.Second)
	wantStatus(t, e.post("/rpc/mfa_verify", selfHeader(other), codeBody(code(t, secret, clk.now().Add(60*time.Second)))), http.StatusUnauthorized)
	wantStatus(t, e.post("/rpc/mfa_verify", selfHeader(other), codeBody(code(t, secret, clk.now().Add(30*time.Second)))), http.StatusNoContent)
	other = accessValue(t, e.mfaLogin())
	wantStatus(t, e.post("/rpc/mfa_verify", selfHeader(other), codeBody(code(t, secret, clk.now()))), http.StatusUnauthorized)
	clk.advance(5 * time.Minute)
	wantStatus(t, e.post("/rpc/mfa_verify", selfHeader(other), codeBody(code(t, secret, clk.now().Add(-60*time.Second)))), http.StatusUnauthorized)
	h = selfHeader(other)
	h.Set("Prefer", "return=representation")
	r = e.post("/rpc/mfa_verify", h, codeBody(code(t, secret, clk.now().Add(-30*time.Second))))
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `"access_token"`) || strings.Contains(r.body, "recovery_codes") {
		t.Errorf("step-up with Prefer: got %s, want the tokens as a login answers", r.body)
	}

	// A recovery code, as typed (upper case, dashes or not), once.
	other = accessValue(t, e.mfaLogin())
	typed := strings.ToUpper(recovery[0])
	r = e.post("/rpc/mfa_verify", selfHeader(other), `{"recovery_code": "`+typed+`"}`)
	wantStatus(t, r, http.StatusNoContent)
	wantAssurance(t, accessValue(t, r), "aal2", []string{"pwd", "recovery"}, time.Hour)
	other = accessValue(t, e.mfaLogin())
	r = e.post("/rpc/mfa_verify", selfHeader(other), `{"recovery_code": "`+strings.ReplaceAll(recovery[0], "-", "")+`"}`)
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, wrongCodeMsg)
	if n := e.count(`select count(*) from auth.mfa_recovery_code where used_at is null`); n != 9 {
		t.Errorf("got %d unspent recovery codes, want 9", n)
	}
}

// TestMFAPendingSession: the session a login of a user with a factor
// opens lasts AUTHD_MFA_PENDING_TTL unless a code steps it up: its
// refreshes keep aal1 and short tokens, and end with it; a step-up gives
// it the session lifetime from its login.
func TestMFAPendingSession(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk), withMFAPendingTTL(2*time.Minute), withSessionLifetime(48*time.Hour))
	secret, _ := e.enrollMFA(clk)
	clk.advance(30 * time.Second)

	in := e.mfaLogin()
	sid := sessionOf(t, accessValue(t, in))
	life := func() time.Duration {
		var secs float64
		if err := e.db.Pool().QueryRow(e.t.Context(), `select extract(epoch from expires_at - created_at) from auth.session where id = $1`,
			sid).Scan(&secs); err != nil {
			t.Fatal(err)
		}
		return time.Duration(secs) * time.Second
	}
	if got := life(); got != 2*time.Minute {
		t.Errorf("pending session lives %s, want 2m", got)
	}
	r := e.refreshWith(refreshValue(t, in))
	wantStatus(t, r, http.StatusNoContent)
	wantAssurance(t, accessValue(t, r), "aal1", []string{"pwd"}, 2*time.Minute)
	if c := r.cookie("refresh_token", "/rpc/refresh_token"); c.MaxAge > 120 {
		t.Errorf("pending session's refresh cookie Max-Age %d, want at most 120", c.MaxAge)
	}
	// Past its pending time (moved back in the database, whose clock
	// decides session expiry), it cannot be refreshed.
	e.exec(`update auth.session set created_at = created_at - interval '3 minutes', expires_at = expires_at - interval '3 minutes' where id = $1`, sid)
	wantStatus(t, e.refreshWith(refreshValue(t, r)), http.StatusUnauthorized)

	// Stepped up in time, it lives the session lifetime from its login.
	in = e.mfaLogin()
	sid = sessionOf(t, accessValue(t, in))
	wantStatus(t, e.post("/rpc/mfa_verify", selfHeader(accessValue(t, in)), codeBody(code(t, secret, clk.now()))), http.StatusNoContent)
	if got := life(); got != 48*time.Hour {
		t.Errorf("stepped-up session lives %s, want 48h", got)
	}
}

// TestMFAThrottle: wrong codes count as failed logins of the user: past
// the limit, 429 with Retry-After, even for the right code.
func TestMFAThrottle(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk), withLoginLimits(3, 0))
	secret, _ := e.enrollMFA(clk)
	clk.advance(30 * time.Second)
	tok := accessValue(t, e.mfaLogin())
	bad := "000000"
	if code(t, secret, clk.now()) == bad {
		bad = "111111"
	}
	for range 3 {
		wantStatus(t, e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(bad)), http.StatusUnauthorized)
	}
	r := e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(code(t, secret, clk.now())))
	wantStatus(t, r, http.StatusTooManyRequests)
	if !strings.Contains(r.body, `"code":"PT429"`) || r.header.Get("Retry-After") == "" {
		t.Errorf("throttled: got %s, Retry-After %q", r.body, r.header.Get("Retry-After"))
	}
	// The failures drain as login failures do (a minute for 3).
	clk.advance(time.Minute)
	wantStatus(t, e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(code(t, secret, clk.now()))), http.StatusNoContent)
}

// TestMFAVerifyRefused: requests /rpc/mfa_verify refuses before any code
// is checked, in PostgREST's shape.
func TestMFAVerifyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := accessValue(t, e.login())
	for _, c := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"neither", `{}`, 400, `"message":"Give either code or recovery_code"`},
		{"both", `{"code":"123456","recovery_code":"abcd"}`, 400, `"message":"Give either code or recovery_code"`},
		{"not enrolled", `{"code":"123456"}`, 400, `"message":"MFA is not enrolled"`},
		{"unknown argument", `{"otp":"123456"}`, 404, `"code":"PGRST202"`},
		{"not json", `{"code":`, 400, `"code":"PGRST102"`},
	} {
		r := e.post("/rpc/mfa_verify", selfHeader(tok), c.body)
		if r.status != c.status || !strings.Contains(r.body, c.want) {
			t.Errorf("%s: got %d %s, want %d with %s", c.name, r.status, r.body, c.status, c.want)
		}
	}
	for _, path := range []string{"/rpc/mfa_verify", "/rpc/mfa_enroll"} {
		r := e.post(path, jsonHeader(), `{"code":"123456"}`)
		wantStatus(t, r, http.StatusUnauthorized)
	}
}

// TestMFAChangePasswordNeedsAAL2: a user with a second factor changes
// the password only from a session that presented it. The password alone
// (an aal1 session) is refused before anything changes — whoever stole
// it would otherwise lock the owner out — and the same request passes
// once the session steps up.
func TestMFAChangePasswordNeedsAAL2(t *testing.T) {
	t.Parallel()
	clk := newClock()
	e := newEnv(t, withClock(clk))
	secret, _ := e.enrollMFA(clk)
	clk.advance(30 * time.Second) // the activation's step is spent

	tok := accessValue(t, e.mfaLogin())
	change := `{"pass": "` + testPassword + `", "new_pass": "a brand new passphrase"}`
	r := e.post("/rpc/change_password", selfHeader(tok), change)
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, `{"code":"PT403","details":null,"hint":"Verify a code with /rpc/mfa_verify first","message":"This needs a session that presented the second factor"}`)
	// Nothing changed: the old password still logs in.
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword)), http.StatusOK)

	r = e.post("/rpc/mfa_verify", selfHeader(tok), codeBody(code(t, secret, clk.now())))
	wantStatus(t, r, http.StatusNoContent)
	wantStatus(t, e.post("/rpc/change_password", selfHeader(accessValue(t, r)), change), http.StatusNoContent)
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword)), http.StatusUnauthorized)
}
