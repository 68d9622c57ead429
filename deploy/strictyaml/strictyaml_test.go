package strictyaml_test

import (
	"strings"
	"testing"

	"authd/deploy/strictyaml"
)

type spec struct {
	Replicas *int32            `json:"replicas,omitempty"`
	Paused   bool              `json:"paused,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Ports    []struct {
		Name string `json:"name"`
	} `json:"ports,omitempty"`
}

type meta struct {
	Kind string `json:"kind"`
}

type doc struct {
	meta
	Spec spec `json:"spec"`
}

func TestUnmarshal(t *testing.T) {
	var d doc
	in := "kind: X\nspec: {replicas: 2, paused: false, labels: {Any-Case: v}, ports: [{name: http}]}\n"
	if err := strictyaml.Unmarshal([]byte(in), &d); err != nil {
		t.Fatalf("Unmarshal(%q): %v", in, err)
	}
	if d.Kind != "X" || d.Spec.Replicas == nil || *d.Spec.Replicas != 2 || d.Spec.Labels["Any-Case"] != "v" || len(d.Spec.Ports) != 1 || d.Spec.Ports[0].Name != "http" {
		t.Errorf("Unmarshal(%q): got %+v", in, d)
	}
}

// TestUnmarshalFails makes sure the decoder refuses what Kubernetes and
// the gateways refuse, so that the tests using it cannot pass vacuously.
func TestUnmarshalFails(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"kind: X\nspec: {replica: 2}\n", `unknown field "replica"`},
		{"kind: X\nspec: {Replicas: 2}\n", "case-sensitive"},
		{"kind: X\nspec: {Paused: false}\n", "case-sensitive"},
		{"kind: X\nspec: {ports: [{Name: http}]}\n", "case-sensitive"},
		{"Kind: X\nspec: {}\n", "case-sensitive"},
		{"kind: X\nspec: {labels: {a: b}, Labels: {c: d}}\n", "case-sensitive"},
		{"kind: X\nspec: {replicas: 2, replicas: 3}\n", "already set"},
		{"kind: X\nspec: {replicas: two}\n", "cannot unmarshal"},
		{"kind: X\nspec: {replicas: 2}\nstatus: {}\n", `unknown field "status"`},
	} {
		var d doc
		err := strictyaml.Unmarshal([]byte(tc.doc), &d)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Unmarshal(%q): got error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
}
