package workload_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"authd/natsauth/workload"
	"authd/store"
)

// fakeAPI stands in for the Kubernetes API's
// GET /api/v1/namespaces/{ns}/serviceaccounts/{name}: it answers with the
// annotations set for ns/name (404 for a name it has none for), or with
// status when that is not 0, and records the requests.
type fakeAPI struct {
	mu          sync.Mutex
	annotations map[string]map[string]string
	status      int
	tokens      []string // the bearer token of each request
	paths       []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = append(f.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	f.paths = append(f.paths, r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	if f.status != 0 {
		w.WriteHeader(f.status)
		json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "message": "serviceaccounts is forbidden: test"})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/namespaces/")
	parts := strings.Split(rest, "/")
	if !ok || r.Method != http.MethodGet || len(parts) != 3 || parts[1] != "serviceaccounts" {
		http.Error(w, `{"kind":"Status","message":"bad path"}`, http.StatusBadRequest)
		return
	}
	an, ok := f.annotations[parts[0]+"/"+parts[2]]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "reason": "NotFound"})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{
		"kind": "ServiceAccount", "apiVersion": "v1",
		"metadata": map[string]any{"name": parts[2], "namespace": parts[0], "annotations": an},
	})
}

func (f *fakeAPI) set(key string, an map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.annotations == nil {
		f.annotations = map[string]map[string]string{}
	}
	f.annotations[key] = an
}

func (f *fakeAPI) setStatus(s int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = s
}

