package k8s_test

// The Kubernetes manifests in this directory, checked without a cluster:
// every document is decoded strictly into the part of its Kubernetes API
// type the manifests use (api_test.go; an unknown or misspelt field, or a
// duplicate key, fails), and then the wiring between them is checked:
// labels and selectors, ports and probes, the security context, and that
// every file authd is told to read lies in a mounted Secret that has that
// key. No database, no network.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"authd/deploy/strictyaml"
)

const (
	nonrootUID = 65532 // distroless :nonroot, as in the Dockerfile
	authdPort  = 3001
	drainGrace = 10 // seconds: AUTHD_SHUTDOWN_GRACE's default
	keysDirEnv = "AUTHD_SIGNING_KEYS_DIR"
)

// manifests is every document of every *.yaml file here, decoded.
type manifests struct {
	files          map[string][]string // file -> "Kind/name" of its documents
	namespaces     map[string]*namespace
	deployments    map[string]*deployment
	services       map[string]*service
	jobs           map[string]*job
	secrets        map[string]*secret
	pdbs           map[string]*podDisruptionBudget
	vaultSecrets   map[string]*vaultStaticSecret
	serviceAccts   map[string]*serviceAccount
	clusterRoles   map[string]*clusterRole
	roleBindings   map[string]*clusterRoleBinding
	kustomizations map[string]*kustomization // by file
	namespaced     []*objectMeta
}

// target maps apiVersion and kind to a fresh object and a func that keeps it.
func (m *manifests) target(apiVersion, kind, name, file string) (any, func(), error) {
	key := kind + "/" + name
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		o := &namespace{}
		return o, func() { m.namespaces[name] = o }, nil
	case "apps/v1 Deployment":
		o := &deployment{}
		return o, func() { m.deployments[name] = o; m.namespaced = append(m.namespaced, &o.Metadata) }, nil
	case "v1 Service":
		o := &service{}
		return o, func() { m.services[name] = o; m.namespaced = append(m.namespaced, &o.Metadata) }, nil
	case "batch/v1 Job":
		o := &job{}
		return o, func() { m.jobs[name] = o; m.namespaced = append(m.namespaced, &o.Metadata) }, nil
	case "v1 Secret":
		o := &secret{}
		return o, func() { m.secrets[name] = o; m.namespaced = append(m.namespaced, &o.Metadata) }, nil
	case "policy/v1 PodDisruptionBudget":
		o := &podDisruptionBudget{}
		return o, func() { m.pdbs[name] = o; m.namespaced = append(m.namespaced, &o.Metadata) }, nil
	case "secrets.hashicorp.com/v1beta1 VaultStaticSecret":
		o := &vaultStaticSecret{}
		return o, func() { m.vaultSecrets[name] = o; m.namespaced = append(m.namespaced, &o.Metadata) }, nil
	case "v1 ServiceAccount":
		o := &serviceAccount{}
		return o, func() { m.serviceAccts[name] = o; m.namespaced = append(m.namespaced, &o.Metadata) }, nil
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		o := &clusterRole{}
		return o, func() { m.clusterRoles[name] = o }, nil
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		o := &clusterRoleBinding{}
		return o, func() { m.roleBindings[name] = o }, nil
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		o := &kustomization{}
		return o, func() { m.kustomizations[file] = o }, nil
	}
	return nil, nil, fmt.Errorf("%s: unexpected apiVersion %q kind %q (%s)", file, apiVersion, kind, key)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments splits a multi-document YAML file, dropping documents
// that hold only comments or nothing.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func showMode(m *int32) string {
	if m == nil {
		return "<unset>"
	}
	return fmt.Sprintf("%#o", *m)
}

