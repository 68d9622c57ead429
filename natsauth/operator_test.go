package natsauth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"authd/natsauth"
	"authd/store"
	"authd/store/storetest"
)

// startOperatorNATS runs nats-server in operator mode, as the comments at
// the end of deploy/nats/server.conf describe it: an operator, a system
// account and the callout account AUTH, whose JWT names authd's user in
// auth_users, held by a memory resolver. Clients without a user JWT get
// the default sentinel, a bearer user of AUTH allowed nothing, and go
// through the callout. It returns the callout's configuration (Account is
// AUTH's public key; Issuer is AUTH's key, or with o.signingKey a signing
// key of AUTH) and how the callout logs in (its user JWT and seed).
func startOperatorNATS(t testing.TB, o stackOptions) (natsauth.Config, nats.Option, *natsserver.Server) {
	t.Helper()
	operator := newKey(t, nkeys.CreateOperator)
	sys, auth := newKey(t, nkeys.CreateAccount), newKey(t, nkeys.CreateAccount)
	calloutUser := newKey(t, nkeys.CreateUser)

	oc := jwt.NewOperatorClaims(publicKey(t, operator))
	oc.SystemAccount = publicKey(t, sys)
	trusted, err := jwt.DecodeOperatorClaims(encodeJWT(t, oc, operator))
	if err != nil {
		t.Fatal(err)
	}

	resolver := &natsserver.MemAccResolver{}
	sc := jwt.NewAccountClaims(publicKey(t, sys))
	sc.Name = "SYS"
	if err := resolver.Store(sc.Subject, encodeJWT(t, sc, operator)); err != nil {
		t.Fatal(err)
	}

	cfg := natsauth.Config{Issuer: auth, Account: publicKey(t, auth)}
	ac := jwt.NewAccountClaims(cfg.Account)
	ac.Name = "AUTH"
	// auth_users: the callout's own user skips the callout. No
	// allowed_accounts: users land in AUTH itself.
	ac.EnableExternalAuthorization(publicKey(t, calloutUser))
	if o.signingKey {
		cfg.Issuer = newKey(t, nkeys.CreateAccount)
		ac.SigningKeys.Add(publicKey(t, cfg.Issuer))
	}
	if o.xkey {
		cfg.XKey = newKey(t, nkeys.CreateCurveKeys)
		ac.Authorization.XKey = publicKey(t, cfg.XKey)
	}
	if err := resolver.Store(ac.Subject, encodeJWT(t, ac, operator)); err != nil {
		t.Fatal(err)
	}

	uc := jwt.NewUserClaims(publicKey(t, calloutUser))
	uc.Name = "authd"
	calloutJWT := encodeJWT(t, uc, auth)
	seed, err := calloutUser.Seed()
	if err != nil {
		t.Fatal(err)
	}

	sentinel := jwt.NewUserClaims(publicKey(t, newKey(t, nkeys.CreateUser)))
	sentinel.Name = "sentinel"
	sentinel.BearerToken = true
	sentinel.Pub.Deny.Add(">")
	sentinel.Sub.Deny.Add(">")

	ns := runNATS(t, &natsserver.Options{
		TrustedOperators: []*jwt.OperatorClaims{trusted},
		AccountResolver:  resolver,
		SystemAccount:    sc.Subject,
		DefaultSentinel:  encodeJWT(t, sentinel, auth),
		AuthTimeout:      2,
	})
	return cfg, nats.UserJWTAndSeed(calloutJWT, string(seed)), ns
}

