package workload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"authd/identity"
	"authd/store"
)

// The ServiceAccount annotations the seed's callout reads, with the same
// meaning: comma-separated subjects (NATS wildcards allowed) the workload
// may publish and subscribe to.
const (
	AnnotationPub = "nats.io/allowed-pub-subjects"
	AnnotationSub = "nats.io/allowed-sub-subjects"
)

// Defaults of AnnotationsConfig.
const (
	// DefaultAnnotationsTTL bounds how long a ServiceAccount read stands:
	// an annotation added, changed or removed applies to the next
	// connection at most this long after the change. One GET per service
	// account per TTL, whatever the connection rate.
	DefaultAnnotationsTTL = 10 * time.Second
	// DefaultAnnotationsStale is how long, past its TTL, the last
	// ServiceAccount read is still served while the API cannot be read.
	DefaultAnnotationsStale = time.Minute
	// maxServiceAccounts bounds the cache; past it, an arbitrary entry
	// makes room.
	maxServiceAccounts = 10000
	// maxServiceAccountBytes bounds the body read from the API: a
	// ServiceAccount is a few KB (annotations are at most 256 KB in all).
	maxServiceAccountBytes = 1 << 20
	apiTimeout             = 10 * time.Second
)

// AnnotationsConfig says where the Kubernetes API is and how to read it.
type AnnotationsConfig struct {
	// APIURL is the API server, https://host:port (in a pod:
	// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT).
	APIURL string
	// Client makes the requests; nil for one that trusts the CA
	// certificates in CAFile (the system's when CAFile is "").
	Client *http.Client
	CAFile string
	// TokenFile holds the bearer token, read again for each request:
	// projected service-account tokens are rotated in place. "" sends
	// none.
	TokenFile string
	// TTL is how long a ServiceAccount read is used (DefaultAnnotationsTTL
	// when 0).
	TTL time.Duration
	// Stale is how long past its TTL the last read is still served when
	// the API fails (DefaultAnnotationsStale when 0; negative: never).
	Stale time.Duration
	// SeedDefaults adds, for every ServiceAccount that exists, what the
	// seed's later releases grant without annotations: publish and
	// subscribe NAMESPACE.>, subscribe _INBOX.> and
	// _INBOX_NAMESPACE_NAME.>. Off by default: a ServiceAccount without
	// annotations gets no rights.
	SeedDefaults bool
	// Now is the clock of the cache (time.Now when nil).
	Now func() time.Time
	// Logger gets a warning when a stale read is served (slog.Default
	// when nil).
	Logger *slog.Logger
}

// Annotations gives a workload the NATS permissions written on its
// ServiceAccount's annotations, read from the Kubernetes API: only
// `get serviceaccounts` is needed.
type Annotations struct {
	base      *url.URL
	client    *http.Client
	tokenFile string
	ttl       time.Duration
	stale     time.Duration
	defaults  bool
	now       func() time.Time
	log       *slog.Logger
	cache     *identity.Cache[string, serviceAccount]
}

// serviceAccount is what one read of a ServiceAccount gave: its
// permissions, or why its annotations cannot be used.
type serviceAccount struct {
	perms    store.NATSPermissions
	bad      *AnnotationError
	loadedAt time.Time
}

// AnnotationError reports a subject in a ServiceAccount's annotation that
// is not a NATS subject. The workload is refused rather than given the
// other subjects: a typo should show where it is, not as a permission
// denied on some later publish. Its message names the ServiceAccount,
// the annotation and the subject, and is fit for the client.
type AnnotationError struct {
	Namespace, ServiceAccount, Annotation string
	Err                                   error // a *store.NATSSubjectError
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("ServiceAccount %s/%s: annotation %s: %v", e.Namespace, e.ServiceAccount, e.Annotation, e.Err)
}

func (e *AnnotationError) Unwrap() error { return e.Err }

