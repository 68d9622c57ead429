package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"authd/server"
	"authd/store"
)

func TestLoginSetsHttpOnlyCookies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.login()

	if r.body != "" {
		t.Errorf("got body %q, want none", r.body)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("got Cache-Control %q, want no-store", got)
	}
	// Exact attributes, with the token values masked.
	want := []string{
		"access_token=JWT; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax",
		"refresh_token=RT; Path=/rpc/refresh_token; Max-Age=2592000; HttpOnly; SameSite=Strict",
		"refresh_token=RT; Path=/rpc/logout; Max-Age=2592000; HttpOnly; SameSite=Strict",
	}
	got := maskCookies(r.setCookies())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got Set-Cookie\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	refresh := refreshValue(t, r)
	if other := r.cookie("refresh_token", "/rpc/logout").Value; other != refresh {
		t.Errorf("got logout-path refresh cookie %q, want the same token %q", other, refresh)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(refresh) {
		t.Errorf("got refresh token %q, want 43 base64url characters (256 bits)", refresh)
	}
	// Stored as a hash, never as itself.
	sum := sha256.Sum256([]byte(refresh))
	if n := e.count(`select count(*) from auth.refresh_token where token_hash = $1`, sum[:]); n != 1 {
		t.Errorf("got %d rows with the token's SHA-256, want 1", n)
	}
	if n := e.count(`select count(*) from auth.refresh_token t where position(convert_to($1, 'utf8') in t.token_hash) > 0
		or t::text like '%' || $1 || '%'`, refresh); n != 0 {
		t.Errorf("the plaintext refresh token is stored in %d rows", n)
	}
}

func maskCookies(cookies []string) []string {
	out := make([]string, len(cookies))
	re := regexp.MustCompile(`^(__Host-access_token|access_token|refresh_token)=[^;]+`)
	for i, c := range cookies {
		out[i] = re.ReplaceAllStringFunc(c, func(s string) string {
			if name, _, _ := strings.Cut(s, "="); name != "refresh_token" {
				return name + "=JWT"
			}
			return "refresh_token=RT"
		})
	}
	return out
}

func TestAccessTokenClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := time.Now().Unix()
	r := e.login()
	c := verifyJWT(t, accessValue(t, r))

	for k, want := range map[string]string{"role": e.role, "username": testUser, "sub": testUser} {
		if got, _ := c[k].(string); got != want {
			t.Errorf("got claim %s = %q, want %q", k, got, want)
		}
	}
	iat, _ := c["iat"].(float64)
	exp, _ := c["exp"].(float64)
	if int64(iat) < before-1 || int64(iat) > time.Now().Unix()+1 {
		t.Errorf("got iat %v, want about now (%d)", iat, before)
	}
	if exp-iat != 3600 {
		t.Errorf("got exp-iat %v, want 3600", exp-iat)
	}
	if jti, _ := c["jti"].(string); len(jti) < 16 {
		t.Errorf("got jti %q, want a unique id", jti)
	}
	sid, _ := c["sid"].(string)
	if n := e.count(`select count(*) from auth.session where id::text = $1 and username = $2`, sid, testUser); n != 1 {
		t.Errorf("sid %q names %d sessions of %s, want 1", sid, n, testUser)
	}
	if _, ok := c["aud"]; ok {
		t.Errorf("got aud %v with no audience configured", c["aud"])
	}
	// Two logins: two sessions, two token ids.
	c2 := verifyJWT(t, accessValue(t, e.login()))
	if c2["jti"] == c["jti"] || c2["sid"] == c["sid"] {
		t.Errorf("two logins share jti or sid: %v / %v", c, c2)
	}
}

func TestAccessTokenAudience(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAudience("postgrest"))
	c := verifyJWT(t, accessValue(t, e.login()))
	aud, _ := c.GetAudience()
	if len(aud) != 1 || aud[0] != "postgrest" {
		t.Errorf("got aud %v, want [postgrest]", aud)
	}
}