// show prints what a pointer field holds, or <unset>.
func show[T any](p *T) string {
	if p == nil {
		return "<unset>"
	}
	if s, ok := any(p).(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprint(*p)
}

// header is what says which type a document decodes into.
type header struct {
	typeMeta
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// read decodes every manifest in dir; errs lists each problem found.
func read(dir string) (m *manifests, errs []error) {
	m = &manifests{
		files:          map[string][]string{},
		namespaces:     map[string]*namespace{},
		deployments:    map[string]*deployment{},
		services:       map[string]*service{},
		jobs:           map[string]*job{},
		secrets:        map[string]*secret{},
		pdbs:           map[string]*podDisruptionBudget{},
		vaultSecrets:   map[string]*vaultStaticSecret{},
		serviceAccts:   map[string]*serviceAccount{},
		clusterRoles:   map[string]*clusterRole{},
		roleBindings:   map[string]*clusterRoleBinding{},
		kustomizations: map[string]*kustomization{},
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, []error{err}
	}
	if yml, _ := filepath.Glob(filepath.Join(dir, "*.yml")); len(yml) > 0 {
		errs = append(errs, fmt.Errorf("files %q: name manifests *.yaml so that they are checked", yml))
	}
	seen := map[string]string{}
	for _, path := range files {
		file := filepath.Base(path)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, append(errs, err)
		}
		docs := splitDocuments(data)
		if len(docs) == 0 {
			errs = append(errs, fmt.Errorf("%s: no document", file))
		}
		for i, doc := range docs {
			var head header
			if err := yaml.Unmarshal(doc, &head); err != nil {
				errs = append(errs, fmt.Errorf("%s document %d: %w", file, i+1, err))
				continue
			}
			obj, keep, err := m.target(head.APIVersion, head.Kind, head.Metadata.Name, file)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := strictyaml.Unmarshal(doc, obj); err != nil {
				errs = append(errs, fmt.Errorf("%s document %d (%s): %w", file, i+1, head.Kind, err))
				continue
			}
			key := head.Kind + "/" + head.Metadata.Name
			if head.Kind != "Kustomization" {
				if head.Metadata.Name == "" {
					errs = append(errs, fmt.Errorf("%s document %d (%s): no metadata.name", file, i+1, head.Kind))
				}
				if other, dup := seen[key]; dup {
					errs = append(errs, fmt.Errorf("%s: %s is also in %s", file, key, other))
				}
				seen[key] = file
			}
			keep()
			m.files[file] = append(m.files[file], key)
		}
	}
	return m, errs
}

// load reads the manifests in this directory and stops the test on any
// problem.
func load(t *testing.T) *manifests {
	t.Helper()
	m, errs := read(".")
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	return m
}

// The objects the other tests look at; each must exist.
func (m *manifests) deployment(t *testing.T) *deployment {
	t.Helper()
	d := m.deployments["authd"]
	if d == nil {
		t.Fatalf("no Deployment authd; got %v", sortedKeys(m.deployments))
	}
	return d
}

func (m *manifests) job(t *testing.T) *job {
	t.Helper()
	j := m.jobs["authd-migrate"]
	if j == nil {
		t.Fatalf("no Job authd-migrate; got %v", sortedKeys(m.jobs))
	}
	return j
}

func (m *manifests) service(t *testing.T) *service {
	t.Helper()
	s := m.services["authd"]
	if s == nil {
		t.Fatalf("no Service authd; got %v", sortedKeys(m.services))
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func container(t *testing.T, spec *podSpec, name string) *containerSpec {
	t.Helper()
	if len(spec.InitContainers) != 0 {
		t.Errorf("init containers %d, want none", len(spec.InitContainers))
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("containers: got %d, want 1", len(spec.Containers))
	}
	c := &spec.Containers[0]
	if c.Name != name {
		t.Errorf("container name: got %q, want %q", c.Name, name)
	}
	return c
}

func envValue(c *containerSpec, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	want := map[string]bool{
		"namespace.yaml": true, "deployment.yaml": true, "service.yaml": true,
		"migrate-job.yaml": true, "secret.example.yaml": true,
		"vault-static-secret.yaml": true, "kustomization.yaml": true,
	}
	for file := range want {
		if len(m.files[file]) == 0 {
			t.Errorf("%s: missing or empty", file)
		}
	}
	if len(m.namespaces) != 1 {
		t.Fatalf("namespaces: got %v, want one", sortedKeys(m.namespaces))
	}
	ns := sortedKeys(m.namespaces)[0]
	for _, o := range m.namespaced {
		if got := o.Namespace; got != ns {
			t.Errorf("%s: namespace %q, want %q (namespace.yaml)", o.Name, got, ns)
		}
		if got := o.Labels["app.kubernetes.io/name"]; got != "authd" {
			t.Errorf("%s: label app.kubernetes.io/name %q, want %q", o.Name, got, "authd")
		}
	}
}

// TestStrictDecodingFails makes sure the decoder refuses what
// Kubernetes refuses, so that the tests cannot pass vacuously.
func TestStrictDecodingFails(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {Replicas: 2}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 2, replicas: 3}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n",
	} {
		if err := strictyaml.Unmarshal([]byte(doc), &deployment{}); err == nil {
			t.Errorf("strictyaml.Unmarshal(%q): got no error, want one", doc)
		}
	}
	if got := len(splitDocuments([]byte("# only a comment\n---\na: 1\n---\n\n"))); got != 1 {
		t.Errorf("splitDocuments: got %d documents, want 1", got)
	}
}

// TestMisspeltFieldsFail misspells, in a copy of each document, every key
// that names a field (not the keys of labels, stringData and other maps,
// which are data), once with a letter added and once with its first
// letter's case changed: each must fail the decode.
func TestMisspeltFieldsFail(t *testing.T) {
	m := load(t)
	files, _ := filepath.Glob("*.yaml")
	sub, _ := filepath.Glob(filepath.Join(calloutDir, "*.yaml"))
	files = append(files, sub...)
	checked := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(data) {
			var head header
			var tree any
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(doc, &tree); err != nil {
				t.Fatal(err)
			}
			obj, _, err := m.target(head.APIVersion, head.Kind, head.Metadata.Name, file)
			if err != nil {
				t.Fatal(err)
			}
			misspell(tree, reflect.TypeOf(obj), "", func(path, typo string) {
				checked++
				js, err := json.Marshal(tree)
				if err != nil {
					t.Fatal(err)
				}
				fresh := reflect.New(reflect.TypeOf(obj).Elem()).Interface()
				if err := strictyaml.Unmarshal(js, fresh); err == nil {
					t.Errorf("%s document %d: %s written %q: decoded without an error", file, i+1, path, typo)
				}
			})
		}
	}
	t.Logf("misspelt %d field names", checked)
	if checked < 400 {
		t.Errorf("misspelt %d keys, want at least 400 (every field name in the manifests, twice)", checked)
	}
}