// NewAnnotations checks cfg and returns an Annotations reading the API it
// names.
func NewAnnotations(cfg AnnotationsConfig) (*Annotations, error) {
	base, err := url.Parse(cfg.APIURL)
	if err != nil || base.Scheme != "https" || base.Host == "" || base.RawQuery != "" {
		return nil, fmt.Errorf("kubernetes API URL %q: want https://host:port", cfg.APIURL)
	}
	client := cfg.Client
	if client == nil {
		if client, err = caClient(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	a := &Annotations{
		base: base, client: client, tokenFile: cfg.TokenFile,
		ttl: cfg.TTL, stale: cfg.Stale, defaults: cfg.SeedDefaults,
		now: cfg.Now, log: cfg.Logger,
	}
	if a.ttl == 0 {
		a.ttl = DefaultAnnotationsTTL
	}
	if a.ttl < 0 {
		return nil, fmt.Errorf("kubernetes annotations TTL %s: want a positive duration", a.ttl)
	}
	if a.stale == 0 {
		a.stale = DefaultAnnotationsStale
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.cache = identity.NewCache[string, serviceAccount](maxServiceAccounts, a.now)
	return a, nil
}

// caClient is an HTTP client trusting the PEM certificates of caFile, or
// the system's when caFile is "".
func caClient(caFile string) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubernetes CA %s: no PEM certificate", caFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t, Timeout: apiTimeout}, nil
}

// Permissions returns what id's ServiceAccount's annotations allow. A
// ServiceAccount that does not exist, or has neither annotation, allows
// nothing (empty lists, which the callout turns into deny-all). A bad
// subject is an *AnnotationError. Any other error is the API's: the last
// read is then served up to Stale past its TTL.
func (a *Annotations) Permissions(ctx context.Context, id Identity) (store.NATSPermissions, error) {
	key, err := workloadKey(id)
	if err != nil {
		return store.NATSPermissions{}, err
	}
	sa, err := a.cache.Load(ctx, key, func(ctx context.Context) (serviceAccount, time.Time, error) {
		loadedAt := a.now()
		sa, err := a.read(ctx, id.Namespace, id.ServiceAccount)
		sa.loadedAt = loadedAt
		return sa, loadedAt.Add(a.ttl), err
	})
	if err != nil {
		old, ok := a.cache.Stale(key)
		if !ok || a.stale < 0 || a.now().Sub(old.loadedAt) > a.ttl+a.stale {
			return store.NATSPermissions{}, err
		}
		a.log.Warn("kubernetes API unavailable: serving the last ServiceAccount read",
			"namespace", id.Namespace, "service_account", id.ServiceAccount,
			"read_ago", a.now().Sub(old.loadedAt).Round(time.Second).String(), "err", err)
		sa = old
	}
	if sa.bad != nil {
		return store.NATSPermissions{}, sa.bad
	}
	return sa.perms, nil
}

// workloadKey is "namespace/name", once both are checked to be
// Kubernetes names: they go into the API's URL path.
func workloadKey(id Identity) (string, error) {
	key := id.Namespace + "/" + id.ServiceAccount
	if id.ServiceAccount == "*" {
		return "", &store.NATSWorkloadPatternError{Pattern: key, Reason: "not a service account name"}
	}
	if err := store.CheckNATSWorkloadPattern(key); err != nil {
		return "", err
	}
	return key, nil
}

// read gets the ServiceAccount ns/name from the API and turns its
// annotations into permissions.
func (a *Annotations) read(ctx context.Context, ns, name string) (serviceAccount, error) {
	u := a.base.JoinPath("api/v1/namespaces", ns, "serviceaccounts", name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return serviceAccount{}, fmt.Errorf("read ServiceAccount %s/%s: %w", ns, name, err)
	}
	req.Header.Set("Accept", "application/json")
	if a.tokenFile != "" {
		tok, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return serviceAccount{}, fmt.Errorf("read ServiceAccount %s/%s: API token: %w", ns, name, err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return serviceAccount{}, fmt.Errorf("read ServiceAccount %s/%s: %w", ns, name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxServiceAccountBytes))
	if err != nil {
		return serviceAccount{}, fmt.Errorf("read ServiceAccount %s/%s: %w", ns, name, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		// No ServiceAccount (deleted since its token was issued): no
		// rights, cached like any read so that one created later counts
		// within the TTL.
		return serviceAccount{perms: noPermissions()}, nil
	default:
		// The API's Status message says why (a missing RBAC grant names
		// the verb and resource); it never holds our token.
		var status struct{ Message string }
		_ = json.Unmarshal(body, &status)
		return serviceAccount{}, fmt.Errorf("read ServiceAccount %s/%s: kubernetes API: %s: %s", ns, name, resp.Status, status.Message)
	}
	var obj struct {
		Metadata struct {
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		return serviceAccount{}, fmt.Errorf("read ServiceAccount %s/%s: decode: %w", ns, name, err)
	}
	return a.permissions(ns, name, obj.Metadata.Annotations), nil
}

// permissions are what the annotations of ServiceAccount ns/name allow.
func (a *Annotations) permissions(ns, name string, annotations map[string]string) serviceAccount {
	p := noPermissions()
	for _, an := range []struct {
		key  string
		list *[]string
	}{{AnnotationPub, &p.PubAllow}, {AnnotationSub, &p.SubAllow}} {
		for _, s := range strings.Split(annotations[an.key], ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue // "a,b," and an empty annotation: nothing there
			}
			if err := store.CheckNATSSubject(s); err != nil {
				return serviceAccount{bad: &AnnotationError{Namespace: ns, ServiceAccount: name, Annotation: an.key, Err: err}}
			}
			*an.list = append(*an.list, s)
		}
	}
	if a.defaults {
		p.PubAllow = append(p.PubAllow, ns+".>")
		p.SubAllow = append(p.SubAllow, ns+".>", "_INBOX.>", "_INBOX_"+ns+"_"+name+".>")
	}
	if len(p.PubAllow) > 0 || len(p.SubAllow) > 0 {
		// The seed lets every client it admits answer requests (one
		// response each): a responder's reply subject is an inbox its
		// annotations do not name.
		p.AllowResponses = true
	}
	for _, l := range []*[]string{&p.PubAllow, &p.SubAllow} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	return serviceAccount{perms: p}
}

// noPermissions allows nothing: empty lists, not nil, as
// store.NATSPermissions returns for a role without grants.
func noPermissions() store.NATSPermissions {
	return store.NATSPermissions{PubAllow: []string{}, PubDeny: []string{}, SubAllow: []string{}, SubDeny: []string{}}
}
