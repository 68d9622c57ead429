package main

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"authd/natsauth/workload/workloadtest"
	"authd/store/storetest"
)

// TestNATSCalloutWorkloadInCluster runs the callout configured as the
// nats-k8s-oidc-callout seed's Deployment is (K8S_IN_CLUSTER=true,
// JWT_AUDIENCE=nats), against a stand-in API server found through
// KUBERNETES_SERVICE_HOST/PORT, trusted through the CA file of the
// service-account mount and asked with its token file.
func TestNATSCalloutWorkloadInCluster(t *testing.T) {
	t.Parallel()
	is := workloadtest.NewIssuer(t)
	saDir := t.TempDir()
	is.CAFile(t, saDir)
	if err := os.WriteFile(filepath.Join(saDir, "token"), []byte("callout-pod-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api, err := url.Parse(is.URL)
	if err != nil {
		t.Fatal(err)
	}

	env := baseEnv(storetest.NewURL(t))
	ns := nkeyCalloutNATS(t, env)
	env["AUTHD_NATS_HEALTH_ADDR"] = "127.0.0.1:0"
	env["K8S_IN_CLUSTER"] = "true"
	env["JWT_AUDIENCE"] = "nats"
	env["KUBERNETES_SERVICE_HOST"] = api.Hostname()
	env["KUBERNETES_SERVICE_PORT"] = api.Port()
	env["AUTHD_NATS_WORKLOAD_SA_DIR"] = saDir
	callout := startCallout(t, env)

	// Tokens of the in-cluster issuer, whatever host serves its keys.
	good := is.Mint(t, workloadtest.Token{Issuer: "https://kubernetes.default.svc"})
	nc, errs, err := calloutClient(t, ns, nats.Token(good))
	if err != nil {
		t.Fatalf("pod token: %v\n%s", err, callout.stderr)
	}
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	cz, err := ns.Connz(&natsserver.ConnzOptions{CID: cid, Username: true})
	if err != nil || len(cz.Conns) != 1 || cz.Conns[0].AuthorizedUser != "system:serviceaccount:my-app:my-nats-client" {
		t.Fatalf("connz: %v, %+v; want the service account", err, cz.Conns)
	}
	// The permission source is not wired in this test: no rights.
	if err := nc.Publish("my-app.requests.get", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
		t.Errorf("publish without rights: got %v, want a permissions violation", err)
	}
	wrongAud := is.Mint(t, workloadtest.Token{Issuer: "https://kubernetes.default.svc", Audience: []string{"api"}})
	if _, _, err := calloutClient(t, ns, nats.Token(wrongAud)); err == nil {
		t.Error("wrong audience: connected")
	}
	if _, bearer := is.Requests(); len(bearer) == 0 || bearer[0] != "Bearer callout-pod-token" {
		t.Errorf("JWKS requests' Authorization: got %q, want the token file's", bearer)
	}

	resp, err := http.Get("http://" + callout.health + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`authd_nats_auth_requests_total{method="k8s",result="allowed"} 1`,
		`authd_nats_auth_requests_total{method="k8s",result="denied"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	logs := callout.stderr.String()
	for _, want := range []string{`"workload_issuer":"https://kubernetes.default.svc"`, `"service_account":"my-nats-client"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	for _, secret := range []string{good, wrongAud, "callout-pod-token"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds a token:\n%s", logs)
		}
	}
}
