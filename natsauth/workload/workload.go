// Package workload lets the NATS callout admit workloads by a token of a
// trusted external issuer (a Kubernetes service-account token), with
// permissions from the ServiceAccount's annotations or from authd's own
// mapping of service accounts to roles.
package workload

import (
	"context"

	"authd/store"
)

// Identity is who a verified workload token names.
type Identity struct {
	Issuer         string // the issuer URL the token was verified against
	Subject        string // sub, e.g. system:serviceaccount:my-app:my-nats-client
	Namespace      string // from kubernetes.io.namespace (or parsed from sub)
	ServiceAccount string // from kubernetes.io.serviceaccount.name (or sub)
	Pod            string // kubernetes.io.pod.name, when present
}

// Permissions says what a workload may publish and subscribe to.
type Permissions interface {
	Permissions(ctx context.Context, id Identity) (store.NATSPermissions, error)
}
