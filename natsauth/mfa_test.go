package natsauth_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"authd/natsauth"
	"authd/store"
	"authd/store/storetest"
	"authd/token"
)

// TestRequireMFA: a role marked require_mfa (authd nats require-mfa ROLE
// on) is admitted only with an aal2 access token; its passwords, API keys
// and aal1 tokens are refused with a reason that says so. Off again, they
// pass.
func TestRequireMFA(t *testing.T) {
	t.Parallel()
	// The permissions cache's clock stands still unless the test moves it.
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	st := newStack(t, stackOptions{calloutNow: func() time.Time { return time.Unix(0, now.Load()) }})
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSPubAllow, "ops.>")
	st.grant(t, role, store.NATSSubAllow, "ops.>")
	st.addUser(t, "mallory", "correct horse", role)
	_, key := st.newAPIKey(t, role)
	aal1 := st.token(t, "mallory", role)
	aal2, _, err := st.tokens.IssueAs("mallory", role, "", st.tokens.TTL(),
		token.Assurance{AAL: token.AAL2, AMR: []string{token.AMRPassword, token.AMRTOTP}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.SetNATSRequireMFA(context.Background(), role, true); err != nil {
		t.Fatal(err)
	}

	st.refused(t, "password for a require-mfa role", nats.UserInfo("mallory", "correct horse"))
	st.refused(t, "API key for a require-mfa role", nats.Token(key))
	st.refused(t, "API key as password for a require-mfa role", nats.UserInfo(natsauth.APIKeyUser, key))
	st.refused(t, "aal1 token for a require-mfa role", nats.Token(aal1))
	c := st.mustConnect(t, nats.Token(aal2))
	st.authorizedAs(t, c, "mallory")
	c.canPubSub(t, "ops.deploy")

	logs := st.log.String()
	if n := strings.Count(logs, `"code":"mfa_required"`); n != 4 {
		t.Errorf("got %d mfa_required refusals in the callout log, want 4:\n%s", n, logs)
	}
	if !strings.Contains(logs, "requires a second factor") {
		t.Errorf("callout log lacks the refusal's reason:\n%s", logs)
	}

	// The grants stay; off again, a password passes once the role's
	// cached permissions are read again (a second later, as for grants).
	if err := st.db.SetNATSRequireMFA(context.Background(), role, false); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(time.Second))
	st.mustConnect(t, nats.UserInfo("mallory", "correct horse")).canPubSub(t, "ops.status")
}
