package k8s_test

// The callout's manifests (nats-callout/): the nats-k8s-oidc-callout
// seed's deployment with authd — its own ServiceAccount with the seed's
// read-only RBAC on serviceaccounts, two replicas with probes on the
// health port, the seed's settings, and credentials from Secrets.

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

const (
	calloutDir  = "nats-callout"
	calloutName = "authd-nats-callout"
)

// loadCallout reads nats-callout/, with the Secrets of deploy/k8s it also
// mounts.
func loadCallout(t *testing.T) *manifests {
	t.Helper()
	m, errs := read(calloutDir)
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	for name, s := range load(t).secrets {
		m.secrets[name] = s
	}
	return m
}

func TestCalloutDeployment(t *testing.T) {
	m := loadCallout(t)
	d := m.deployments[calloutName]
	if d == nil {
		t.Fatalf("no Deployment %s; got %v", calloutName, sortedKeys(m.deployments))
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas: got %s, want 2", show(d.Spec.Replicas))
	}
	if sel := d.Spec.Selector; sel.empty() || !sel.matches(d.Spec.Template.Metadata.Labels) {
		t.Errorf("selector %q does not match the pod template labels", sel)
	}
	// The API server's Deployment must not pick up the callout's pods.
	if root := load(t).deployment(t); root.Spec.Selector.matches(d.Spec.Template.Metadata.Labels) {
		t.Errorf("deploy/k8s Deployment authd's selector %q matches the callout's pods", root.Spec.Selector)
	}
	spec := &d.Spec.Template.Spec
	c := container(t, spec, "authd")
	checkImage(t, c)
	if !slices.Equal(c.Args, []string{"nats-callout"}) {
		t.Errorf("args: got %q, want [nats-callout]", c.Args)
	}
	health := containerPort(t, c, "health")
	if got, _ := envValue(c, "AUTHD_NATS_HEALTH_ADDR"); got != fmt.Sprintf(":%d", health) {
		t.Errorf("AUTHD_NATS_HEALTH_ADDR: got %q, want :%d", got, health)
	}
	checkProbe(t, "liveness", c.LivenessProbe, c, "/healthz", health)
	checkProbe(t, "readiness", c.ReadinessProbe, c, "/readyz", health)
	checkResources(t, c)
	checkSecurity(t, spec, c)
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("enableServiceLinks: got %s, want false", show(spec.EnableServiceLinks))
	}

	// In-cluster: the pod's own token reads the JWKS and the ServiceAccounts.
	if spec.ServiceAccountName != calloutName || m.serviceAccts[calloutName] == nil {
		t.Errorf("serviceAccountName %q: want %s, defined here", spec.ServiceAccountName, calloutName)
	}
	if a := spec.AutomountServiceAccountToken; a == nil || !*a {
		t.Errorf("automountServiceAccountToken: got %s, want true (the token reads the JWKS and the ServiceAccounts)", show(a))
	}
	for name, want := range map[string]string{
		"K8S_IN_CLUSTER":                  "true",
		"JWT_AUDIENCE":                    "nats",
		"AUTHD_NATS_WORKLOAD_PERMISSIONS": "annotations",
	} {
		if got, _ := envValue(c, name); got != want {
			t.Errorf("env %s: got %q, want %q", name, got, want)
		}
	}

	files := checkSecretMounts(t, m, spec, c)
	for env, want := range map[string][2]string{
		"DATABASE_URL_FILE":           {"authd", "database-url"},
		"JWT_SECRET_FILE":             {"authd", "jwt-secret"},
		"AUTHD_NATS_CREDS":            {calloutName, "credentials"},
		"AUTHD_NATS_ISSUER_SEED_FILE": {calloutName, "issuer-seed"},
		"AUTHD_NATS_XKEY_SEED_FILE":   {calloutName, "xkey-seed"},
	} {
		got, ok := files[env]
		if !ok && env == "AUTHD_NATS_CREDS" { // not a *_FILE name
			v, _ := envValue(c, env)
			if name, key, err := secretFile(spec, c, v); err != nil {
				t.Errorf("env %s: %v", env, err)
			} else {
				got = [2]string{name, key}
			}
		}
		if got != want {
			t.Errorf("env %s: from Secret %s key %s, want %s key %s", env, got[0], got[1], want[0], want[1])
		}
	}
}

// TestCalloutRBAC: exactly the seed's permissions, bound to the callout's
// ServiceAccount.
func TestCalloutRBAC(t *testing.T) {
	m := loadCallout(t)
	r := m.clusterRoles[calloutName]
	if r == nil {
		t.Fatalf("no ClusterRole %s", calloutName)
	}
	if len(r.Rules) != 1 {
		t.Fatalf("ClusterRole rules: got %d, want 1", len(r.Rules))
	}
	rule := r.Rules[0]
	if !slices.Equal(rule.APIGroups, []string{""}) || !slices.Equal(rule.Resources, []string{"serviceaccounts"}) ||
		!slices.Equal(rule.Verbs, []string{"get", "list", "watch"}) || len(rule.ResourceNames) != 0 {
		t.Errorf("ClusterRole rule: got %+v, want get/list/watch on core serviceaccounts", rule)
	}
	b := m.roleBindings[calloutName]
	if b == nil {
		t.Fatalf("no ClusterRoleBinding %s", calloutName)
	}
	if b.RoleRef.APIGroup != "rbac.authorization.k8s.io" || b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != calloutName {
		t.Errorf("roleRef: got %+v, want ClusterRole %s", b.RoleRef, calloutName)
	}
	sa := m.serviceAccts[calloutName]
	if len(b.Subjects) != 1 || sa == nil || b.Subjects[0].Kind != "ServiceAccount" ||
		b.Subjects[0].Name != calloutName || b.Subjects[0].Namespace != sa.Metadata.Namespace {
		t.Errorf("subjects: got %+v, want the ServiceAccount %s", b.Subjects, calloutName)
	}
	ns := sortedKeys(load(t).namespaces)
	for _, o := range m.namespaced {
		if !slices.Contains(ns, o.Namespace) || o.Labels["app.kubernetes.io/name"] != "authd" {
			t.Errorf("%s: namespace %q (want one of %q), label app.kubernetes.io/name %q", o.Name, o.Namespace, ns, o.Labels["app.kubernetes.io/name"])
		}
	}
	k := m.kustomizations["kustomization.yaml"]
	if k == nil || !slices.Equal(k.Resources, []string{"rbac.yaml", "deployment.yaml"}) {
		t.Errorf("nats-callout/kustomization.yaml: got %+v, want rbac.yaml and deployment.yaml", k)
	}
}
