package natsauth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"authd/identity"
	"authd/natsauth"
	"authd/natsauth/workload"
	"authd/store"
	"authd/store/storetest"
	"authd/token"
)

func TestMain(m *testing.M) {
	storetest.Main(m)
}

const (
	secret         = "a-test-secret-that-is-long-enough-0123456789"
	calloutPass    = "callout-password-for-tests"
	targetAccount  = "APP"
	serverConfPath = "../deploy/nats/server.conf"
)

// authority is what the callout asks of authd, as `authd nats-callout`
// assembles it: the identity rules and the store's grants.
type authority struct {
	*identity.Core
	*store.DB
}

// stack is a NATS server configured from deploy/nats/server.conf, with
// authd's callout answering it against a fresh database.
type stack struct {
	db      *store.DB
	url     string
	tokens  *token.Issuer
	svc     *natsauth.Service
	ns      *natsserver.Server
	log     *syncBuffer
	metrics *prometheus.Registry
	// account is where the callout places users: targetAccount, or in
	// operator mode the callout account's public key.
	account string
	// callout is how the callout logs in: one of the auth users.
	callout nats.Option
}

// stackOptions vary a stack from the default: config mode, no
// encryption, bcrypt cost 4.
type stackOptions struct {
	now        func() time.Time // the API's clock; nil is time.Now
	calloutNow func() time.Time // the permissions cache's clock; nil is time.Now
	xkey       bool             // encrypt requests and answers
	bcryptCost int
	operator   bool // operator mode (operator_test.go) instead of server.conf
	signingKey bool // operator mode: sign with a signing key of the account
	// workloads and workloadPerms admit workload tokens (workload_test.go).
	workloads     *workload.Verifier
	workloadPerms workload.Permissions
}