func TestLoginBodyFormats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name   string
		header http.Header
		body   string
	}{
		{"json", http.Header{"Content-Type": {"application/json"}}, loginBody(testUser, testPassword)},
		{"json with charset", http.Header{"Content-Type": {"application/json; charset=utf-8"}}, loginBody(testUser, testPassword)},
		{"no content type is json", http.Header{}, loginBody(testUser, testPassword)},
		{"html form", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "user_=alice&pass=correct+horse+battery+staple"},
		{"same-origin form", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"same-origin"}}, "user_=alice&pass=correct%20horse%20battery%20staple"},
		{"profile auth", http.Header{"Content-Profile": {"auth"}}, loginBody(testUser, testPassword)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post("/rpc/login", tc.header, tc.body)
			wantStatus(t, r, http.StatusNoContent)
			verifyJWT(t, accessValue(t, r))
		})
	}
}

func TestLoginCrossSiteFormRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.post("/rpc/login", http.Header{
		"Content-Type":   {"application/x-www-form-urlencoded"},
		"Sec-Fetch-Site": {"cross-site"},
	}, "user_=alice&pass=correct+horse+battery+staple")
	wantStatus(t, r, http.StatusForbidden)
	if len(r.cookies) != 0 {
		t.Errorf("got cookies %q on a refused login", r.setCookies())
	}
	if n := e.count(`select count(*) from auth.session`); n != 0 {
		t.Errorf("got %d sessions after a refused login, want 0", n)
	}
}

func TestLoginRepresentation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := jsonHeader()
	h.Set("Prefer", "return=representation")
	r := e.post("/rpc/login", h, loginBody(testUser, testPassword))
	wantStatus(t, r, http.StatusOK)
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got, want := strings.Join(keys, ","), "access_token,expires_in,refresh_token,token_type"; got != want {
		t.Errorf("got keys %q, want %q", got, want)
	}
	if body["token_type"] != "bearer" || body["expires_in"] != float64(3600) {
		t.Errorf("got token_type %v expires_in %v, want bearer 3600", body["token_type"], body["expires_in"])
	}
	if body["access_token"] != accessValue(t, r) || body["refresh_token"] != refreshValue(t, r) {
		t.Errorf("body tokens differ from the cookies")
	}
	verifyJWT(t, body["access_token"].(string))
	if got := r.header.Get("Preference-Applied"); got != "return=representation" {
		t.Errorf("got Preference-Applied %q", got)
	}
}

const invalidLoginBody = `{"code":"PT401","details":null,"hint":null,"message":"Invalid user or password"}`

// wantInvalidLogin checks that r is a failed login's answer, the same
// for every reason a login fails.
func wantInvalidLogin(t testing.TB, r response) {
	t.Helper()
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, invalidLoginBody)
	if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("got WWW-Authenticate %q, want Bearer", got)
	}
	if len(r.cookies) != 0 {
		t.Errorf("got cookies on a failed login: %q", r.setCookies())
	}
}

func TestLoginFailureIsTheSameForUnknownUserAndWrongPassword(t *testing.T) {
	t.Parallel()
	// Real cost, so that skipping bcrypt for an unknown user would show.
	e := newEnv(t, withCost(10))
	hash, err := store.HashPassword(testPassword, 10)
	if err != nil {
		t.Fatal(err)
	}
	e.exec(`update auth.user set password_hash = $1`, hash)

	median := func(user, pass string) time.Duration {
		var ds []time.Duration
		for range 5 {
			r := e.post("/rpc/login", jsonHeader(), loginBody(user, pass))
			wantInvalidLogin(t, r)
			ds = append(ds, r.elapsed)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	// compares counts the logins that took a bcrypt slot: each must run
	// one compare, whether or not the user exists.
	compares := func() float64 { return e.metric("authd_bcrypt_wait_seconds_count") }
	before := compares()
	wrong := median(testUser, "wrong password")
	afterWrong := compares()
	unknown := median("nobody-here", "wrong password")
	afterUnknown := compares()
	if got, want := afterUnknown-afterWrong, afterWrong-before; got != want || want != 5 {
		t.Errorf("bcrypt compares: %v for 5 unknown-user logins, %v for 5 wrong passwords; want 5 each", got, want)
	}
	// Loose, so that a busy machine cannot fail it: without a bcrypt
	// compare an unknown user answers in well under a millisecond, against
	// tens of milliseconds at cost 10 (hundreds under -race).
	if unknown < wrong/5 {
		t.Errorf("unknown user answered in %s, wrong password in %s: the difference tells who exists", unknown, wrong)
	}
	if n := e.count(`select count(*) from auth.session`); n != 0 {
		t.Errorf("got %d sessions after failed logins, want 0", n)
	}
}

// TestLoginFailureTimeDoesNotRevealCheapHashes: a user whose hash is
// cheaper than AUTHD_BCRYPT_COST (as SuperStack's cost-6 ones are, until
// their next login) answers a wrong password no faster than an unknown
// user: a cost-4 compare alone is 16 times faster than cost 8.
func TestLoginFailureTimeDoesNotRevealCheapHashes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withCost(8)) // testUser's hash is cost 4 (testCost)
	fastest := func(user string) time.Duration {
		var best time.Duration
		for i := range 3 {
			r := e.post("/rpc/login", jsonHeader(), loginBody(user, "wrong password"))
			wantInvalidLogin(t, r)
			if i == 0 || r.elapsed < best {
				best = r.elapsed
			}
		}
		return best
	}
	unknown := fastest("nobody-here")
	cheap := fastest(testUser)
	t.Logf("wrong password: unknown user %s, cost-4 user %s (configured cost 8)", unknown, cheap)
	// Loose (5x), so that a busy machine cannot fail it.
	if cheap < unknown/5 {
		t.Errorf("a cost-4 user answered a wrong password in %s, an unknown user in %s: the difference points the user out", cheap, unknown)
	}
}

func TestLoginPasswordOverBcryptLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pw72 := strings.Repeat("p", 72)
	e.addUser("long72", pw72, e.role)
	wantStatus(t, e.post("/rpc/login", jsonHeader(), loginBody("long72", pw72)), http.StatusNoContent)
	// bcrypt would compare only the first 72 bytes and let this in.
	r := e.post("/rpc/login", jsonHeader(), loginBody("long72", pw72+"extra"))
	wantStatus(t, r, http.StatusUnauthorized)
	wantBody(t, r, invalidLoginBody)
}

func TestLoginUpgradesWeakHash(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withCost(6))
	// A cost-4 hash, as SuperStack's cost-6 ones are below authd's 10.
	var before string
	if err := e.db.Pool().QueryRow(context.Background(), `select password_hash from auth.user where username = $1`, testUser).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(before, "$2a$04$") {
		t.Fatalf("got hash %q, want a cost-4 hash to start with", before)
	}
	e.login()
	u, err := e.db.User(context.Background(), testUser)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.PasswordHash, "$2a$06$") {
		t.Errorf("got hash %q after login, want cost 6", u.PasswordHash)
	}
	if !store.CheckPassword(u.PasswordHash, testPassword) {
		t.Errorf("upgraded hash does not match the password")
	}
	e.login() // still logs in
}

func TestLoginRoleDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	refresh := refreshValue(t, e.login())
	e.exec(`drop role ` + e.role)

	r := e.post("/rpc/login", jsonHeader(), loginBody(testUser, testPassword))
	wantStatus(t, r, http.StatusForbidden)
	wantBody(t, r, `{"code":"PT403","details":null,"hint":"The user's database role was dropped; an administrator must recreate it or change the user's role.","message":"role \"`+e.role+`\" does not exist"}`)
	if len(r.cookies) != 0 {
		t.Errorf("got cookies %q for a user without a role", r.setCookies())
	}

	r = e.refreshWith(refresh)
	wantStatus(t, r, http.StatusForbidden)
	if len(r.cookies) != 0 {
		t.Errorf("refresh gave cookies %q for a user without a role", r.setCookies())
	}
	// Nothing was spent: with the role back, the same token works.
	e.exec(`create role ` + e.role)
	wantStatus(t, e.refreshWith(refresh), http.StatusNoContent)
}

