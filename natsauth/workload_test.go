package natsauth_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"authd/natsauth"
	"authd/natsauth/workload"
	"authd/natsauth/workload/workloadtest"
	"authd/store"
	"authd/store/storetest"
)

// fixedPermissions is a workload.Permissions of fixed grants by
// "namespace/name"; a service account not in it gets none.
type fixedPermissions map[string]store.NATSPermissions

func (f fixedPermissions) Permissions(_ context.Context, id workload.Identity) (store.NATSPermissions, error) {
	return f[id.Namespace+"/"+id.ServiceAccount], nil
}

// TestWorkloadClient: pods connect with their service-account tokens
// beside authd's own clients, and get exactly their permissions; bad
// workload tokens are refused, and logged and counted as method k8s.
func TestWorkloadClient(t *testing.T) {
	t.Parallel()
	is := workloadtest.NewIssuer(t)
	v, err := workload.NewVerifier(workload.Config{Issuers: []workload.IssuerConfig{{
		Issuer: is.URL, JWKSURL: is.URL + workloadtest.JWKSPath, Client: is.Client(),
	}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st := newStack(t, stackOptions{workloads: v, workloadPerms: fixedPermissions{
		"my-app/my-nats-client": {
			PubAllow: []string{"my-app.requests.>", "my-app.events.>"},
			SubAllow: []string{"my-app.requests.>", "my-app.commands.>"},
		},
	}})

	good := is.Mint(t, workloadtest.Token{})
	pod := st.mustConnect(t, nats.Token(good))
	st.authorizedAs(t, pod, "system:serviceaccount:my-app:my-nats-client")
	pod.canPubSub(t, "my-app.requests.get")
	pod.pubViolation(t, "my-app.commands.stop")
	pod.subViolation(t, "my-app.events.>")
	pod.pubViolation(t, "other-app.requests.get")

	// A service account without permissions may do nothing.
	nobody := st.mustConnect(t, nats.Token(is.Mint(t, workloadtest.Token{Namespace: "other-app", ServiceAccount: "nobody"})))
	nobody.pubViolation(t, "my-app.requests.get")
	nobody.subViolation(t, ">")

	// authd's own clients are unchanged beside workloads.
	role := storetest.NewRole(t)
	st.grant(t, role, store.NATSPubAllow, "orders.>")
	st.grant(t, role, store.NATSSubAllow, "orders.>")
	st.mustConnect(t, nats.Token(st.token(t, "alice", role))).canPubSub(t, "orders.new")

	unknownKid := "k9"
	refused := map[string]string{
		"wrong audience": is.Mint(t, workloadtest.Token{Audience: []string{"api"}}),
		"unknown kid":    is.Mint(t, workloadtest.Token{KeyID: &unknownKid}),
		"expired":        is.Mint(t, workloadtest.Token{IssuedAt: time.Now().Add(-2 * time.Hour)}),
		"another key":    is.Mint(t, workloadtest.Token{Key: workloadtest.NewKey(t, "k1")}),
		// Not a trusted issuer: checked as an authd token, and refused.
		"wrong issuer": is.Mint(t, workloadtest.Token{Issuer: "https://other-cluster.example"}),
	}
	for name, tok := range refused {
		st.refused(t, name, nats.Token(tok))
	}

	st.settledMetrics(t, []string{
		`authd_nats_auth_requests_total{method="k8s",result="allowed"} 2`,
		`authd_nats_auth_requests_total{method="k8s",result="denied"} 4`,
		`authd_nats_auth_denied_total{code="PGRST303",method="k8s"} 2`,
		`authd_nats_auth_denied_total{code="PGRST301",method="k8s"} 2`,
		`authd_nats_auth_requests_total{method="token",result="denied"} 1`,
	})
	logs := st.log.String()
	for _, want := range []string{
		`"method":"k8s","client_host"`,
		`"reason":"JWT not in audience"`,
		`"namespace":"my-app","service_account":"my-nats-client","pod":"my-pod"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("callout log lacks %s:\n%s", want, logs)
		}
	}
	for _, tok := range append([]string{good}, refused["wrong audience"], refused["another key"]) {
		if strings.Contains(logs, tok) || strings.Contains(logs, strings.Split(tok, ".")[2]) {
			t.Errorf("callout log holds a token:\n%s", logs)
		}
	}
	if got := natsauth.WorkloadUser(workload.Identity{Namespace: "a", ServiceAccount: "b"}); got != "system:serviceaccount:a:b" {
		t.Errorf("WorkloadUser: got %q", got)
	}
}

// TestWorkloadTokenExpiryEndsConnection: the NATS user expires with the
// service-account token.
func TestWorkloadTokenExpiryEndsConnection(t *testing.T) {
	t.Parallel()
	is := workloadtest.NewIssuer(t)
	v, err := workload.NewVerifier(workload.Config{Issuers: []workload.IssuerConfig{{Issuer: is.URL, Client: is.Client()}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st := newStack(t, stackOptions{workloads: v, workloadPerms: fixedPermissions{}})
	now := time.Now()
	exp := now.Add(3 * time.Second).Truncate(time.Second)
	st.endsBy(t, is.Mint(t, workloadtest.Token{IssuedAt: now, Expires: exp}), exp)
}
