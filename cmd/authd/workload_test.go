package main

import (
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"authd/natsauth/workload/workloadtest"
	"authd/store/storetest"
)

// inClusterEnv is the environment of a callout in a pod whose API server
// (and issuer) is is: the service-account mount (CA, the pod's token) in a
// directory of its own, the API's host and port as kubelet sets them.
func inClusterEnv(t *testing.T, is *workloadtest.Issuer) map[string]string {
	t.Helper()
	saDir := t.TempDir()
	is.CAFile(t, saDir)
	if err := os.WriteFile(filepath.Join(saDir, "token"), []byte("callout-pod-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api, err := url.Parse(is.URL)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"K8S_IN_CLUSTER":             "true",
		"KUBERNETES_SERVICE_HOST":    api.Hostname(),
		"KUBERNETES_SERVICE_PORT":    api.Port(),
		"AUTHD_NATS_WORKLOAD_SA_DIR": saDir,
	}
}

// TestNATSCalloutWorkloadInCluster runs the callout configured as the
// nats-k8s-oidc-callout seed's Deployment is (K8S_IN_CLUSTER=true,
// JWT_AUDIENCE=nats), against a stand-in API server found through
// KUBERNETES_SERVICE_HOST/PORT, trusted through the CA file of the
// service-account mount and asked with its token file.
func TestNATSCalloutWorkloadInCluster(t *testing.T) {
	t.Parallel()
	is := workloadtest.NewIssuer(t)
	inCluster := inClusterEnv(t, is)

	env := baseEnv(storetest.NewURL(t))
	ns := nkeyCalloutNATS(t, env)
	env["AUTHD_NATS_HEALTH_ADDR"] = "127.0.0.1:0"
	maps.Copy(env, inCluster)
	env["JWT_AUDIENCE"] = "nats"
	is.SetServiceAccount("my-app", "my-nats-client", map[string]string{
		"nats.io/allowed-pub-subjects": "my-app.echo.>",
		"nats.io/allowed-sub-subjects": "my-app.echo.>",
	})
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
	// The ServiceAccount's annotations, read from the API with the pod's
	// token: exactly those subjects.
	calloutEcho(t, nc, "my-app.echo.one")
	if err := nc.Publish("other-app.requests.get", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
		t.Errorf("publish outside the annotations: got %v, want a permissions violation", err)
	}
	if got := is.ServiceAccountRequests(); len(got) == 0 || got[0] != "Bearer callout-pod-token" {
		t.Errorf("ServiceAccount reads' Authorization: got %q, want the token file's", got)
	}
	// An annotation change applies to the next connection within the
	// cache's bound (workload.DefaultAnnotationsTTL).
	is.SetServiceAccount("my-app", "my-nats-client", map[string]string{
		"nats.io/allowed-pub-subjects": "my-app.moved.>",
		"nats.io/allowed-sub-subjects": "my-app.moved.>",
	})
	deadline := time.Now().Add(time.Minute)
	for {
		c2, _, err := calloutClient(t, ns, nats.Token(good))
		if err != nil {
			t.Fatal(err)
		}
		sub, err := c2.SubscribeSync("my-app.moved.x")
		if err != nil {
			t.Fatal(err)
		}
		c2.Publish("my-app.moved.x", nil)
		_, err = sub.NextMsg(2 * time.Second)
		c2.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a minute after the annotation changed, connections still get the old subjects")
		}
	}
	// A ServiceAccount without annotations may do nothing.
	bare := is.Mint(t, workloadtest.Token{Issuer: "https://kubernetes.default.svc", ServiceAccount: "no-annotations"})
	is.SetServiceAccount("my-app", "no-annotations", nil)
	c3, errs3, err := calloutClient(t, ns, nats.Token(bare))
	if err != nil {
		t.Fatalf("a service account without annotations connects (with no rights): %v", err)
	}
	if err := c3.Publish("my-app.echo.one", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errs3; err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
		t.Errorf("publish without annotations: got %v, want a permissions violation", err)
	}
	// A subject that is not one is refused, with the annotation named in
	// the log, rather than silently dropped.
	is.SetServiceAccount("my-app", "typo", map[string]string{"nats.io/allowed-pub-subjects": "my-app..events"})
	typo := is.Mint(t, workloadtest.Token{Issuer: "https://kubernetes.default.svc", ServiceAccount: "typo"})
	if _, _, err := calloutClient(t, ns, nats.Token(typo)); err == nil {
		t.Error("a bad annotation: connected")
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
		`authd_nats_auth_requests_total{method="k8s",result="allowed"}`,
		`authd_nats_auth_requests_total{method="k8s",result="denied"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	logs := callout.stderr.String()
	for _, want := range []string{`"workload_issuer":"https://kubernetes.default.svc"`, `"service_account":"my-nats-client"`, `"code":"bad_annotation"`, `nats.io/allowed-pub-subjects`} {
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

// TestNATSCalloutWorkloadMapping: with AUTHD_NATS_WORKLOAD_PERMISSIONS=
// mapping, a service account gets the grants of the authd role `authd nats
// map` gave it — one role means the same for a person, a key and a pod —
// an unmapped one gets nothing, and an unmap applies to the next
// connection.
func TestNATSCalloutWorkloadMapping(t *testing.T) {
	t.Parallel()
	is := workloadtest.NewIssuer(t)
	inCluster := inClusterEnv(t, is)
	env := baseEnv(storetest.NewURL(t))
	role := storetest.NewRole(t)
	mustRun(t, env, "", "nats", "grant", role, "--pub", "mapped.>", "--sub", "mapped.>")
	mustRun(t, env, "", "nats", "map", "my-app/my-nats-client", role)
	ns := nkeyCalloutNATS(t, env)
	maps.Copy(env, inCluster)
	env["AUTHD_NATS_WORKLOAD_PERMISSIONS"] = "mapping"
	callout := startCallout(t, env)

	tok := is.Mint(t, workloadtest.Token{Issuer: "https://kubernetes.default.svc"})
	nc, _, err := calloutClient(t, ns, nats.Token(tok))
	if err != nil {
		t.Fatalf("mapped pod: %v\n%s", err, callout.stderr)
	}
	calloutEcho(t, nc, "mapped.one")
	nc.Close()

	other := is.Mint(t, workloadtest.Token{Issuer: "https://kubernetes.default.svc", ServiceAccount: "unmapped"})
	c2, errs, err := calloutClient(t, ns, nats.Token(other))
	if err != nil {
		t.Fatalf("unmapped pod connects (with no rights): %v", err)
	}
	if err := c2.Publish("mapped.one", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
		t.Errorf("unmapped pod's publish: got %v, want a permissions violation", err)
	}

	mustRun(t, env, "", "nats", "unmap", "my-app/my-nats-client")
	deadline := time.Now().Add(time.Minute)
	for {
		c3, errs3, err := calloutClient(t, ns, nats.Token(tok))
		if err != nil {
			t.Fatal(err)
		}
		c3.Publish("mapped.one", nil)
		c3.Flush()
		var denied bool
		select {
		case e := <-errs3:
			denied = e != nil && strings.Contains(e.Error(), "Permissions Violation")
		case <-time.After(2 * time.Second):
		}
		c3.Close()
		if denied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a minute after unmap, the pod still has the role's grants")
		}
	}
}