// misspell walks the decoded YAML tree along the Go type t and, for each
// key that names a struct field, renames it in place to each typo, calls
// try, and puts the key back.
func misspell(tree any, t reflect.Type, path string, try func(path, typo string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, _ := tree.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			v := obj[k]
			first := k[:1]
			flipped := strings.ToUpper(first)
			if flipped == first {
				flipped = strings.ToLower(first)
			}
			for _, typo := range []string{k + "x", flipped + k[1:]} {
				delete(obj, k)
				obj[typo] = v
				try(path+"."+k, typo)
				delete(obj, typo)
				obj[k] = v
			}
			if f, ok := fieldByJSONName(t, k); ok {
				misspell(v, f.Type, path+"."+k, try)
			}
		}
	case reflect.Map:
		obj, _ := tree.(map[string]any)
		for k, v := range obj {
			misspell(v, t.Elem(), path+"."+k, try)
		}
	case reflect.Slice:
		list, _ := tree.([]any)
		for i, v := range list {
			misspell(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), try)
		}
	}
}

// fieldByJSONName finds the field of struct t (or of a struct embedded in
// it) whose json tag names it name.
func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for _, f := range reflect.VisibleFields(t) {
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// TestTypoInAManifestFails copies this directory, misspells one field in
// one file of the copy, and checks that reading the copy fails and names
// that file.
func TestTypoInAManifestFails(t *testing.T) {
	load(t) // the manifests themselves are right
	for _, tc := range []struct{ file, field, typo string }{
		{calloutDir + "/deployment.yaml", "serviceAccountName:", "serviceAccount:"},
		{calloutDir + "/rbac.yaml", "verbs:", "verb:"},
		{calloutDir + "/rbac.yaml", "roleRef:", "roleref:"},
		{"deployment.yaml", "replicas:", "replica:"},
		{"deployment.yaml", "readOnlyRootFilesystem:", "readOnlyRootFileSystem:"},
		{"deployment.yaml", "containerPort:", "containerport:"},
		{"deployment.yaml", "defaultMode:", "defaultmode:"},
		{"migrate-job.yaml", "ttlSecondsAfterFinished:", "ttlSecondAfterFinished:"},
		{"service.yaml", "targetPort:", "TargetPort:"},
		{"poddisruptionbudget.yaml", "maxUnavailable:", "maxUnavailible:"},
		{"secret.example.yaml", "stringData:", "stringdata:"},
		{"vault-static-secret.yaml", "excludeRaw:", "excludeRAW:"},
		{"namespace.yaml", "labels:", "label:"},
		{"kustomization.yaml", "resources:", "resource:"},
	} {
		dir := t.TempDir()
		from := filepath.Dir(tc.file)
		files, _ := filepath.Glob(filepath.Join(from, "*.yaml"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if file == tc.file {
				if !bytes.Contains(b, []byte(tc.field)) {
					t.Fatalf("%s: no %q to misspell", file, tc.field)
				}
				b = bytes.Replace(b, []byte(tc.field), []byte(tc.typo), 1)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(file)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, errs := read(dir)
		if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), filepath.Base(tc.file)) {
			t.Errorf("%s with %q as %q: got %v, want an error naming the file", tc.file, tc.field, tc.typo, err)
		}
	}
}

func TestDeployment(t *testing.T) {
	m := load(t)
	d := m.deployment(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas: got %s, want 2", show(d.Spec.Replicas))
	}
	sel := d.Spec.Selector
	if sel.empty() {
		t.Fatalf("selector %q: empty, want matchLabels", sel)
	}
	podLabels := d.Spec.Template.Metadata.Labels
	if !sel.matches(podLabels) {
		t.Errorf("selector %q does not match the pod template labels %q", sel, showLabels(podLabels))
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" {
		got := "<unset>"
		if ru != nil {
			got = show(ru.MaxUnavailable)
		}
		t.Errorf("rollingUpdate.maxUnavailable: got %s, want 0 (keep two pods serving during a rollout)", got)
	}

	spec := &d.Spec.Template.Spec
	c := container(t, spec, "authd")
	checkImage(t, c)
	if !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("args: got %q, want %q", c.Args, []string{"serve"})
	}

	port := containerPort(t, c, "http")
	if port != authdPort {
		t.Errorf("container port http: got %d, want %d", port, authdPort)
	}
	if got, _ := envValue(c, "AUTHD_ADDR"); got != fmt.Sprintf(":%d", port) {
		t.Errorf("AUTHD_ADDR: got %q, want %q", got, fmt.Sprintf(":%d", port))
	}
	// /metrics on a port of its own, which the Service does not expose
	// (TestServiceSelectsTheDeployment): not for whoever reaches the API.
	metrics := containerPort(t, c, "metrics")
	if metrics == port {
		t.Errorf("container port metrics: got %d, the API's port", metrics)
	}
	if got, _ := envValue(c, "AUTHD_METRICS_ADDR"); got != fmt.Sprintf(":%d", metrics) {
		t.Errorf("AUTHD_METRICS_ADDR: got %q, want %q", got, fmt.Sprintf(":%d", metrics))
	}
	for name, want := range map[string]string{
		"DATABASE_URL_FILE": "/var/run/secrets/authd/database-url",
		"JWT_SECRET_FILE":   "/var/run/secrets/authd/jwt-secret",
		keysDirEnv:          "/var/run/secrets/authd/keys",
	} {
		if got, _ := envValue(c, name); got != want {
			t.Errorf("env %s: got %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"AUTHD_JWT_ISS", "AUTHD_JWT_AUD"} {
		if got, _ := envValue(c, name); got == "" {
			t.Errorf("env %s: got %q, want a value", name, got)
		}
	}
	for _, e := range c.Env {
		if strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "DATABASE_URL") {
			if e.ValueFrom != nil || !(strings.HasSuffix(e.Name, "_FILE") || strings.HasSuffix(e.Name, "_DIR")) {
				t.Errorf("env %s: secrets go in files (%s_FILE), not in the environment", e.Name, e.Name)
			}
		}
	}

	checkProbe(t, "liveness", c.LivenessProbe, c, "/healthz", authdPort)
	checkProbe(t, "readiness", c.ReadinessProbe, c, "/readyz", authdPort)
	if c.LivenessProbe != nil && c.ReadinessProbe != nil {
		// A liveness probe that failed with the database would restart
		// every pod during a database outage.
		if c.LivenessProbe.HTTPGet.Path == c.ReadinessProbe.HTTPGet.Path {
			t.Errorf("liveness and readiness both probe %q", c.LivenessProbe.HTTPGet.Path)
		}
		if lp, rp := c.LivenessProbe, c.ReadinessProbe; lp.PeriodSeconds*lp.FailureThreshold <= rp.PeriodSeconds*rp.FailureThreshold {
			t.Errorf("liveness gives up after %ds, readiness after %ds: want liveness slower", lp.PeriodSeconds*lp.FailureThreshold, rp.PeriodSeconds*rp.FailureThreshold)
		}
	}

	checkResources(t, c)
	checkSecurity(t, spec, c)

	var preStop int64
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if c.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("preStop: got %+v, want a sleep action (the image has no shell)", c.Lifecycle.PreStop)
		} else {
			preStop = c.Lifecycle.PreStop.Sleep.Seconds
		}
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g <= preStop+drainGrace {
		t.Errorf("terminationGracePeriodSeconds: got %s, want more than preStop %ds + drain %ds", show(g), preStop, drainGrace)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("enableServiceLinks: got %s, want false (a Service named authd injects AUTHD_* variables)", show(spec.EnableServiceLinks))
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken: got %s, want false", show(spec.AutomountServiceAccountToken))
	}
}

func checkImage(t *testing.T, c *containerSpec) {
	t.Helper()
	if c.Image == "" || !strings.ContainsAny(c.Image, ":@") {
		t.Errorf("image: got %q, want a tag or digest", c.Image)
	}
	// The Dockerfile's ENTRYPOINT is /authd: set the subcommand with args.
	if len(c.Command) != 0 {
		t.Errorf("command: got %q, want none (the image's entrypoint /authd)", c.Command)
	}
}

// containerPort is the number of c's port called name.
func containerPort(t *testing.T, c *containerSpec, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			if p.Protocol != "" && p.Protocol != "TCP" {
				t.Errorf("port %s: protocol %q, want TCP", name, p.Protocol)
			}
			return p.ContainerPort
		}
	}
	t.Errorf("container %s: no port named %q in %+v", c.Name, name, c.Ports)
	return 0
}

