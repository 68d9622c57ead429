package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"authd/store/storetest"
	"authd/token"
)

// calloutKeyFile writes kp as `nk -gen … -pubout` does: the seed, then
// the public key.
func calloutKeyFile(t *testing.T, kp nkeys.KeyPair) (path, public string) {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	if public, err = kp.PublicKey(); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), public[:8]+".nk")
	if err := os.WriteFile(path, []byte(string(seed)+"\n"+public+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, public
}

// calloutNATS runs nats-server in-process with conf, on a free port.
func calloutNATS(t *testing.T, conf string) *natsserver.Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server config: %v", err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
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

var (
	// The JSON log line of a callout that answers, with its health address.
	calloutAnswering = regexp.MustCompile(`"msg":"authd nats-callout answering".*"health_addr":"([^"]*)"`)
)

// runningCallout is `authd nats-callout` running in the test.
type runningCallout struct {
	stdout, stderr *syncBuffer
	stop           context.CancelFunc
	done           chan error
	health         string // host:port of AUTHD_NATS_HEALTH_ADDR
}

// startCallout runs `authd nats-callout` with env until the test ends,
// once it says it is answering.
func startCallout(t *testing.T, env map[string]string) *runningCallout {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &runningCallout{stdout: &syncBuffer{}, stderr: &syncBuffer{}, stop: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- run(ctx, []string{"authd", "nats-callout"}, getenv(env), environList(env), strings.NewReader(""), c.stdout, c.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			t.Error("nats-callout did not stop")
		}
	})
	deadline := time.After(time.Minute)
	for !calloutAnswering.MatchString(c.stderr.String()) {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("nats-callout exited before answering: %v\n%s", err, c.stderr)
		case <-deadline:
			t.Fatalf("nats-callout did not start; stdout %q, stderr %q", c.stdout, c.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	c.health = calloutAnswering.FindStringSubmatch(c.stderr.String())[1]
	return c
}

// calloutClient connects to ns as a client would, without reconnecting.
func calloutClient(t *testing.T, ns *natsserver.Server, opts ...nats.Option) (*nats.Conn, chan error, error) {
	t.Helper()
	errs := make(chan error, 8)
	opts = append([]nats.Option{nats.NoReconnect(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	})}, opts...)
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(nc.Close)
	return nc, errs, nil
}

// calloutEcho checks that nc receives what it publishes on subject.
func calloutEcho(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Publish(subject, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(2 * time.Second); err != nil {
		t.Fatalf("publish and subscribe on %q: %v", subject, err)
	}
}

// TestNATSCallout runs the callout as an operator would: the example
// server config with encryption, the callout logging in with a password
// from a file, users and grants made with the CLI.
func TestNATSCallout(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "hunter22\n", "user", "add", "ivan", "--role", role)
	mustRun(t, env, "", "nats", "grant", role, "--pub", "telemetry.>", "--sub", "telemetry.>")

	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	xkey, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	issuerFile, issuerPub := calloutKeyFile(t, issuer)
	xkeyFile, xkeyPub := calloutKeyFile(t, xkey)
	passFile := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(passFile, []byte("callout-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../deploy/nats/server.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("AUTHD_NATS_ISSUER: %q\nAUTHD_NATS_XKEY: %q\nAUTHD_NATS_PASSWORD: %q\n%s", issuerPub, xkeyPub, "callout-pass", example)
	ns := calloutNATS(t, conf)

	secret := "a-test-secret-that-is-long-enough-0123456789"
	env["JWT_SECRET"] = secret
	env["AUTHD_NATS_URL"] = ns.ClientURL()
	env["AUTHD_NATS_USER"] = "authd"
	env["AUTHD_NATS_PASSWORD_FILE"] = passFile
	env["AUTHD_NATS_ISSUER_SEED_FILE"] = issuerFile
	env["AUTHD_NATS_XKEY_SEED_FILE"] = xkeyFile
	env["AUTHD_NATS_ACCOUNT"] = "APP"
	env["AUTHD_NATS_HEALTH_ADDR"] = "127.0.0.1:0"
	env["AUTHD_SHUTDOWN_GRACE"] = "5s"
	callout := startCallout(t, env)

	if _, _, err := calloutClient(t, ns, nats.UserInfo("ivan", "wrong")); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("wrong password: got %v, want %v", err, nats.ErrAuthorization)
	}
	nc, errs, err := calloutClient(t, ns, nats.UserInfo("ivan", "hunter22"))
	if err != nil {
		t.Fatalf("right password: %v\n%s", err, callout.stderr)
	}
	calloutEcho(t, nc, "telemetry.cpu")
	if err := nc.Publish("billing.charge", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("publish outside the grants: got %v, want a permissions violation", err)
		}
	case <-time.After(time.Minute):
		t.Error("publish outside the grants: no permissions violation")
	}

	tokens, err := token.NewIssuer([]byte(secret), time.Hour, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := tokens.Issue("ivan", role, "")
	if err != nil {
		t.Fatal(err)
	}
	tc, _, err := calloutClient(t, ns, nats.Token(tok))
	if err != nil {
		t.Fatalf("access token: %v\n%s", err, callout.stderr)
	}
	calloutEcho(t, tc, "telemetry.mem")

	for path, want := range map[string]string{
		"/healthz": `{"status":"ok"}`,
		"/readyz":  `{"status":"ok","nats":"ok","database":"ok"}`,
		"/metrics": `authd_nats_auth_requests_total{method="password",result="denied"} 1`,
	} {
		resp, err := http.Get("http://" + callout.health + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %q, want 200 with %s", path, resp.StatusCode, body, want)
		}
		if path == "/metrics" && strings.Contains(string(body), "authd_purged_total") {
			t.Errorf("GET /metrics: has authd_purged_total, but nats-callout does not purge")
		}
	}

	// SIGTERM: the subscription drains and the command ends cleanly.
	callout.stop()
	select {
	case err := <-callout.done:
		callout.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("nats-callout ended with %v\n%s", err, callout.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nats-callout did not stop")
	}
	logs := callout.stderr.String()
	for _, want := range []string{`"msg":"nats auth refused"`, `"reason":"Invalid user or password"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	for _, secret := range []string{"hunter22", "callout-pass", tok} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds a secret:\n%s", logs)
		}
	}
}

// TestNATSCalloutNKeyGlobalAccount logs the callout in with an nkey seed
// file and places users in the default account, $G, on a server whose
// configuration has no accounts.
func TestNATSCalloutNKeyGlobalAccount(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	env := baseEnv(url)
	mustRun(t, env, "s3cret-pw\n", "user", "add", "judy", "--role", role)
	mustRun(t, env, "", "nats", "grant", role, "--pub", "a.>", "--sub", "a.>")

	ns := nkeyCalloutNATS(t, env)
	startCallout(t, env)

	nc, _, err := calloutClient(t, ns, nats.UserInfo("judy", "s3cret-pw"))
	if err != nil {
		t.Fatal(err)
	}
	calloutEcho(t, nc, "a.b")
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	cz, err := ns.Connz(&natsserver.ConnzOptions{CID: cid, Username: true})
	// Connz leaves out the account name for $G, the only account here.
	if err != nil || len(cz.Conns) != 1 || cz.Conns[0].Account != "" || cz.Conns[0].AuthorizedUser != "judy" {
		t.Fatalf("connz: %v, %+v; want judy in $G", err, cz.Conns[0])
	}
}

// nkeyCalloutNATS starts a nats-server without accounts whose callout
// logs in with an nkey, and sets env for `authd nats-callout` to answer
// it.
func nkeyCalloutNATS(t *testing.T, env map[string]string) *natsserver.Server {
	t.Helper()
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	issuerFile, issuerPub := calloutKeyFile(t, issuer)
	userFile, userPub := calloutKeyFile(t, user)
	ns := calloutNATS(t, fmt.Sprintf(`
authorization {
  users: [ { nkey: %q } ]
  auth_callout { issuer: %q, auth_users: [ %q ] }
}`, userPub, issuerPub, userPub))

	env["JWT_SECRET"] = "a-test-secret-that-is-long-enough-0123456789"
	env["AUTHD_NATS_URL"] = ns.ClientURL()
	env["AUTHD_NATS_NKEY_SEED_FILE"] = userFile
	env["AUTHD_NATS_ISSUER_SEED_FILE"] = issuerFile
	return ns
}

func TestNATSCalloutConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	userSeedFile, _ := calloutKeyFile(t, user)
	userSeed, _ := user.Seed()
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	accountSeedFile, _ := calloutKeyFile(t, account)

	base := func() map[string]string {
		env := baseEnv("postgres://127.0.0.1:1/none")
		env["JWT_SECRET"] = "a-test-secret-that-is-long-enough-0123456789"
		return env
	}
	for _, tc := range []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"nothing", nil, []string{
			"AUTHD_NATS_CREDS: not set (nor AUTHD_NATS_NKEY_SEED_FILE, nor AUTHD_NATS_USER and AUTHD_NATS_PASSWORD)",
			"AUTHD_NATS_ISSUER_SEED_FILE: not set",
		}},
		{"two ways to log in", map[string]string{
			"AUTHD_NATS_NKEY_SEED_FILE": userSeedFile, "AUTHD_NATS_USER": "authd", "AUTHD_NATS_PASSWORD": "p",
			"AUTHD_NATS_ISSUER_SEED_FILE": accountSeedFile,
		}, []string{"AUTHD_NATS_NKEY_SEED_FILE: AUTHD_NATS_NKEY_SEED_FILE and AUTHD_NATS_USER are set"}},
		{"user without password", map[string]string{
			"AUTHD_NATS_USER": "authd", "AUTHD_NATS_ISSUER_SEED_FILE": accountSeedFile,
		}, []string{"AUTHD_NATS_PASSWORD: not set"}},
		{"password twice", map[string]string{
			"AUTHD_NATS_USER": "authd", "AUTHD_NATS_PASSWORD": "p", "AUTHD_NATS_PASSWORD_FILE": filepath.Join(dir, "p"),
			"AUTHD_NATS_ISSUER_SEED_FILE": accountSeedFile,
		}, []string{"AUTHD_NATS_PASSWORD: AUTHD_NATS_PASSWORD and AUTHD_NATS_PASSWORD_FILE are both set"}},
		{"user seed as issuer", map[string]string{
			"AUTHD_NATS_USER": "authd", "AUTHD_NATS_PASSWORD": "p",
			"AUTHD_NATS_ISSUER_SEED_FILE": userSeedFile, "AUTHD_NATS_XKEY_SEED_FILE": accountSeedFile,
		}, []string{
			"AUTHD_NATS_ISSUER_SEED_FILE: " + userSeedFile + ": first line is not an account seed (SA…)",
			"AUTHD_NATS_XKEY_SEED_FILE: " + accountSeedFile + ": first line is not a curve seed (SX…)",
		}},
		{"workload settings without an issuer", map[string]string{
			"AUTHD_NATS_USER": "authd", "AUTHD_NATS_PASSWORD": "p", "AUTHD_NATS_ISSUER_SEED_FILE": accountSeedFile,
			"AUTHD_NATS_WORKLOAD_JWKS_URL": "https://k8s.example/jwks", "AUTHD_NATS_WORKLOAD_PERMISSIONS": "labels",
		}, []string{
			"AUTHD_NATS_WORKLOAD_JWKS_URL: set, but AUTHD_NATS_WORKLOAD_ISSUER (or JWT_ISSUER, or K8S_IN_CLUSTER=true) is not",
			"AUTHD_NATS_WORKLOAD_PERMISSIONS: ",
		}},
		{"workload issuer twice, insecure", map[string]string{
			"AUTHD_NATS_USER": "authd", "AUTHD_NATS_PASSWORD": "p", "AUTHD_NATS_ISSUER_SEED_FILE": accountSeedFile,
			"AUTHD_NATS_WORKLOAD_ISSUER": "http://k8s.example", "JWT_ISSUER": "https://other.example",
		}, []string{
			"AUTHD_NATS_WORKLOAD_ISSUER: AUTHD_NATS_WORKLOAD_ISSUER and JWT_ISSUER are both set, to different values",
			`AUTHD_NATS_WORKLOAD_ISSUER: workload: issuer "http://k8s.example" is not an https URL`,
		}},
		{"in cluster without the service-account mount", map[string]string{
			"AUTHD_NATS_USER": "authd", "AUTHD_NATS_PASSWORD": "p", "AUTHD_NATS_ISSUER_SEED_FILE": accountSeedFile,
			"K8S_IN_CLUSTER": "true", "AUTHD_NATS_WORKLOAD_SA_DIR": dir,
		}, []string{"AUTHD_NATS_WORKLOAD_ISSUER: workload: issuer https://kubernetes.default.svc: CA file: open " + filepath.Join(dir, "ca.crt")}},
		{"missing files", map[string]string{
			"AUTHD_NATS_CREDS": filepath.Join(dir, "none.creds"), "AUTHD_NATS_ISSUER_SEED_FILE": filepath.Join(dir, "none.nk"),
		}, []string{"AUTHD_NATS_CREDS: stat ", "AUTHD_NATS_ISSUER_SEED_FILE: open "}},
	} {
		env := base()
		for k, v := range tc.set {
			env[k] = v
		}
		r := runCLI(t, env, "", "nats-callout")
		if r.err == nil {
			t.Errorf("%s: started, want a configuration error", tc.name)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(r.err.Error(), want) {
				t.Errorf("%s: error %q lacks %q", tc.name, r.err, want)
			}
		}
		if strings.Contains(r.err.Error(), string(userSeed)) {
			t.Errorf("%s: error %q shows a seed", tc.name, r.err)
		}
	}
	if r := runCLI(t, base(), "", "nats-callout", "extra"); r.err == nil || !strings.Contains(r.err.Error(), "takes no arguments") {
		t.Errorf("extra argument: got %v", r.err)
	}
}