func TestCookieSettings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAccessTTL(15*time.Minute), withCookie(server.CookieConfig{
		Secure: true, SameSite: http.SameSiteStrictMode, RefreshSameSite: http.SameSiteStrictMode, Domain: "example.com",
	}))
	want := []string{
		"access_token=JWT; Path=/; Domain=example.com; Max-Age=900; HttpOnly; Secure; SameSite=Strict",
		"refresh_token=RT; Path=/rpc/refresh_token; Domain=example.com; Max-Age=2592000; HttpOnly; Secure; SameSite=Strict",
		"refresh_token=RT; Path=/rpc/logout; Domain=example.com; Max-Age=2592000; HttpOnly; Secure; SameSite=Strict",
	}
	got := maskCookies(e.login().setCookies())
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got Set-Cookie\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLoginFloodIsShed: bcrypt work is bounded to the slots; logins that
// wait past their deadline get 503 + Retry-After, never a hang or a 500.
func TestLoginFloodIsShed(t *testing.T) {
	t.Parallel()
	// Cost 10: a compare takes 65 ms of a core, over 600 ms in a race
	// build; with one slot, twelve of them overrun the 150 ms deadline on
	// any machine, and the 10 s no-hang bound is still far away.
	// A queue that holds them all: here the deadline sheds, not the queue.
	e := newEnv(t, withCost(10), withRequestTimeout(150*time.Millisecond), withLoginQueue(1, 100))
	const n = 12
	shed := 0
	for _, r := range e.sendLogins(n) {
		switch r.status {
		case http.StatusUnauthorized:
		case http.StatusServiceUnavailable:
			shed++
			wantBody(t, r, `{"code":"PT503","details":null,"hint":null,"message":"Request timed out"}`)
			if r.header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		default:
			t.Errorf("got status %d (%s), want 401 or 503", r.status, r.body)
		}
		if r.elapsed > 10*time.Second {
			t.Errorf("a login took %s", r.elapsed)
		}
	}
	if shed == 0 {
		t.Errorf("no login of %d concurrent ones at cost 10 on one slot was shed with a 150 ms deadline", n)
	}
}

// TestLoginStormIsShedFast: logins wait at most LoginQueueWait for a bcrypt
// slot; the rest get 503 quickly rather than queueing for the whole
// request deadline.
func TestLoginStormIsShedFast(t *testing.T) {
	t.Parallel()
	// One slot whatever the CPUs, cost 10 (65 ms a compare, over 600 ms in
	// a race build): of twelve logins at once, most wait out the 100 ms.
	// A queue that holds them all: here the wait sheds, not the queue.
	e := newEnv(t, withCost(10), withLoginQueueWait(100*time.Millisecond), withLoginQueue(1, 100),
		withRequestTimeout(time.Minute))
	// Shed after the bounded wait (100 ms, about a second on a loaded
	// machine), not after the one-minute deadline.
	refused, shed := e.countLogins(e.sendLogins(12), 10*time.Second)
	if shed == 0 {
		t.Errorf("no login was shed (%d answered 401)", refused)
	}
	// Each is in the audit log, shed or failed as answered.
	outcomes := map[string]int{}
	for _, ev := range e.auditRows() {
		outcomes[ev.Event+" "+ev.Outcome]++
	}
	if outcomes["login shed"] != shed || outcomes["login failed"] != refused {
		t.Errorf("audit log: got %v, want %d login shed and %d login failed", outcomes, shed, refused)
	}
}

// TestAnsweredLoginHoldsNoSlot: a login that has been answered holds no
// bcrypt slot, so a client that logs in again as soon as it is answered
// never meets its own finished compare at the gate (with one slot and one
// place in the queue, that would have it shed). The slot is freed by the
// compare's thread after the compare; the answer waits for that.
func TestAnsweredLoginHoldsNoSlot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLoginQueue(1, 1), withLoginQueueWait(time.Minute), withRequestTimeout(2*time.Minute))
	for i := range 5 {
		r := e.post("/rpc/login", jsonHeader(), loginBody("nobody-here", "wrong password"))
		wantStatus(t, r, http.StatusUnauthorized)
		if got := e.metric("authd_bcrypt_running"); got != 0 {
			t.Fatalf("login %d answered with %v compares still running, want 0", i, got)
		}
	}
}