// resolvePort finds the container port a probe or a Service's targetPort
// names, by name or by number.
func resolvePort(c *containerSpec, p intOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (!p.isInt && cp.Name == p.strVal) || (p.isInt && cp.ContainerPort == p.intVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func checkProbe(t *testing.T, kind string, p *probe, c *containerSpec, path string, want int32) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: got %+v, want GET %s", kind, p, path)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s probe path: got %q, want %q", kind, p.HTTPGet.Path, path)
	}
	if port, ok := resolvePort(c, p.HTTPGet.Port); !ok || port != want {
		t.Errorf("%s probe port %q: got container port %d, want %d", kind, p.HTTPGet.Port.String(), port, want)
	}
	if s := p.HTTPGet.Scheme; s != "" && s != "HTTP" {
		t.Errorf("%s probe scheme: got %q, want HTTP", kind, s)
	}
	if p.PeriodSeconds < 1 || p.PeriodSeconds > 30 {
		t.Errorf("%s probe periodSeconds: got %d, want 1 to 30", kind, p.PeriodSeconds)
	}
	if p.TimeoutSeconds < 1 || p.TimeoutSeconds >= p.PeriodSeconds {
		t.Errorf("%s probe timeoutSeconds: got %d, want at least 1 and under periodSeconds %d", kind, p.TimeoutSeconds, p.PeriodSeconds)
	}
	if p.FailureThreshold < 2 {
		t.Errorf("%s probe failureThreshold: got %d, want at least 2 (one slow answer is not an outage)", kind, p.FailureThreshold)
	}
}