func (f *fakeAPI) requests() (tokens, paths []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slicesClone(f.tokens), slicesClone(f.paths)
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// clock is a time a test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newAnnotations is an Annotations on a TLS stand-in for the API, its CA
// given as a file as in a pod, with the token file it reads.
func newAnnotations(t *testing.T, api *fakeAPI, mod func(*workload.AnnotationsConfig)) (*workload.Annotations, *clock, string) {
	t.Helper()
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	writeFile(t, ca, string(pemCert(srv.Certificate().Raw)))
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, "token-one\n")
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg := workload.AnnotationsConfig{APIURL: srv.URL, CAFile: ca, TokenFile: tokenFile, Now: clk.now}
	if mod != nil {
		mod(&cfg)
	}
	a, err := workload.NewAnnotations(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, clk, tokenFile
}

func writeFile(t *testing.T, name, s string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

var client = workload.Identity{
	Issuer: "https://kubernetes.default.svc", Subject: "system:serviceaccount:my-app:my-nats-client",
	Namespace: "my-app", ServiceAccount: "my-nats-client", Pod: "my-pod",
}

func perms(t *testing.T, p workload.Permissions, id workload.Identity) store.NATSPermissions {
	t.Helper()
	got, err := p.Permissions(context.Background(), id)
	if err != nil {
		t.Fatalf("Permissions(%s/%s): %v", id.Namespace, id.ServiceAccount, err)
	}
	return got
}

func checkPerms(t *testing.T, p workload.Permissions, id workload.Identity, want store.NATSPermissions) {
	t.Helper()
	if got := perms(t, p, id); !reflect.DeepEqual(got, want) {
		t.Errorf("Permissions(%s/%s):\ngot  %+v\nwant %+v", id.Namespace, id.ServiceAccount, got, want)
	}
}

var none = store.NATSPermissions{PubAllow: []string{}, PubDeny: []string{}, SubAllow: []string{}, SubDeny: []string{}}

// allowed is the permissions of the seed's example ServiceAccount.
var seedExample = store.NATSPermissions{
	PubAllow: []string{"my-app.events.>", "my-app.requests.>"}, PubDeny: []string{},
	SubAllow: []string{"my-app.commands.>", "my-app.responses.>"}, SubDeny: []string{},
	AllowResponses: true,
}

// TestAnnotationsSeedServiceAccount: the seed's client-sa.yaml, unchanged,
// gives exactly its subjects (and answering requests, as the seed does),
// read with the bearer token from the file, through the API's path; the
// token is read again for each request, so a rotated one is used.
func TestAnnotationsSeedServiceAccount(t *testing.T) {
	api := &fakeAPI{}
	api.set("my-app/my-nats-client", map[string]string{
		workload.AnnotationPub:                             "my-app.requests.>,my-app.events.>",
		workload.AnnotationSub:                             " my-app.responses.> , my-app.commands.>,",
		"kubectl.kubernetes.io/last-applied-configuration": "{}",
	})
	a, clk, tokenFile := newAnnotations(t, api, nil)

	checkPerms(t, a, client, seedExample)
	checkPerms(t, a, client, seedExample) // cached: no second request
	writeFile(t, tokenFile, "token-two")
	clk.add(workload.DefaultAnnotationsTTL)
	checkPerms(t, a, client, seedExample)

	tokens, paths := api.requests()
	if want := []string{"token-one", "token-two"}; !reflect.DeepEqual(tokens, want) {
		t.Errorf("bearer tokens: got %q, want %q", tokens, want)
	}
	want := "/api/v1/namespaces/my-app/serviceaccounts/my-nats-client"
	if !reflect.DeepEqual(paths, []string{want, want}) {
		t.Errorf("paths: got %q, want %q twice", paths, want)
	}
}

// TestAnnotationsChangeWithinTTL: an annotation change applies to the
// next connection once the TTL has passed, and not before; a removed
// annotation takes the rights away.
func TestAnnotationsChangeWithinTTL(t *testing.T) {
	api := &fakeAPI{}
	api.set("my-app/my-nats-client", map[string]string{workload.AnnotationPub: "a.>"})
	a, clk, _ := newAnnotations(t, api, func(c *workload.AnnotationsConfig) { c.TTL = 30 * time.Second })
	pubOnly := func(s ...string) store.NATSPermissions {
		return store.NATSPermissions{PubAllow: s, PubDeny: []string{}, SubAllow: []string{}, SubDeny: []string{}, AllowResponses: true}
	}
	checkPerms(t, a, client, pubOnly("a.>"))

	api.set("my-app/my-nats-client", map[string]string{workload.AnnotationPub: "b.>"})
	clk.add(30*time.Second - time.Nanosecond)
	checkPerms(t, a, client, pubOnly("a.>"))
	clk.add(time.Nanosecond)
	checkPerms(t, a, client, pubOnly("b.>"))

	api.set("my-app/my-nats-client", map[string]string{})
	clk.add(30 * time.Second)
	checkPerms(t, a, client, none)
}

// TestAnnotationsNoServiceAccount: a ServiceAccount that does not exist
// (404) allows nothing; one created later counts after the TTL.
func TestAnnotationsNoServiceAccount(t *testing.T) {
	api := &fakeAPI{}
	a, clk, _ := newAnnotations(t, api, nil)
	checkPerms(t, a, client, none)

	api.set("my-app/my-nats-client", map[string]string{workload.AnnotationSub: "x"})
	clk.add(workload.DefaultAnnotationsTTL)
	checkPerms(t, a, client, store.NATSPermissions{PubAllow: []string{}, PubDeny: []string{}, SubAllow: []string{"x"}, SubDeny: []string{}, AllowResponses: true})
}

// TestAnnotationsBadSubject: one bad subject refuses the workload with an
// *AnnotationError naming the ServiceAccount, the annotation and the
// subject, rather than silently leaving it out.
func TestAnnotationsBadSubject(t *testing.T) {
	api := &fakeAPI{}
	api.set("my-app/my-nats-client", map[string]string{
		workload.AnnotationPub: "my-app.ok.>",
		workload.AnnotationSub: "my-app.ok, my-app..events",
	})
	a, _, _ := newAnnotations(t, api, nil)
	_, err := a.Permissions(context.Background(), client)
	var bad *workload.AnnotationError
	if !errors.As(err, &bad) {
		t.Fatalf("got %v, want an *AnnotationError", err)
	}
	var subj *store.NATSSubjectError
	if bad.Annotation != workload.AnnotationSub || !errors.As(err, &subj) || subj.Subject != "my-app..events" {
		t.Errorf("got %+v, want annotation %s and subject my-app..events", bad, workload.AnnotationSub)
	}
	for _, s := range []string{"my-app/my-nats-client", workload.AnnotationSub, `"my-app..events"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}

// TestAnnotationsAPIFailure: an API error is an error, not a refusal with
// no rights; the last read stands for Stale past its TTL, then no longer.
func TestAnnotationsAPIFailure(t *testing.T) {
	api := &fakeAPI{}
	api.set("my-app/my-nats-client", map[string]string{workload.AnnotationPub: "my-app.requests.>,my-app.events.>",
		workload.AnnotationSub: "my-app.responses.>,my-app.commands.>"})
	a, clk, _ := newAnnotations(t, api, nil)
	other := workload.Identity{Namespace: "other", ServiceAccount: "sa"}

	checkPerms(t, a, client, seedExample)
	api.setStatus(http.StatusInternalServerError)
	clk.add(workload.DefaultAnnotationsTTL + workload.DefaultAnnotationsStale)
	checkPerms(t, a, client, seedExample) // stale, at the bound
	if _, err := a.Permissions(context.Background(), other); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("never read, API down: got %v, want the API's 500", err)
	}
	clk.add(time.Nanosecond)
	if _, err := a.Permissions(context.Background(), client); err == nil {
		t.Error("past the stale bound: got no error")
	}

	// A missing RBAC grant: the API's reason is in the error.
	api.setStatus(http.StatusForbidden)
	if _, err := a.Permissions(context.Background(), other); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("403: got %v, want the API's message", err)
	}

	// Back: read again.
	api.setStatus(0)
	checkPerms(t, a, client, seedExample)
}

// TestAnnotationsBadIdentity: a namespace or name that is not a
// Kubernetes name never reaches the API's URL.
func TestAnnotationsBadIdentity(t *testing.T) {
	api := &fakeAPI{}
	a, _, _ := newAnnotations(t, api, nil)
	for _, id := range []workload.Identity{
		{Namespace: "..", ServiceAccount: "x"},
		{Namespace: "a", ServiceAccount: "../../secrets/x"},
		{Namespace: "a", ServiceAccount: "*"},
		{Namespace: "", ServiceAccount: "x"},
		{Namespace: "A", ServiceAccount: "x"},
	} {
		if _, err := a.Permissions(context.Background(), id); err == nil {
			t.Errorf("%+v: got no error", id)
		}
	}
	if _, paths := api.requests(); len(paths) != 0 {
		t.Errorf("requests made: %q", paths)
	}
}

// TestAnnotationsSeedDefaults: with SeedDefaults, every existing
// ServiceAccount also gets the seed's namespace and inbox subjects.
func TestAnnotationsSeedDefaults(t *testing.T) {
	api := &fakeAPI{}
	api.set("my-app/my-nats-client", map[string]string{workload.AnnotationPub: "shared.>"})
	api.set("my-app/bare", nil)
	a, _, _ := newAnnotations(t, api, func(c *workload.AnnotationsConfig) { c.SeedDefaults = true })
	checkPerms(t, a, client, store.NATSPermissions{
		PubAllow: []string{"my-app.>", "shared.>"}, PubDeny: []string{},
		SubAllow: []string{"_INBOX.>", "_INBOX_my-app_my-nats-client.>", "my-app.>"}, SubDeny: []string{},
		AllowResponses: true,
	})
	checkPerms(t, a, workload.Identity{Namespace: "my-app", ServiceAccount: "bare"}, store.NATSPermissions{
		PubAllow: []string{"my-app.>"}, PubDeny: []string{},
		SubAllow: []string{"_INBOX.>", "_INBOX_my-app_bare.>", "my-app.>"}, SubDeny: []string{},
		AllowResponses: true,
	})
	checkPerms(t, a, workload.Identity{Namespace: "my-app", ServiceAccount: "missing"}, none)
}

func TestNewAnnotationsRefusesPlainHTTP(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:443", "", "https://", "10.0.0.1:443"} {
		if _, err := workload.NewAnnotations(workload.AnnotationsConfig{APIURL: u}); err == nil {
			t.Errorf("%q: got no error", u)
		}
	}
}