// TestLoginQueueFullIsShedAtOnce: once LoginQueue logins wait for the
// bcrypt slots, one more is shed with 503 at once — not after the
// (here very long) bounded wait — while the queued ones are all served.
func TestLoginQueueFullIsShedAtOnce(t *testing.T) {
	t.Parallel()
	// One slot and one place in the queue. At cost 11 a compare holds the
	// slot for 150 ms, over a second in a race build, against milliseconds
	// for a login to reach the gate. The wait and the request deadline are
	// far beyond anything here: only a full queue can shed a login.
	e := newEnv(t, withCost(11), withLoginQueue(1, 1), withLoginQueueWait(time.Minute),
		withRequestTimeout(2*time.Minute))
	results := make(chan response, 64)
	send := func() {
		go func() { results <- e.post("/rpc/login", jsonHeader(), loginBody("nobody-here", "wrong password")) }()
	}
	// Fill the slot and the queue: keep two logins in flight until
	// /metrics shows one waiting.
	var before []response
	sent := 0
	deadline := time.Now().Add(time.Minute)
	for e.metric("authd_bcrypt_queue_depth") < 1 {
		for len(results) > 0 {
			before = append(before, <-results)
		}
		for ; sent-len(before) < 2; sent++ {
			send()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login waited for the slot within a minute (%d sent)", sent)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The slot is busy and the queue is full: these are shed on arrival,
	// unless compares end while they are on their way (one each at most).
	const probes = 3
	for range probes {
		send()
	}
	after := make([]response, 0, sent+probes)
	for range sent + probes - len(before) {
		after = append(after, <-results)
	}
	// Everything sent before the queue was full was served.
	refused, shed := e.countLogins(append(before, after...), 10*time.Second)
	if refused < sent || shed < 1 {
		t.Errorf("got %d answered 401 and %d shed, want the %d logins sent before the queue was full answered and at least 1 of %d more shed",
			refused, shed, sent, probes)
	}
}

// TestLoginBurstIsServed: a burst of logins that fills the bcrypt slot
// and the default queue, sized from the compare time measured at
// start-up, is queued and served, not shed.
func TestLoginBurstIsServed(t *testing.T) {
	t.Parallel()
	// A wait and deadline far beyond the burst: here only the queue could
	// shed.
	e := newEnv(t, withLoginQueue(1, 0), withLoginQueueWait(time.Minute), withRequestTimeout(2*time.Minute))
	// The limit depends on this machine's speed; at least 4 per slot.
	limit := int(e.metric("authd_bcrypt_queue_limit"))
	if limit < 4 {
		t.Fatalf("got a default login queue of %d for one slot, want at least 4", limit)
	}
	n := 1 + min(limit, 100)
	refused, shed := e.countLogins(e.sendLogins(n), 0)
	if refused != n || shed != 0 {
		t.Errorf("%d logins at once at cost %d (one slot, queue %d): %d answered 401 and %d shed, want all %d answered",
			n, testCost, limit, refused, shed, n)
	}
}

// sendLogins sends n logins at once for an unknown user (so the dummy
// hash, at the server's cost, is compared) and returns the answers.
func (e *env) sendLogins(n int) []response {
	e.t.Helper()
	results := make(chan response, n)
	for range n {
		go func() { results <- e.post("/rpc/login", jsonHeader(), loginBody("nobody-here", "wrong password")) }()
	}
	out := make([]response, 0, n)
	for range n {
		out = append(out, <-results)
	}
	return out
}

// countLogins counts the 401s and the 503s among answers to logins, each
// 503 of which must be the busy answer given within shedWithin.
func (e *env) countLogins(answers []response, shedWithin time.Duration) (refused, shed int) {
	e.t.Helper()
	var slowest time.Duration
	defer func() {
		if shed > 0 {
			e.t.Logf("%d shed, the slowest after %s", shed, slowest)
		}
	}()
	for _, r := range answers {
		switch r.status {
		case http.StatusUnauthorized:
			refused++
		case http.StatusServiceUnavailable:
			shed++
			wantBody(e.t, r, `{"code":"PT503","details":null,"hint":null,"message":"Too many logins at once; try again shortly"}`)
			if r.header.Get("Retry-After") != "1" {
				e.t.Errorf("got Retry-After %q, want 1", r.header.Get("Retry-After"))
			}
			slowest = max(slowest, r.elapsed)
			if r.elapsed > shedWithin {
				e.t.Errorf("a shed login took %s, want at most %s", r.elapsed, shedWithin)
			}
		default:
			e.t.Errorf("got status %d (%s)", r.status, r.body)
		}
	}
	return refused, shed
}