func checkResources(t *testing.T, c *containerSpec) {
	t.Helper()
	for _, r := range []string{"cpu", "memory"} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || req.Sign() <= 0 {
			t.Errorf("%s: resources.requests.%s: got %q, want a positive value", c.Name, r, req.String())
		}
		if !okLim || lim.Sign() <= 0 {
			t.Errorf("%s: resources.limits.%s: got %q, want a positive value", c.Name, r, lim.String())
		}
		if okReq && okLim && req.Cmp(lim) > 0 {
			t.Errorf("%s: resources.requests.%s %q above the limit %q", c.Name, r, req.String(), lim.String())
		}
	}
}

// checkSecurity checks the effective security context of c in spec: the
// container's own settings, else the pod's.
func checkSecurity(t *testing.T, spec *podSpec, c *containerSpec) {
	t.Helper()
	pod := spec.SecurityContext
	if pod == nil {
		pod = &podSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", c.Name)
		sc = &securityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Errorf("%s: runAsNonRoot: got %s, want true", c.Name, show(nonRoot))
	}
	uid := sc.RunAsUser
	if uid == nil {
		uid = pod.RunAsUser
	}
	if uid == nil || *uid != nonrootUID {
		t.Errorf("%s: runAsUser: got %s, want %d", c.Name, show(uid), nonrootUID)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem: got %s, want true", c.Name, show(sc.ReadOnlyRootFilesystem))
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation: got %s, want false", c.Name, show(sc.AllowPrivilegeEscalation))
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged: got true, want false", c.Name)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("%s: capabilities: got %+v, want drop [ALL], add none", c.Name, sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != "RuntimeDefault" {
		t.Errorf("%s: seccompProfile: got %+v, want RuntimeDefault", c.Name, seccomp)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces in use", c.Name)
	}
}

func TestServiceSelectsTheDeployment(t *testing.T) {
	m := load(t)
	d, s, j := m.deployment(t), m.service(t), m.job(t)
	if s.Spec.Type != "ClusterIP" {
		t.Errorf("service type: got %q, want %q", s.Spec.Type, "ClusterIP")
	}
	if len(s.Spec.Selector) == 0 {
		t.Fatal("service has no selector")
	}
	sel := s.Spec.Selector
	if !selects(sel, d.Spec.Template.Metadata.Labels) {
		t.Errorf("service selector %q does not select the Deployment's pods %q", showLabels(sel), showLabels(d.Spec.Template.Metadata.Labels))
	}
	if selects(sel, j.Spec.Template.Metadata.Labels) {
		t.Errorf("service selector %q also selects the migration Job's pods %q", showLabels(sel), showLabels(j.Spec.Template.Metadata.Labels))
	}
	if dsel := d.Spec.Selector; dsel.matches(j.Spec.Template.Metadata.Labels) {
		t.Errorf("deployment selector %q also matches the migration Job's pods", dsel)
	}
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("service ports: got %d, want 1", len(s.Spec.Ports))
	}
	p := s.Spec.Ports[0]
	c := container(t, &d.Spec.Template.Spec, "authd")
	if p.Name != "http" || p.Port != authdPort {
		t.Errorf("service port: got %q %d, want %q %d", p.Name, p.Port, "http", authdPort)
	}
	if target, ok := resolvePort(c, p.TargetPort); !ok || target != authdPort {
		t.Errorf("service targetPort %q: got container port %d, want %d", p.TargetPort.String(), target, authdPort)
	}
	if p.Protocol != "" && p.Protocol != "TCP" {
		t.Errorf("service port protocol: got %q, want TCP", p.Protocol)
	}

	for name, pdb := range m.pdbs {
		if psel := pdb.Spec.Selector; psel.empty() || !psel.matches(d.Spec.Template.Metadata.Labels) {
			t.Errorf("PodDisruptionBudget %s: selector %q does not select the Deployment's pods", name, psel)
		}
		if mu := pdb.Spec.MaxUnavailable; mu == nil || !mu.isInt || mu.intVal < 1 || d.Spec.Replicas == nil || mu.intVal >= *d.Spec.Replicas {
			t.Errorf("PodDisruptionBudget %s: maxUnavailable %s, want 1 to replicas-1 (%s)", name, show(mu), show(d.Spec.Replicas))
		}
	}
}

var secretKeyName = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// mounted is where a path in a container comes from.
type mounted struct {
	mount  volumeMount
	volume volume
	rel    string // path below the mount point; "" for the mount point
}

// resolve finds the volume a path in c lies in: the deepest mount that
// holds it, as the kernel would.
func resolve(spec *podSpec, c *containerSpec, path string) (mounted, error) {
	var best *volumeMount
	for i, vm := range c.VolumeMounts {
		mp := strings.TrimSuffix(vm.MountPath, "/")
		if (path == mp || strings.HasPrefix(path, mp+"/")) && (best == nil || len(mp) > len(strings.TrimSuffix(best.MountPath, "/"))) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		return mounted{}, fmt.Errorf("%s is under no volumeMount of container %s", path, c.Name)
	}
	if best.SubPath != "" || best.SubPathExpr != "" {
		return mounted{}, fmt.Errorf("volumeMount %s uses subPath: its files are never updated", best.Name)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(path, strings.TrimSuffix(best.MountPath, "/")), "/")
	for _, v := range spec.Volumes {
		if v.Name == best.Name {
			return mounted{mount: *best, volume: v, rel: rel}, nil
		}
	}
	return mounted{}, fmt.Errorf("volumeMount %s: no volume of that name", best.Name)
}