func newKey(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func encodeJWT(t testing.TB, c jwt.Claims, kp nkeys.KeyPair) string {
	t.Helper()
	s, err := c.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// watchResponses subscribes, as the callout's user, to the inboxes
// nats-server takes the callout's answers on, in the callout account.
func (st *stack) watchResponses(t *testing.T) *nats.Subscription {
	t.Helper()
	nc, err := nats.Connect(st.ns.ClientURL(), st.callout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("$SYS._INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// issuedUser reads the next answer off sub and returns the user JWT in it.
func issuedUser(t *testing.T, sub *nats.Subscription) (*jwt.AuthorizationResponseClaims, *jwt.UserClaims) {
	t.Helper()
	m, err := sub.NextMsg(2 * time.Second)
	if err != nil {
		t.Fatalf("no callout answer seen: %v", err)
	}
	resp, err := jwt.DecodeAuthorizationResponseClaims(string(m.Data))
	if err != nil {
		t.Fatalf("callout answer: %v", err)
	}
	uc, err := jwt.DecodeUserClaims(resp.Jwt)
	if err != nil {
		t.Fatalf("user JWT in the callout answer (error %q): %v", resp.Error, err)
	}
	return resp, uc
}

// TestOperatorMode runs the callout against nats-server in operator mode:
// users are issued by the callout account (by its key or one of its
// signing keys) and land in it, with their role's grants.
//
// The operator-mode tests run before the parallel config-mode ones (they
// are not parallel to them), so as not to crowd those that wait on the
// permissions cache's 1 s.
func TestOperatorMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    stackOptions
	}{
		{"account key", stackOptions{operator: true}},
		{"signing key", stackOptions{operator: true, signingKey: true}},
		{"encrypted", stackOptions{operator: true, xkey: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStack(t, tc.o)
			issuer := st.svc.IssuerPublicKey()
			if tc.o.signingKey == (issuer == st.account) {
				t.Fatalf("issuer %s, account %s: want the signing key only with signingKey", issuer, st.account)
			}
			role := storetest.NewRole(t)
			st.grant(t, role, store.NATSPubAllow, "orders.>")
			st.grant(t, role, store.NATSPubDeny, "orders.secret")
			st.grant(t, role, store.NATSSubAllow, "orders.>")
			st.addUser(t, "bob", "correct horse", role)
			responses := st.watchResponses(t)

			st.ensureUser(t, "alice", role)
			tok, exp, err := st.tokens.Issue("alice", role, "")
			if err != nil {
				t.Fatal(err)
			}
			c := st.mustConnect(t, nats.Token(tok))
			st.authorizedAs(t, c, "alice")
			c.canPubSub(t, "orders.new")
			c.pubViolation(t, "orders.secret")
			c.pubViolation(t, "admin.shutdown")
			c.subViolation(t, "admin.>")

			if !tc.o.xkey {
				resp, uc := issuedUser(t, responses)
				wantIssuerAccount := ""
				if tc.o.signingKey {
					wantIssuerAccount = st.account
				}
				if resp.Issuer != issuer || resp.IssuerAccount != wantIssuerAccount {
					t.Errorf("answer signed by %s for account %q, want %s for %q", resp.Issuer, resp.IssuerAccount, issuer, wantIssuerAccount)
				}
				switch {
				case uc.Name != "alice" || uc.Issuer != issuer || uc.IssuerAccount != wantIssuerAccount:
					t.Errorf("user JWT: name %q issued by %s for account %q, want alice by %s for %q", uc.Name, uc.Issuer, uc.IssuerAccount, issuer, wantIssuerAccount)
				case uc.Audience != "":
					t.Errorf("user JWT audience %q: operator mode places users by issuer", uc.Audience)
				case uc.Expires != exp.Unix():
					t.Errorf("user JWT expires at %d, want the token's expiry %d", uc.Expires, exp.Unix())
				case strings.Join(uc.Pub.Allow, " ") != "orders.>" || strings.Join(uc.Pub.Deny, " ") != "orders.secret" ||
					strings.Join(uc.Sub.Allow, " ") != "orders.>" || strings.Join(uc.Sub.Deny, " ") != natsauth.Subject:
					t.Errorf("user JWT permissions pub %+v, sub %+v, want the role's grants", uc.Pub, uc.Sub)
				}
			}

			p := st.mustConnect(t, nats.UserInfo("bob", "correct horse"))
			st.authorizedAs(t, p, "bob")
			p.canPubSub(t, "orders.bob")
			p.pubViolation(t, "admin.shutdown")

			st.refused(t, "bad token", nats.Token("x.y.z"))
			st.refused(t, "token with a bad signature", nats.Token(tok+"x"))
			st.refused(t, "wrong password", nats.UserInfo("bob", "wrong"))
			st.refused(t, "no credentials")
			if logs := st.log.String(); strings.Contains(logs, `"level":"ERROR"`) {
				t.Errorf("callout logged errors:\n%s", logs)
			}
		})
	}
}

// TestOperatorModeUsersCannotReadRequests: in operator mode users land in
// the callout account, where nats-server publishes the authorization
// requests, with the credentials of every client that connects. A role
// allowed everything must still not see them.
func TestOperatorModeUsersCannotReadRequests(t *testing.T) {
	st := newStack(t, stackOptions{operator: true})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSPubAllow, ">")
	st.grant(t, role, store.NATSSubAllow, ">")

	eve := st.mustConnect(t, nats.Token(st.token(t, "eve", role)))
	all, err := eve.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := eve.Flush(); err != nil {
		t.Fatal(err)
	}

	other := st.token(t, "frank", role)
	st.mustConnect(t, nats.Token(other)).canPubSub(t, "after.frank")
	for {
		m, err := all.NextMsg(200 * time.Millisecond)
		if err != nil {
			break
		}
		if m.Subject == natsauth.Subject {
			t.Fatalf("a user allowed > received %s: another client's authorization request", m.Subject)
		}
	}
	eve.subViolation(t, natsauth.Subject)
	eve.pubViolation(t, natsauth.Subject)
}
