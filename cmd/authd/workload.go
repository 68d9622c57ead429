package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"authd/natsauth/workload"
	"authd/store"
)

// The in-cluster defaults: the API server's issuer and JWKS, and the
// service-account mount that holds the pod's token and the cluster CA.
const (
	inClusterIssuer   = "https://kubernetes.default.svc"
	inClusterAPI      = "https://kubernetes.default.svc"
	inClusterJWKS     = "/openid/v1/jwks"
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// The sources of a workload's permissions (AUTHD_NATS_WORKLOAD_PERMISSIONS).
const (
	permsAnnotations = "annotations"
	permsMapping     = "mapping"
)

// workloadConfig is the trusted issuer of workload tokens for
// `authd nats-callout`, and where their permissions come from. Issuer.Issuer
// is "" when workloads are not admitted.
type workloadConfig struct {
	Issuer workload.IssuerConfig
	// Permissions is permsAnnotations (the ServiceAccount's
	// nats.io/allowed-{pub,sub}-subjects) or permsMapping (authd's own
	// mapping of service accounts to roles).
	Permissions string
	// APIServer is the Kubernetes API's base URL, and CAFile and TokenFile
	// how to reach it, for the annotations: set in-cluster only.
	APIServer, CAFile, TokenFile string
}

// loadWorkloadConfig reads the AUTHD_NATS_WORKLOAD_* variables, with the
// names of the nats-k8s-oidc-callout seed as aliases (JWT_ISSUER,
// JWKS_URL, JWT_AUDIENCE, K8S_IN_CLUSTER), so its Deployment's
// environment keeps working. Workloads are admitted when an issuer is set
// or K8S_IN_CLUSTER is true.
func loadWorkloadConfig(e *env) workloadConfig {
	var w workloadConfig
	issuer := aliased(e, "AUTHD_NATS_WORKLOAD_ISSUER", "JWT_ISSUER")
	jwks := aliased(e, "AUTHD_NATS_WORKLOAD_JWKS_URL", "JWKS_URL")
	audience := aliased(e, "AUTHD_NATS_WORKLOAD_AUDIENCE", "JWT_AUDIENCE")
	w.Permissions = e.oneOf("AUTHD_NATS_WORKLOAD_PERMISSIONS", permsAnnotations, permsAnnotations, permsMapping)
	inCluster := e.boolean("K8S_IN_CLUSTER", false)
	if inCluster {
		// As client-go's rest.InClusterConfig: the API server from the
		// variables kubelet sets, the pod's token and the cluster CA from
		// the service-account mount (AUTHD_NATS_WORKLOAD_SA_DIR moves it,
		// for tests and unusual mounts).
		api := inClusterAPI
		if host, port := e.getenv("KUBERNETES_SERVICE_HOST"), e.getenv("KUBERNETES_SERVICE_PORT"); host != "" && port != "" {
			api = "https://" + net.JoinHostPort(host, port)
		}
		dir := e.str("AUTHD_NATS_WORKLOAD_SA_DIR", serviceAccountDir)
		w.APIServer, w.CAFile, w.TokenFile = api, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "token")
		if issuer == "" {
			issuer = inClusterIssuer
		}
		if jwks == "" {
			jwks = api + inClusterJWKS
		}
	}
	if issuer == "" {
		for _, name := range []string{"AUTHD_NATS_WORKLOAD_JWKS_URL", "AUTHD_NATS_WORKLOAD_AUDIENCE", "AUTHD_NATS_WORKLOAD_SA_DIR"} {
			if e.getenv(name) != "" {
				e.fail(name, "set, but AUTHD_NATS_WORKLOAD_ISSUER (or JWT_ISSUER, or K8S_IN_CLUSTER=true) is not: whose tokens should it check?")
			}
		}
		return w
	}
	w.Issuer = workload.IssuerConfig{Issuer: issuer, JWKSURL: jwks, Audience: audience}
	if inCluster {
		// The JWKS is the API server's: the pod's token authenticates the
		// request (some clusters refuse anonymous reads), over the cluster CA.
		w.Issuer.CAFile, w.Issuer.TokenFile = w.CAFile, w.TokenFile
	}
	if _, err := workload.NewVerifier(workload.Config{Issuers: []workload.IssuerConfig{w.Issuer}}, slog.New(slog.DiscardHandler)); err != nil {
		e.fail("AUTHD_NATS_WORKLOAD_ISSUER", "%v", err)
	}
	return w
}

// aliased is the value of name, or of the seed's alias when name is not
// set; both set to different values is an error.
func aliased(e *env, name, alias string) string {
	v, a := e.getenv(name), e.getenv(alias)
	if v != "" && a != "" && v != a {
		e.fail(name, "%s and %s are both set, to different values: use one", name, alias)
	}
	if v == "" {
		return a
	}
	return v
}

// workloadPermissions builds the permission source w names: the
// ServiceAccount's annotations, read from the Kubernetes API (in a pod:
// K8S_IN_CLUSTER=true), or authd's own mapping of service accounts to
// roles, re-read every recheck and dropped at once by the authd_nats
// notifications (forget).
func workloadPermissions(w workloadConfig, db *store.DB, recheck time.Duration, log *slog.Logger) (p workload.Permissions, forget func(role string), forgetAll func(), err error) {
	if w.Permissions == permsMapping {
		m := workload.NewMapping(db, recheck, nil)
		return m, m.ForgetRole, m.ForgetAll, nil
	}
	if w.APIServer == "" {
		return nil, nil, nil, errors.New("AUTHD_NATS_WORKLOAD_PERMISSIONS=annotations reads ServiceAccounts from the Kubernetes API: run in a pod with K8S_IN_CLUSTER=true, or use mapping")
	}
	a, err := workload.NewAnnotations(workload.AnnotationsConfig{APIURL: w.APIServer, CAFile: w.CAFile, TokenFile: w.TokenFile, Logger: log})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("workload annotations: %w", err)
	}
	return a, func(string) {}, func() {}, nil
}