// secretFile resolves path to the Secret and key it is read from.
func secretFile(spec *podSpec, c *containerSpec, path string) (secret, key string, err error) {
	mf, err := resolve(spec, c, path)
	if err != nil {
		return "", "", err
	}
	sv := mf.volume.Secret
	if sv == nil {
		return "", "", fmt.Errorf("%s: volume %s is not a Secret", path, mf.volume.Name)
	}
	if mf.rel == "" {
		return "", "", fmt.Errorf("%s is the mount point of %s, not a file in it", path, mf.volume.Name)
	}
	if len(sv.Items) == 0 {
		if strings.Contains(mf.rel, "/") {
			return "", "", fmt.Errorf("%s: no key of Secret %s can be the path %q", path, sv.SecretName, mf.rel)
		}
		return sv.SecretName, mf.rel, nil
	}
	for _, it := range sv.Items {
		if it.Path == mf.rel {
			return sv.SecretName, it.Key, nil
		}
	}
	return "", "", fmt.Errorf("%s: volume %s (Secret %s) has no item with path %q", path, mf.volume.Name, sv.SecretName, mf.rel)
}

func secretKeys(s *secret) []string {
	var keys []string
	for k := range s.Data {
		keys = append(keys, k)
	}
	for k := range s.StringData {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkSecretMounts checks every *_FILE variable of c against its volumes
// and the example Secrets, and returns the Secret and key of each.
func checkSecretMounts(t *testing.T, m *manifests, spec *podSpec, c *containerSpec) map[string][2]string {
	t.Helper()
	files := map[string][2]string{}
	for _, e := range c.Env {
		if !strings.HasSuffix(e.Name, "_FILE") {
			continue
		}
		name, key, err := secretFile(spec, c, e.Value)
		if err != nil {
			t.Errorf("env %s: %v", e.Name, err)
			continue
		}
		files[e.Name] = [2]string{name, key}
		s := m.secrets[name]
		if s == nil {
			t.Errorf("env %s: Secret %q is not in secret.example.yaml", e.Name, name)
			continue
		}
		if !slices.Contains(secretKeys(s), key) {
			t.Errorf("env %s: Secret %s has keys %q, want %q", e.Name, name, secretKeys(s), key)
		}
	}
	for _, vm := range c.VolumeMounts {
		if !vm.ReadOnly {
			t.Errorf("%s: volumeMount %s: readOnly false, want true", c.Name, vm.Name)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret == nil {
			t.Errorf("volume %s: want a Secret volume", v.Name)
			continue
		}
		if m := v.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
			t.Errorf("volume %s: defaultMode %s, want no access for others (0440)", v.Name, showMode(m))
		}
		if v.Secret.Optional != nil && *v.Secret.Optional {
			t.Errorf("volume %s: optional, want required (authd needs it)", v.Name)
		}
		for _, it := range v.Secret.Items {
			if !secretKeyName.MatchString(it.Key) {
				t.Errorf("volume %s: item key %q is not a valid Secret key", v.Name, it.Key)
			}
		}
	}
	// A mount nested in another must not hide the outer volume's files.
	for _, outer := range c.VolumeMounts {
		for _, inner := range c.VolumeMounts {
			op := strings.TrimSuffix(outer.MountPath, "/")
			if !strings.HasPrefix(inner.MountPath, op+"/") {
				continue
			}
			rel := strings.TrimPrefix(inner.MountPath, op+"/")
			for _, v := range spec.Volumes {
				if v.Name != outer.Name || v.Secret == nil {
					continue
				}
				for _, it := range v.Secret.Items {
					if it.Path == rel || strings.HasPrefix(it.Path, rel+"/") {
						t.Errorf("mount %s at %s hides %s of volume %s", inner.Name, inner.MountPath, it.Path, outer.Name)
					}
				}
				if len(v.Secret.Items) == 0 {
					t.Errorf("mount %s at %s is nested in volume %s, which projects every key of its Secret: list items", inner.Name, inner.MountPath, outer.Name)
				}
			}
		}
	}
	return files
}

func TestSecretFilesAreMounted(t *testing.T) {
	m := load(t)
	d := m.deployment(t)
	spec := &d.Spec.Template.Spec
	c := container(t, spec, "authd")
	files := checkSecretMounts(t, m, spec, c)
	for _, env := range []string{"DATABASE_URL_FILE", "JWT_SECRET_FILE"} {
		if _, ok := files[env]; !ok {
			t.Errorf("env %s: not set or not resolved", env)
		}
	}
	if got, want := files["DATABASE_URL_FILE"][1], "database-url"; got != want {
		t.Errorf("DATABASE_URL_FILE key: got %q, want %q", got, want)
	}
	if got, want := files["JWT_SECRET_FILE"][1], "jwt-secret"; got != want {
		t.Errorf("JWT_SECRET_FILE key: got %q, want %q", got, want)
	}

	// The key directory is a whole Secret mounted at that directory, so
	// that a key added to the Secret appears without a Deployment change.
	dir, _ := envValue(c, keysDirEnv)
	mf, err := resolve(spec, c, dir)
	if err != nil {
		t.Fatalf("%s: %v", keysDirEnv, err)
	}
	if mf.rel != "" {
		t.Errorf("%s %q: inside volume %s at %q, want the mount point of its own volume", keysDirEnv, dir, mf.volume.Name, mf.rel)
	}
	sv := mf.volume.Secret
	if sv == nil {
		t.Fatalf("%s: volume %s is not a Secret", keysDirEnv, mf.volume.Name)
	}
	if len(sv.Items) != 0 {
		t.Errorf("%s: volume %s lists items %+v, want the whole Secret (new keys must appear on their own)", keysDirEnv, mf.volume.Name, sv.Items)
	}
	if sv.SecretName == files["DATABASE_URL_FILE"][0] {
		t.Errorf("%s: Secret %s also holds the database URL: the key directory would hold it too", keysDirEnv, sv.SecretName)
	}
	keys := m.secrets[sv.SecretName]
	if keys == nil {
		t.Fatalf("%s: Secret %q is not in secret.example.yaml", keysDirEnv, sv.SecretName)
	}
	pems := 0
	for _, k := range secretKeys(keys) {
		switch {
		case strings.HasSuffix(k, ".pem") || strings.HasSuffix(k, ".json"):
			pems++
		case k == "signing_kid":
		default:
			t.Errorf("Secret %s: key %q, want <kid>.pem, <kid>.json or signing_kid", sv.SecretName, k)
		}
	}
	if pems == 0 {
		t.Errorf("Secret %s: keys %q, want at least one <kid>.pem", sv.SecretName, secretKeys(keys))
	}
}

func TestExampleSecretsArePlaceholders(t *testing.T) {
	m := load(t)
	for _, key := range m.files["secret.example.yaml"] {
		name := strings.TrimPrefix(key, "Secret/")
		s := m.secrets[name]
		if s == nil {
			t.Errorf("secret.example.yaml: %s, want only Secrets", key)
			continue
		}
		if len(s.Data) != 0 {
			t.Errorf("Secret %s: data, want stringData (placeholders a reader can see)", name)
		}
		for k, v := range s.StringData {
			if !secretKeyName.MatchString(k) {
				t.Errorf("Secret %s: key %q is not a valid Secret key", name, k)
			}
			if !strings.Contains(v, "REPLACE-ME") {
				t.Errorf("Secret %s key %s: got %q, want a REPLACE-ME placeholder", name, k, v)
			}
			if strings.Contains(v, "PRIVATE KEY") || strings.Contains(v, "-----BEGIN") {
				t.Errorf("Secret %s key %s: holds a PEM block, want a placeholder", name, k)
			}
		}
		// A placeholder JWT secret must be one authd refuses (< 32 bytes).
		if v, ok := s.StringData["jwt-secret"]; ok && len(v) >= 32 {
			t.Errorf("Secret %s key jwt-secret: %d bytes, want a placeholder under 32 so that authd refuses it", name, len(v))
		}
	}
}

func TestMigrateJob(t *testing.T) {
	m := load(t)
	d, j := m.deployment(t), m.job(t)
	spec := &j.Spec.Template.Spec
	c := container(t, spec, "migrate")
	dc := container(t, &d.Spec.Template.Spec, "authd")
	checkImage(t, c)
	if c.Image != dc.Image {
		t.Errorf("job image: got %q, want the Deployment's %q", c.Image, dc.Image)
	}
	if want := []string{"migrate", "up"}; !slices.Equal(c.Args, want) {
		t.Errorf("job args: got %q, want %q", c.Args, want)
	}
	if len(c.Ports) != 0 || c.LivenessProbe != nil || c.ReadinessProbe != nil {
		t.Errorf("job container: ports or probes, want none")
	}
	checkResources(t, c)
	checkSecurity(t, spec, c)
	if spec.RestartPolicy != "Never" && spec.RestartPolicy != "OnFailure" {
		t.Errorf("restartPolicy: got %q, want Never or OnFailure", spec.RestartPolicy)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("job automountServiceAccountToken: got %s, want false", show(spec.AutomountServiceAccountToken))
	}
	if j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit < 1 || *j.Spec.BackoffLimit > 10 {
		t.Errorf("backoffLimit: got %s, want 1 to 10", show(j.Spec.BackoffLimit))
	}
	if j.Spec.TTLSecondsAfterFinished == nil || *j.Spec.TTLSecondsAfterFinished <= 0 {
		t.Errorf("ttlSecondsAfterFinished: got %s, want a positive number", show(j.Spec.TTLSecondsAfterFinished))
	}
	if p := j.Spec.Parallelism; p != nil && *p != 1 {
		t.Errorf("parallelism: got %d, want 1", *p)
	}

	// Least privilege (issue 12): the Job migrates as the owner of schema
	// auth, from its own key; serve logs in as a member of authd_app and
	// never has the owner's URL mounted.
	jobFiles := checkSecretMounts(t, m, spec, c)
	deployFiles := checkSecretMounts(t, m, &d.Spec.Template.Spec, dc)
	if got, want := jobFiles["DATABASE_URL_FILE"], [2]string{deployFiles["DATABASE_URL_FILE"][0], "migrate-database-url"}; got != want || got[0] == "" {
		t.Errorf("job DATABASE_URL_FILE: Secret and key %q, want %q", got, want)
	}
	if got, want := deployFiles["DATABASE_URL_FILE"][1], "database-url"; got != want {
		t.Errorf("Deployment DATABASE_URL_FILE key: got %q, want %q", got, want)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret == nil || v.Secret.SecretName != jobFiles["DATABASE_URL_FILE"][0] {
			continue
		}
		if len(v.Secret.Items) == 0 {
			t.Errorf("Deployment volume %s projects all of Secret %s, the owner's migrate-database-url too: list items", v.Name, v.Secret.SecretName)
		}
		for _, it := range v.Secret.Items {
			if it.Key == "migrate-database-url" {
				t.Errorf("Deployment volume %s mounts the owner's migrate-database-url", v.Name)
			}
		}
	}
	if s := m.secrets[jobFiles["DATABASE_URL_FILE"][0]]; s != nil {
		owner, app := dbUser(t, s.StringData["migrate-database-url"]), dbUser(t, s.StringData["database-url"])
		if owner == app || app == "postgres" {
			t.Errorf("example Secret: serve logs in as %q and migrations as %q; want a login role of its own for serve", app, owner)
		}
	}
	for _, e := range c.Env {
		if e.Name == "JWT_SECRET_FILE" || e.Name == keysDirEnv {
			t.Errorf("job env %s: migrations need only the database URL", e.Name)
		}
	}
}

// dbUser is the user of the database URL raw.
func dbUser(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		t.Fatalf("database URL %q: want postgres://USER:PASSWORD@HOST/DB (%v)", raw, err)
	}
	return u.User.Username()
}

func TestVaultStaticSecrets(t *testing.T) {
	m := load(t)
	d, j := m.deployment(t), m.job(t)
	mountedSecrets := map[string]bool{}
	for _, spec := range []*podSpec{&d.Spec.Template.Spec, &j.Spec.Template.Spec} {
		for _, v := range spec.Volumes {
			if v.Secret != nil {
				mountedSecrets[v.Secret.SecretName] = true
			}
		}
	}
	synced := map[string]string{}
	for name, v := range m.vaultSecrets {
		s := v.Spec
		dest := s.Destination.Name
		if other, dup := synced[dest]; dup {
			t.Errorf("VaultStaticSecrets %s and %s both write Secret %s", name, other, dest)
		}
		synced[dest] = name
		if !mountedSecrets[dest] {
			t.Errorf("VaultStaticSecret %s: destination %q, want a Secret the pods mount (%q)", name, dest, sortedKeys(mountedSecrets))
		}
		if !s.Destination.Create {
			t.Errorf("VaultStaticSecret %s: destination.create false, want true", name)
		}
		if s.RefreshAfter != "60s" {
			t.Errorf("VaultStaticSecret %s: refreshAfter %q, want %q", name, s.RefreshAfter, "60s")
		}
		if s.Type != "kv-v2" && s.Type != "kv-v1" {
			t.Errorf("VaultStaticSecret %s: type %q, want kv-v2 or kv-v1", name, s.Type)
		}
		if s.Mount == "" || s.Path == "" || s.VaultAuthRef == "" {
			t.Errorf("VaultStaticSecret %s: mount %q, path %q, vaultAuthRef %q: want all set", name, s.Mount, s.Path, s.VaultAuthRef)
		}
		if tr := s.Destination.Transformation; tr == nil || !tr.ExcludeRaw {
			t.Errorf("VaultStaticSecret %s: want transformation.excludeRaw (no _raw key next to authd's files)", name)
		}
		for _, r := range s.RolloutRestartTargets {
			if r.Kind != "Deployment" || m.deployments[r.Name] == nil {
				t.Errorf("VaultStaticSecret %s: rolloutRestartTargets %s/%s is not a Deployment here", name, r.Kind, r.Name)
			}
		}
		if s.HMACSecretData != nil && !*s.HMACSecretData {
			t.Errorf("VaultStaticSecret %s: hmacSecretData false, want the default (true)", name)
		}
	}
	for name := range mountedSecrets {
		if synced[name] == "" {
			t.Errorf("Secret %s is mounted but no VaultStaticSecret writes it", name)
		}
	}
}

func TestKustomization(t *testing.T) {
	m := load(t)
	k := m.kustomizations["kustomization.yaml"]
	if k == nil {
		t.Fatal("no kustomization.yaml in deploy/k8s")
	}
	want := []string{"deployment.yaml", "namespace.yaml", "service.yaml"}
	if len(m.pdbs) > 0 {
		want = append(want, "poddisruptionbudget.yaml")
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources: got %q, want %q (the Secrets and the Job are applied on their own)", got, want)
	}
	for _, r := range k.Resources {
		if len(m.files[r]) == 0 {
			t.Errorf("kustomization resource %q: no such manifest here", r)
		}
	}
}

// The manifests rely on the image: a non-root distroless image whose
// entrypoint is /authd and which listens on 3001.
func TestDockerfileMatches(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatalf("read the Dockerfile the manifests rely on: %v", err)
	}
	for _, want := range []string{":nonroot", "EXPOSE 3001", `ENTRYPOINT ["/authd"]`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("Dockerfile: no %q, which the manifests rely on", want)
		}
	}
}
