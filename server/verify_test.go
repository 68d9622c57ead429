package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"authd/token"
)

func (e *env) verify(method string, header http.Header) response {
	e.t.Helper()
	return do(e.t, nil, method, e.srv.URL+"/auth/verify", header, "")
}

func TestVerifyAcceptsCookieAndHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	access := accessValue(t, e.login())
	for _, tc := range []struct {
		name   string
		method string
		header http.Header
	}{
		{"cookie, GET", http.MethodGet, http.Header{"Cookie": {"access_token=" + access}}},
		{"bearer, GET", http.MethodGet, http.Header{"Authorization": {"Bearer " + access}}},
		{"lowercase scheme", http.MethodGet, http.Header{"Authorization": {"bearer " + access}}},
		{"original method POST", http.MethodPost, http.Header{"Cookie": {"access_token=" + access}, "X-Forwarded-Method": {"POST"}}},
		{"original method DELETE", http.MethodDelete, http.Header{"Authorization": {"Bearer " + access}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.verify(tc.method, tc.header)
			wantStatus(t, r, http.StatusOK)
			if got := r.header.Get("Authorization"); got != "Bearer "+access {
				t.Errorf("got Authorization %.40q…, want the presented token", got)
			}
			if got := r.header.Get("X-Auth-User"); got != testUser {
				t.Errorf("got X-Auth-User %q, want %q", got, testUser)
			}
			if got := r.header.Get("X-Auth-Role"); got != e.role {
				t.Errorf("got X-Auth-Role %q, want %q", got, e.role)
			}
			if r.body != "" {
				t.Errorf("got body %q, want none", r.body)
			}
		})
	}
	if got := do(t, nil, http.MethodGet, e.srv.URL+"/auth/health", nil, ""); got.status != http.StatusOK || got.body != `{"status":"ok"}` {
		t.Errorf("GET /auth/health: got %d %s", got.status, got.body)
	}
}

// TestVerifyHeaderWinsOverCookie: an explicit Authorization header is what
// the client chose; a cookie the browser holds does not override it.
func TestVerifyHeaderWinsOverCookie(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addUser("bobby", "bobby-password", e.role)
	alice := accessValue(t, e.login())
	bob := accessValue(t, e.post("/rpc/login", jsonHeader(), loginBody("bobby", "bobby-password")))

	r := e.verify(http.MethodGet, http.Header{"Authorization": {"Bearer " + bob}, "Cookie": {"access_token=" + alice}})
	wantStatus(t, r, http.StatusOK)
	if got := r.header.Get("X-Auth-User"); got != "bobby" {
		t.Errorf("got X-Auth-User %q, want the header's user bobby", got)
	}
	// A bad header is refused even with a good cookie: no silent fallback.
	r = e.verify(http.MethodGet, http.Header{"Authorization": {"Bearer x.y.z"}, "Cookie": {"access_token=" + alice}})
	wantStatus(t, r, http.StatusUnauthorized)
}

func TestVerifyRefusesHostileTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now()
	claims := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"role": e.role, "username": testUser, "sub": testUser, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims, header map[string]any) string {
		tok := jwt.NewWithClaims(m, c)
		for k, v := range header {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	good := sign(jwt.SigningMethodHS256, []byte(testSecret), claims(nil), nil)
	parts := strings.Split(good, ".")

	cases := []struct {
		name, token, code, message string
	}{
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil), nil),
			"PGRST301", "Wrong or unsupported encoding algorithm"},
		{"RS256", sign(jwt.SigningMethodRS256, rsaKey, claims(nil), nil),
			"PGRST301", "Wrong or unsupported encoding algorithm"},
		{"HS256 signed with a public key (algorithm confusion)", sign(jwt.SigningMethodHS256, pubPEM, claims(nil), nil),
			"PGRST301", "No suitable key or wrong key type"},
		{"wrong signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
			"PGRST301", "No suitable key or wrong key type"},
		{"claims changed after signing", parts[0] + "." + jwtPart(t, `{"role":"postgres","exp":9999999999}`) + "." + parts[2],
			"PGRST301", "No suitable key or wrong key type"},
		{"kid pointing elsewhere", sign(jwt.SigningMethodHS256, []byte(testSecret), claims(nil), map[string]any{"kid": "other-key"}),
			"PGRST301", "No suitable key or wrong key type"},
		{"expired beyond the 30 s leeway", sign(jwt.SigningMethodHS256, []byte(testSecret), claims(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()}), nil),
			"PGRST303", "JWT expired"},
		{"nbf in the future", sign(jwt.SigningMethodHS256, []byte(testSecret), claims(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()}), nil),
			"PGRST303", "JWT not yet valid"},
		{"iat in the future", sign(jwt.SigningMethodHS256, []byte(testSecret), claims(jwt.MapClaims{"iat": now.Add(time.Hour).Unix()}), nil),
			"PGRST303", "JWT issued at future"},
		{"no exp", sign(jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"role": e.role}, nil),
			"PGRST303", "JWT has no 'exp' claim"},
		{"no role", sign(jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "x", "exp": now.Add(time.Hour).Unix()}, nil),
			"PGRST303", "JWT has no role claim"},
		{"two parts", parts[0] + "." + parts[1], "PGRST301", "Expected 3 parts in JWT; got 2"},
		{"garbage in three parts", "a.b.c", "PGRST301", "JWT cryptographic operation failed"},
		{"50 kB token", strings.Repeat("a", 50<<10), "PGRST301", "JWT is larger than 8192 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, h := range []http.Header{
				{"Authorization": {"Bearer " + tc.token}},
				{"Cookie": {"access_token=" + tc.token}},
			} {
				r := e.verify(http.MethodGet, h)
				wantStatus(t, r, http.StatusUnauthorized)
				wantBody(t, r, invalidTokenBody(tc.code, tc.message, tc.message == "No suitable key or wrong key type"))
				want := `Bearer error="invalid_token", error_description="` + tc.message + `"`
				if got := r.header.Get("WWW-Authenticate"); got != want {
					t.Errorf("got WWW-Authenticate %q, want %q", got, want)
				}
				if r.header.Get("X-Auth-Role") != "" || r.header.Get("Authorization") != "" {
					t.Errorf("refusal carries identity headers: %v", r.header)
				}
			}
		})
	}
}

func TestVerifyWithoutCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		auth   string
	}{
		{"nothing", nil, `{"code":"PGRST302","details":null,"hint":null,"message":"Anonymous access is disabled"}`, "Bearer"},
		{"empty bearer", http.Header{"Authorization": {"Bearer "}},
			`{"code":"PGRST301","details":null,"hint":null,"message":"Empty JWT is sent in Authorization header"}`,
			`Bearer error="invalid_token", error_description="Empty JWT is sent in Authorization header"`},
		{"basic auth", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}},
			`{"code":"PGRST301","details":null,"hint":null,"message":"Authorization header is not a Bearer token"}`,
			`Bearer error="invalid_token", error_description="Authorization header is not a Bearer token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.verify(http.MethodGet, tc.header)
			wantStatus(t, r, http.StatusUnauthorized)
			wantBody(t, r, tc.body)
			if got := r.header.Get("WWW-Authenticate"); got != tc.auth {
				t.Errorf("got WWW-Authenticate %q, want %q", got, tc.auth)
			}
		})
	}
}

func TestVerifyChecksAudience(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAudience("postgrest"))
	good := accessValue(t, e.login())
	wantStatus(t, e.verify(http.MethodGet, http.Header{"Authorization": {"Bearer " + good}}), http.StatusOK)
	other, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"role": e.role, "aud": "billing", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(testSecret))
	r := e.verify(http.MethodGet, http.Header{"Authorization": {"Bearer " + other}})
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, invalidTokenBody("PGRST303", "JWT not in audience", false))
}

func invalidTokenBody(code, message string, noKey bool) string {
	details := "null"
	if noKey {
		details = `"None of the keys was able to decode the JWT"`
	}
	return `{"code":"` + code + `","details":` + details + `,"hint":null,"message":"` + message + `"}`
}

func jwtPart(t *testing.T, s string) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// TestVerifyRefusesAmbiguousTokens: tokens signed with authd's real keys
// (the HMAC secret, and an ES256 key by its kid) whose only fault is one
// property golang-jwt lets through are refused, in PostgREST's shape.
func TestVerifyRefusesAmbiguousTokens(t *testing.T) {
	t.Parallel()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	es, err := token.NewKey("es-1", priv)
	if err != nil {
		t.Fatal(err)
	}
	const iss = "https://auth.example.com"
	e := newEnv(t, withKeys(newKeys(t, []byte(testSecret), es)), withIssuer(iss))
	now := time.Now().Unix()
	// craft signs the header and payload exactly as written.
	craft := func(t *testing.T, m jwt.SigningMethod, key any, header, payload string) string {
		t.Helper()
		signing := jwtPart(t, header) + "." + jwtPart(t, payload)
		sig, err := m.Sign(signing, key)
		if err != nil {
			t.Fatal(err)
		}
		return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	payload := func(members string) string {
		return fmt.Sprintf(`{"role":%q,"sub":%q,%s}`, e.role, testUser, members)
	}
	good := fmt.Sprintf(`"iss":%q,"iat":%d,"exp":%d`, iss, now, now+3600)
	const (
		issMsg  = "JWT not issued by this server (iss)"
		numMsg  = "The JWT 'exp', 'nbf' and 'iat' claims must be numbers"
		lifeMsg = "JWT lifetime is longer than this server allows"
		dupMsg  = "JWT header or payload has a duplicate key"
		critMsg = "JWT header has a 'crit' parameter, which is not supported"
	)
	cases := []struct {
		name, header, payload, code, message string
	}{
		{"well formed", `{"alg":"H","typ":"JWT"}`, payload(good), "", ""},
		{"no iss", `{"alg":"H"}`, payload(fmt.Sprintf(`"iat":%d,"exp":%d`, now, now+3600)), "PGRST303", issMsg},
		{"another iss", `{"alg":"H"}`, payload(fmt.Sprintf(`"iss":"https://other.example","iat":%d,"exp":%d`, now, now+3600)), "PGRST303", issMsg},
		{"exp as a string", `{"alg":"H"}`, payload(fmt.Sprintf(`"iss":%q,"iat":%d,"exp":"%d"`, iss, now, now+3600)), "PGRST303", numMsg},
		{"iat as a string", `{"alg":"H"}`, payload(fmt.Sprintf(`"iss":%q,"iat":"%d","exp":%d`, iss, now, now+3600)), "PGRST303", numMsg},
		{"nbf as a string", `{"alg":"H"}`, payload(good + fmt.Sprintf(`,"nbf":"%d"`, now)), "PGRST303", numMsg},
		{"lives a minute longer than authd's tokens", `{"alg":"H"}`, payload(fmt.Sprintf(`"iss":%q,"iat":%d,"exp":%d`, iss, now, now+3660)), "PGRST303", lifeMsg},
		{"no iat, expires in ten years", `{"alg":"H"}`, payload(fmt.Sprintf(`"iss":%q,"exp":%d`, iss, now+10*365*86400)), "PGRST303", lifeMsg},
		{"crit header", `{"alg":"H","crit":["exp"]}`, payload(good), "PGRST301", critMsg},
		{"empty crit header", `{"alg":"H","crit":[]}`, payload(good), "PGRST301", critMsg},
		{"role twice", `{"alg":"H"}`, payload(good + `,"role":"postgres"`), "PGRST301", dupMsg},
		{"exp twice", `{"alg":"H"}`, payload(good + fmt.Sprintf(`,"exp":%d`, now+60)), "PGRST301", dupMsg},
		{"nested key twice", `{"alg":"H"}`, payload(good + `,"resource_access":{"api":{"roles":["a"],"roles":["postgres"]}}`), "PGRST301", dupMsg},
		{"header key twice", `{"alg":"H","typ":"JWT","typ":"JWT"}`, payload(good), "PGRST301", dupMsg},
	}
	for _, signer := range []struct {
		alg, kid string
		m        jwt.SigningMethod
		key      any
	}{
		{"HS256", "", jwt.SigningMethodHS256, []byte(testSecret)},
		{"ES256", es.ID, jwt.SigningMethodES256, priv},
	} {
		for _, tc := range cases {
			t.Run(signer.alg+"/"+tc.name, func(t *testing.T) {
				header := strings.Replace(tc.header, `"alg":"H"`, `"alg":"`+signer.alg+`"`, 1)
				if signer.kid != "" {
					header = strings.Replace(header, "{", `{"kid":"`+signer.kid+`",`, 1)
				}
				raw := craft(t, signer.m, signer.key, header, tc.payload)
				r := e.verify(http.MethodGet, http.Header{"Authorization": {"Bearer " + raw}})
				if tc.code == "" {
					wantStatus(t, r, http.StatusOK)
					return
				}
				wantStatus(t, r, http.StatusUnauthorized)
				wantBody(t, r, invalidTokenBody(tc.code, tc.message, false))
			})
		}
	}
}