// newStack starts the callout and a NATS server that uses it.
func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	if o.bcryptCost == 0 {
		o.bcryptCost = 4
	}
	st := &stack{url: storetest.NewURL(t), log: &syncBuffer{}, metrics: prometheus.NewRegistry()}
	st.db = storetest.Open(t, st.url)
	tokens, err := token.NewIssuer([]byte(secret), time.Hour, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	st.tokens = tokens
	log := slog.New(slog.NewJSONHandler(st.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	core, err := identity.New(identity.Config{BcryptCost: o.bcryptCost, Metrics: st.metrics, Now: o.now}, st.db, tokens, log)
	if err != nil {
		t.Fatal(err)
	}

	var cfg natsauth.Config
	if o.operator {
		cfg, st.callout, st.ns = startOperatorNATS(t, o)
	} else {
		issuer, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		cfg = natsauth.Config{Issuer: issuer, Account: targetAccount}
		vars := map[string]string{"AUTHD_NATS_ISSUER": publicKey(t, issuer), "AUTHD_NATS_PASSWORD": calloutPass}
		if o.xkey {
			if cfg.XKey, err = nkeys.CreateCurveKeys(); err != nil {
				t.Fatal(err)
			}
			vars["AUTHD_NATS_XKEY"] = publicKey(t, cfg.XKey)
		}
		st.ns = startNATS(t, vars)
		st.callout = nats.UserInfo("authd", calloutPass)
	}
	cfg.Metrics, cfg.Now = st.metrics, o.calloutNow
	cfg.Workloads, cfg.WorkloadPermissions = o.workloads, o.workloadPerms
	st.account = cfg.Account

	st.svc, err = natsauth.New(authority{core, st.db}, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(st.ns.ClientURL(), st.callout, nats.Name("authd callout"))
	if err != nil {
		t.Fatalf("callout connect: %v", err)
	}
	t.Cleanup(nc.Close)
	if err := st.svc.Start(nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := st.svc.Stop(ctx); err != nil {
			t.Errorf("stop callout: %v", err)
		}
	})
	return st
}

// renderConf returns deploy/nats/server.conf with vars defined at its top,
// as an operator would set them in nats-server's environment. Without
// AUTHD_NATS_XKEY, the xkey line is dropped, as the file's comment says.
func renderConf(t testing.TB, vars map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(serverConfPath)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	if _, ok := vars["AUTHD_NATS_XKEY"]; !ok {
		const line = "    xkey: $AUTHD_NATS_XKEY\n"
		if strings.Count(conf, line) != 1 {
			t.Fatalf("%s: want one line %q", serverConfPath, line)
		}
		conf = strings.Replace(conf, line, "", 1)
	}
	var head strings.Builder
	for k, v := range vars {
		fmt.Fprintf(&head, "%s: %q\n", k, v)
	}
	return head.String() + conf
}

// startNATS runs nats-server in-process with the rendered example config,
// on a free port.
func startNATS(t testing.TB, vars map[string]string) *natsserver.Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.conf")
	if err := os.WriteFile(path, []byte(renderConf(t, vars)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", serverConfPath, err)
	}
	return runNATS(t, opts)
}

// testAuthTimeout is nats-server's auth timeout in tests, instead of the
// 2 s of production: a refusal the callout answered comes far below half
// of it even on a loaded machine, and one that timed out far above.
const testAuthTimeout = 10 * time.Second

// runNATS starts nats-server in-process with opts, on a free port.
func runNATS(t testing.TB, opts *natsserver.Options) *natsserver.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.AuthTimeout = testAuthTimeout.Seconds()
	opts.NoLog, opts.NoSigs = true, true
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

func publicKey(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// client is a NATS connection with its asynchronous errors (permission
// violations) collected.
type client struct {
	*nats.Conn
	errs chan error
}

// connect connects as a client would, failing fast: no reconnects.
func (st *stack) connect(t *testing.T, opts ...nats.Option) (*client, error) {
	t.Helper()
	c := &client{errs: make(chan error, 16)}
	opts = append([]nats.Option{
		nats.NoReconnect(),
		nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}),
	}, opts...)
	nc, err := nats.Connect(st.ns.ClientURL(), opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c, nil
}

func (st *stack) mustConnect(t *testing.T, opts ...nats.Option) *client {
	t.Helper()
	c, err := st.connect(t, opts...)
	if err != nil {
		t.Fatalf("connect: %v\ncallout log:\n%s", err, st.log)
	}
	return c
}

// refused checks that a client with opts cannot connect, and is told so
// promptly: an answer, not nats-server's auth timeout (testAuthTimeout).
func (st *stack) refused(t *testing.T, what string, opts ...nats.Option) {
	t.Helper()
	start := time.Now()
	c, err := st.connect(t, opts...)
	if err == nil {
		c.Close()
		t.Fatalf("%s: connected, want refused", what)
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("%s: got error %v, want %v", what, err, nats.ErrAuthorization)
	}
	if took := time.Since(start); took > testAuthTimeout/2 {
		t.Errorf("%s: refused after %s, want an answer well within the %s auth timeout", what, took, testAuthTimeout)
	}
}

// canPubSub checks that c can subscribe to subject and receive what it
// publishes there.
func (c *client) canPubSub(t *testing.T, subject string) {
	t.Helper()
	if !c.mayPublish(t, subject) {
		t.Fatalf("publish and subscribe on %q: permissions violation", subject)
	}
}

// mayPublish reports whether c may publish on subject, which it may
// subscribe to: its own message comes back, or the server reports a
// permissions violation, whichever comes first — no fixed wait for the
// violation, which is reported asynchronously.
func (c *client) mayPublish(t *testing.T, subject string) bool {
	t.Helper()
	c.pending() // forget earlier errors
	sub, err := c.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := c.Publish(subject, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		m, err := sub.NextMsg(10 * time.Millisecond)
		if err == nil {
			if string(m.Data) != "hello" {
				t.Fatalf("got %q on %q, want hello", m.Data, subject)
			}
			return true
		}
		if !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("subscription on %q: %v", subject, err)
		}
		for _, err := range c.pending() {
			if errors.Is(err, nats.ErrPermissionViolation) {
				return false
			}
		}
	}
	t.Fatalf("publish on %q: neither the message nor a permissions violation within a minute", subject)
	return false
}

// violation checks that doing something on subject gets the client a
// permissions violation from the server.
func (c *client) violation(t *testing.T, what, subject string, do func(string) error) {
	t.Helper()
	c.pending() // forget earlier errors
	if err := do(subject); err != nil {
		t.Fatalf("%s %q: %v", what, subject, err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("%s %q: flush: %v", what, subject, err)
	}
	select {
	case err := <-c.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subject) {
			t.Fatalf("%s %q: got async error %v, want a permissions violation for it", what, subject, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %q: no permissions violation", what, subject)
	}
}

func (c *client) pubViolation(t *testing.T, subject string) {
	t.Helper()
	c.violation(t, "publish", subject, func(s string) error { return c.Publish(s, []byte("x")) })
}

func (c *client) subViolation(t *testing.T, subject string) {
	t.Helper()
	c.violation(t, "subscribe", subject, func(s string) error { _, err := c.SubscribeSync(s); return err })
}

// pending drains and returns the asynchronous errors so far.
func (c *client) pending() []error {
	var errs []error
	for {
		select {
		case err := <-c.errs:
			errs = append(errs, err)
		default:
			return errs
		}
	}
}

// grant gives role NATS permissions in the store, as `authd nats grant`.
func (st *stack) grant(t testing.TB, role, kind string, subjects ...string) {
	t.Helper()
	for _, s := range subjects {
		if err := st.db.GrantNATS(context.Background(), role, kind, s); err != nil {
			t.Fatal(err)
		}
	}
}

// token issues an access token for user acting as role, adding the user
// with that role first if there is none: a token passes only while its
// user and role are live.
func (st *stack) token(t testing.TB, user, role string) string {
	t.Helper()
	st.ensureUser(t, user, role)
	tok, _, err := st.tokens.Issue(user, role, "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (st *stack) addUser(t testing.TB, name, password, role string) {
	t.Helper()
	h, err := store.HashPassword(password, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.AddUser(context.Background(), name, h, role); err != nil {
		t.Fatal(err)
	}
}

// ensureUser adds user with role unless there is a user of that name.
func (st *stack) ensureUser(t testing.TB, user, role string) {
	t.Helper()
	h, err := store.HashPassword("unused-password-0", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.AddUser(context.Background(), user, h, role); err != nil && !errors.Is(err, store.ErrUserExists) {
		t.Fatal(err)
	}
}

// newAPIKey creates an API key for role on a fresh plan.
func (st *stack) newAPIKey(t *testing.T, role string) (id, plain string) {
	t.Helper()
	plan := "plan_" + storetest.Unique()
	storetest.Exec(t, st.url, `insert into auth.plan (name, role, requests_per_minute) values ($1, $2, 600)`, plan, role)
	id, plain, hash, err := token.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.CreateAPIKey(context.Background(), id, hash, "", plan, nil); err != nil {
		t.Fatal(err)
	}
	return id, plain
}

// authorizedAs checks that nats-server holds c as user, in the account
// the callout places users in.
func (st *stack) authorizedAs(t *testing.T, c *client, user string) {
	t.Helper()
	cid, err := c.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	cz, err := st.ns.Connz(&natsserver.ConnzOptions{CID: cid, Username: true})
	if err != nil || len(cz.Conns) != 1 {
		t.Fatalf("connz for client %d: %v, %d connections", cid, err, len(cz.Conns))
	}
	if got, acc := cz.Conns[0].AuthorizedUser, cz.Conns[0].Account; got != user || acc != st.account {
		t.Errorf("nats-server has the client as user %q in account %q, want %s in %s", got, acc, user, st.account)
	}
}

func TestTokenClient(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSPubAllow, "orders.>", "public.*")
	st.grant(t, role, store.NATSPubDeny, "orders.secret")
	st.grant(t, role, store.NATSSubAllow, "orders.>", "public.*")

	c := st.mustConnect(t, nats.Token(st.token(t, "alice", role)))
	st.authorizedAs(t, c, "alice")
	c.canPubSub(t, "orders.new")
	c.canPubSub(t, "public.news")
	c.pubViolation(t, "orders.secret")
	c.pubViolation(t, "admin.shutdown")
	c.pubViolation(t, "public.news.deep")
	c.subViolation(t, "admin.>")
	if c.IsClosed() {
		t.Fatal("a permissions violation closed the connection")
	}
	// The token path touches no bcrypt and no table but the grants.
	if strings.Contains(st.log.String(), `"level":"ERROR"`) {
		t.Errorf("callout logged errors:\n%s", st.log)
	}
}

func TestRoleWithoutGrantsMayDoNothing(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSSubAllow, "only.this")

	// A user JWT without a publish allow list would allow every subject.
	c := st.mustConnect(t, nats.Token(st.token(t, "bob", role)))
	c.pubViolation(t, "only.this")
	c.pubViolation(t, "anything")

	none := st.mustConnect(t, nats.Token(st.token(t, "carol", storetest.NewRole(t))))
	none.pubViolation(t, "anything")
	none.subViolation(t, "anything")
	none.subViolation(t, ">")
}

func TestBadTokensAreRefused(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSPubAllow, ">")

	past, err := token.NewIssuer([]byte(secret), time.Hour, "", func() time.Time { return time.Now().Add(-2 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := past.Issue("alice", role, "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := token.NewIssuer([]byte(strings.Repeat("x", 40)), time.Hour, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := other.Issue("alice", role, "")
	if err != nil {
		t.Fatal(err)
	}
	good := st.token(t, "alice", role)
	// Raise the role, keep the signature.
	parts := strings.Split(good, ".")
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(bytes.Replace(claims, []byte(role), []byte("postgres"), 1))
	tampered := strings.Join(parts, ".")
	if tampered == good {
		t.Fatal("tampering changed nothing")
	}

	for _, tc := range []struct{ name, token string }{
		{"expired", expired},
		{"tampered", tampered},
		{"signed with another secret", foreign},
		{"not a JWT", "hello"},
		{"API key lookalike", token.APIKeyPrefix + "nope"},
	} {
		st.refused(t, tc.name, nats.Token(tc.token))
	}
	st.refused(t, "no credentials")
	st.mustConnect(t, nats.Token(good))

	logs := st.log.String()
	for _, want := range []string{`"reason":"JWT expired"`, `"code":"no_credentials"`, `"method":"token"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("callout log lacks %s:\n%s", want, logs)
		}
	}
	for _, secret := range []string{expired, tampered, foreign, good} {
		if strings.Contains(logs, secret) {
			t.Errorf("callout log holds a token:\n%s", logs)
		}
	}
}

func TestTokenExpiryEndsConnection(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSSubAllow, ">")

	short, err := token.NewIssuer([]byte(secret), 2*time.Second, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	st.ensureUser(t, "dave", role)
	tok, exp, err := short.Issue("dave", role, "")
	if err != nil {
		t.Fatal(err)
	}
	st.endsBy(t, tok, exp)
}

// closeMargin is how long endsBy gives nats-server's close to reach the
// client's handler: a few milliseconds here (the run that failed against
// the old bound missed it by one), so a second holds on a machine many
// times slower.
const closeMargin = time.Second

// endsBy connects with tok and checks that nats-server disconnects the
// client by exp, the token's expiry.
func (st *stack) endsBy(t *testing.T, tok string, exp time.Time) {
	t.Helper()
	closed := make(chan time.Time, 1)
	st.mustConnect(t, nats.Token(tok), nats.ClosedHandler(func(*nats.Conn) { closed <- time.Now() }))
	select {
	case at := <-closed:
		// nats-server sets its timer to the user JWT's expiry, a whole
		// second, less the whole second it authorized the connection in
		// (client.setExpiration: time.Now().Unix()), so it fires up to a
		// second after the expiry; the close then has to reach this
		// client's handler, on a machine that may be busy. Once the bound
		// was exp + 1 s, and a connection authorized at x.999 s missed it
		// by a millisecond.
		if bound := exp.Add(time.Second + closeMargin); at.After(bound) {
			t.Errorf("disconnected at %s, want by the token's expiry %s (+ nats-server's whole second and %s for the close to arrive)", at.Format(time.StampMilli), exp.Format(time.StampMilli), closeMargin)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the connection outlived its token")
	}
}

func TestPasswordClient(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSPubAllow, "chat.>")
	st.grant(t, role, store.NATSSubAllow, "chat.>")
	st.addUser(t, "erin", "correct horse", role)

	st.refused(t, "wrong password", nats.UserInfo("erin", "wrong"))
	st.refused(t, "unknown user", nats.UserInfo("nobody", "correct horse"))
	c := st.mustConnect(t, nats.UserInfo("erin", "correct horse"))
	st.authorizedAs(t, c, "erin")
	c.canPubSub(t, "chat.room1")
	c.pubViolation(t, "admin.x")

	logs := st.log.String()
	if !strings.Contains(logs, `"reason":"Invalid user or password"`) || !strings.Contains(logs, `"user":"erin"`) {
		t.Errorf("callout log lacks the refusal of erin's wrong password:\n%s", logs)
	}
	if strings.Contains(logs, "correct horse") || strings.Contains(logs, `"wrong"`) {
		t.Errorf("callout log holds a password:\n%s", logs)
	}
	// Every answered request says how long it took, in milliseconds, as a
	// number an operator's log pipeline can aggregate.
	answered := 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("callout log line is not JSON: %q", line)
		}
		if _, ok := l["method"]; !ok {
			continue
		}
		answered++
		if ms, ok := l["latency_ms"].(float64); !ok || ms < 0 {
			t.Errorf("answered request without a latency_ms number: %s", line)
		}
	}
	if answered < 3 {
		t.Errorf("got %d answered-request lines, want at least 3:\n%s", answered, logs)
	}
}

func TestAPIKeyClient(t *testing.T) {
	t.Parallel()
	var ahead atomic.Int64 // how far the API's clock is ahead of the real one
	st := newStack(t, stackOptions{now: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSPubAllow, "metrics.>")
	st.grant(t, role, store.NATSSubAllow, "metrics.>")
	id, key := st.newAPIKey(t, role)

	c := st.mustConnect(t, nats.Token(key))
	st.authorizedAs(t, c, "apikey:"+id)
	c.canPubSub(t, "metrics.cpu")
	c.pubViolation(t, "orders.new")
	st.mustConnect(t, nats.UserInfo(natsauth.APIKeyUser, key)).canPubSub(t, "metrics.mem")
	// Change the last character (to one it is not: 1 in 64 keys ends in A).
	last := "A"
	if strings.HasSuffix(key, "A") {
		last = "B"
	}
	st.refused(t, "wrong key", nats.Token(key[:len(key)-1]+last))

	if err := st.db.DisableAPIKey(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	// Keys are re-read a second after they were last read.
	ahead.Add(int64(time.Second))
	st.refused(t, "disabled key", nats.Token(key))
	st.refused(t, "disabled key as password", nats.UserInfo(natsauth.APIKeyUser, key))
	if logs := st.log.String(); !strings.Contains(logs, `"reason":"API key disabled"`) || strings.Contains(logs, key) {
		t.Errorf("callout log lacks the disabled key's refusal, or holds the key:\n%s", logs)
	}
}

func TestGrantsApplyToNextConnection(t *testing.T) {
	t.Parallel()
	// The cache's clock stands still unless the test moves it, so how
	// long connecting takes on a loaded machine changes nothing.
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	st := newStack(t, stackOptions{calloutNow: func() time.Time { return time.Unix(0, now.Load()) }})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSSubAllow, "jobs.>")
	tok := st.token(t, "frank", role)

	st.mustConnect(t, nats.Token(tok)).pubViolation(t, "jobs.run")

	// Permissions are cached for a second per role (docs/nats.md): a
	// grant made now applies to connections made a second later, and a
	// connection within that second still gets the cached permissions.
	st.grant(t, role, store.NATSPubAllow, "jobs.>")
	st.mustConnect(t, nats.Token(tok)).pubViolation(t, "jobs.run")
	now.Add(int64(time.Second))
	st.mustConnect(t, nats.Token(tok)).canPubSub(t, "jobs.run")

	if err := st.db.RevokeNATS(context.Background(), role, store.NATSSubAllow, "jobs.>"); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(time.Second))
	st.mustConnect(t, nats.Token(tok)).subViolation(t, "jobs.run")
}

func TestResponses(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{})
	svcRole, callerRole := storetest.NewRole(t), storetest.NewRole(t)
	st.grant(t, svcRole, store.NATSSubAllow, "svc.echo")
	if err := st.db.SetNATSResponses(context.Background(), svcRole, true, 0, 0); err != nil {
		t.Fatal(err)
	}
	st.grant(t, callerRole, store.NATSPubAllow, "svc.>")
	st.grant(t, callerRole, store.NATSSubAllow, "_INBOX.>")

	svc := st.mustConnect(t, nats.Token(st.token(t, "service", svcRole)))
	if _, err := svc.Subscribe("svc.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	caller := st.mustConnect(t, nats.Token(st.token(t, "caller", callerRole)))
	m, err := caller.Request("svc.echo", []byte("ping"), 2*time.Second)
	if err != nil || string(m.Data) != "ping" {
		t.Fatalf("request to a role allowed to respond: %v, %v", m, err)
	}
	// Responding is not publishing: svc may not publish elsewhere.
	svc.pubViolation(t, "svc.echo")
}

func TestEncryptedCallout(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{xkey: true})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSPubAllow, "secure.>")
	st.grant(t, role, store.NATSSubAllow, "secure.>")
	st.addUser(t, "grace", "s3cret", role)

	// A second callout connection sees what nats-server sends: sealed.
	spy, err := nats.Connect(st.ns.ClientURL(), st.callout)
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	requests, err := spy.SubscribeSync(natsauth.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}

	st.mustConnect(t, nats.Token(st.token(t, "grace", role))).canPubSub(t, "secure.a")
	c := st.mustConnect(t, nats.UserInfo("grace", "s3cret"))
	c.canPubSub(t, "secure.b")
	c.pubViolation(t, "plain.x")
	st.refused(t, "wrong password", nats.UserInfo("grace", "nope"))

	m, err := requests.NextMsg(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Nats-Server-Xkey") == "" || bytes.HasPrefix(m.Data, []byte("eyJ")) || bytes.Contains(m.Data, []byte("s3cret")) {
		t.Errorf("request not encrypted: header %v, body %.40q…", m.Header, m.Data)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	st := newStack(t, stackOptions{})
	role := storetest.NewRole(t)
	tok := st.token(t, "heidi", role)
	st.mustConnect(t, nats.Token(tok))
	st.refused(t, "bad token", nats.Token("x.y.z"))
	st.refused(t, "no credentials")

	wants := []string{
		`authd_nats_auth_requests_total{method="token",result="allowed"} 1`,
		`authd_nats_auth_requests_total{method="token",result="denied"} 1`,
		`authd_nats_auth_requests_total{method="password",result="allowed"} 0`,
		`authd_nats_auth_denied_total{code="no_credentials",method="none"} 1`,
		`authd_nats_auth_denied_total{code="PGRST301",method="token"} 1`,
		`authd_nats_auth_duration_seconds_count{method="token"} 2`,
		`authd_nats_auth_in_flight 0`,
		`authd_logins_total{result="succeeded"} 0`, // the API's series, on the same registry
	}
	body := st.settledMetrics(t, wants)
	for _, secret := range []string{tok, "heidi", role} {
		if strings.Contains(body, secret) {
			t.Errorf("metrics contain %q", secret)
		}
	}
}

// settledMetrics scrapes the callout's registry until it shows every line
// of wants, and reports those it never shows. A client has its answer a
// moment before the callout's goroutine leaves the in-flight set and
// records, so the figures may lag a refusal: the loop waits for them to
// settle (a bound on a hang only).
func (st *stack) settledMetrics(t *testing.T, wants []string) string {
	t.Helper()
	scrape := func() string {
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(st.metrics, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Body.String()
	}
	body := scrape()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); body = scrape() {
		settled := true
		for _, want := range wants {
			settled = settled && strings.Contains(body, want+"\n")
		}
		if settled {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range wants {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
	return body
}

// syncBuffer is a bytes.Buffer safe to write from the callout's goroutines
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestNewChecksKeys(t *testing.T) {
	t.Parallel()
	account, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	curve, _ := nkeys.CreateCurveKeys()
	for _, tc := range []struct {
		name string
		cfg  natsauth.Config
		want string
	}{
		{"no issuer", natsauth.Config{Account: "APP"}, "no issuer key"},
		{"user key as issuer", natsauth.Config{Issuer: user, Account: "APP"}, "is not an account key"},
		{"account key as xkey", natsauth.Config{Issuer: account, XKey: account, Account: "APP"}, "xkey is not a curve key"},
		{"no account", natsauth.Config{Issuer: account, XKey: curve}, "no target account"},
	} {
		if _, err := natsauth.New(authority{}, tc.cfg, slog.Default()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestTokenClientEndsWithItsUserAndRole: the callout applies /auth/verify's
// liveness check, so a token whose role was dropped, or whose user was
// disabled, no longer connects (within the cache's re-read, 1 s here: no
// change notifications in this test), and gets none of the grants left
// behind.
func TestTokenClientEndsWithItsUserAndRole(t *testing.T) {
	t.Parallel()
	for _, change := range []string{"role dropped", "user disabled"} {
		t.Run(change, func(t *testing.T) {
			t.Parallel()
			st := newStack(t, stackOptions{})
			role := storetest.NewRole(t)
			st.grant(t, role, store.NATSSubAllow, ">")
			tok := st.token(t, "erin", role)
			c := st.mustConnect(t, nats.Token(tok))
			c.Close()
			if change == "role dropped" {
				storetest.Exec(t, storetest.AdminURL(), "drop role "+pgx.Identifier{role}.Sanitize())
			} else if err := st.db.SetDisabled(context.Background(), "erin", true); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Minute)
			for {
				c, err := st.connect(t, nats.Token(tok))
				if err != nil {
					if !errors.Is(err, nats.ErrAuthorization) {
						t.Fatalf("got %v, want %v", err, nats.ErrAuthorization)
					}
					return
				}
				c.Close()
				if time.Now().After(deadline) {
					t.Fatalf("%s: a minute later the token still connects", change)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
