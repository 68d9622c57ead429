package k8s_test

// The part of the Kubernetes API the manifests here use, as the JSON the
// API server reads. Decoded strictly (package strictyaml), a field that is
// not listed here fails the test: a typo, a misplaced field, or a new
// field, which is then added here with its Kubernetes name and type (see
// the API reference, https://kubernetes.io/docs/reference/kubernetes-api/).
// Writing the few types out keeps k8s.io/api and its dependencies out of
// the module.

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type objectMeta struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// object is what every Kubernetes object starts with.
type object struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
}

// v1 Namespace.
type namespace struct {
	object
}

// apps/v1 Deployment.
type deployment struct {
	object
	Spec struct {
		Replicas             *int32         `json:"replicas,omitempty"`
		RevisionHistoryLimit *int32         `json:"revisionHistoryLimit,omitempty"`
		MinReadySeconds      int32          `json:"minReadySeconds,omitempty"`
		Selector             *labelSelector `json:"selector"`
		Strategy             struct {
			Type          string `json:"type,omitempty"`
			RollingUpdate *struct {
				MaxUnavailable *intOrString `json:"maxUnavailable,omitempty"`
				MaxSurge       *intOrString `json:"maxSurge,omitempty"`
			} `json:"rollingUpdate,omitempty"`
		} `json:"strategy"`
		Template podTemplate `json:"template"`
	} `json:"spec"`
}

// batch/v1 Job.
type job struct {
	object
	Spec struct {
		BackoffLimit            *int32      `json:"backoffLimit,omitempty"`
		ActiveDeadlineSeconds   *int64      `json:"activeDeadlineSeconds,omitempty"`
		TTLSecondsAfterFinished *int32      `json:"ttlSecondsAfterFinished,omitempty"`
		Parallelism             *int32      `json:"parallelism,omitempty"`
		Completions             *int32      `json:"completions,omitempty"`
		Template                podTemplate `json:"template"`
	} `json:"spec"`
}

// v1 Service.
type service struct {
	object
	Spec struct {
		Type     string            `json:"type,omitempty"`
		Selector map[string]string `json:"selector,omitempty"`
		Ports    []struct {
			Name        string      `json:"name,omitempty"`
			Port        int32       `json:"port"`
			TargetPort  intOrString `json:"targetPort,omitempty"`
			Protocol    string      `json:"protocol,omitempty"`
			AppProtocol *string     `json:"appProtocol,omitempty"`
		} `json:"ports,omitempty"`
	} `json:"spec"`
}

// v1 Secret. Data is base64 in JSON, as in Kubernetes.
type secret struct {
	object
	Type       string            `json:"type,omitempty"`
	Data       map[string][]byte `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
}

// policy/v1 PodDisruptionBudget.
type podDisruptionBudget struct {
	object
	Spec struct {
		MinAvailable   *intOrString   `json:"minAvailable,omitempty"`
		MaxUnavailable *intOrString   `json:"maxUnavailable,omitempty"`
		Selector       *labelSelector `json:"selector"`
	} `json:"spec"`
}

// vaultStaticSecret mirrors the Vault Secrets Operator's
// secrets.hashicorp.com/v1beta1 VaultStaticSecret, so that a field it does
// not have fails the strict decode.
type vaultStaticSecret struct {
	object
	Spec struct {
		VaultAuthRef          string `json:"vaultAuthRef,omitempty"`
		Namespace             string `json:"namespace,omitempty"`
		Mount                 string `json:"mount"`
		Path                  string `json:"path"`
		Version               int    `json:"version,omitempty"`
		Type                  string `json:"type"`
		RefreshAfter          string `json:"refreshAfter,omitempty"`
		HMACSecretData        *bool  `json:"hmacSecretData,omitempty"`
		RolloutRestartTargets []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"rolloutRestartTargets,omitempty"`
		SyncConfig *struct {
			InstantUpdates bool `json:"instantUpdates,omitempty"`
		} `json:"syncConfig,omitempty"`
		Destination struct {
			Name           string            `json:"name"`
			Create         bool              `json:"create"`
			Overwrite      bool              `json:"overwrite,omitempty"`
			Labels         map[string]string `json:"labels,omitempty"`
			Annotations    map[string]string `json:"annotations,omitempty"`
			Type           string            `json:"type,omitempty"`
			Transformation *struct {
				Templates map[string]struct {
					Name string `json:"name,omitempty"`
					Text string `json:"text"`
				} `json:"templates,omitempty"`
				TransformationRefs []json.RawMessage `json:"transformationRefs,omitempty"`
				Includes           []string          `json:"includes,omitempty"`
				Excludes           []string          `json:"excludes,omitempty"`
				ExcludeRaw         bool              `json:"excludeRaw,omitempty"`
			} `json:"transformation,omitempty"`
		} `json:"destination"`
	} `json:"spec"`
}

// v1 ServiceAccount.
type serviceAccount struct {
	object
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken,omitempty"`
}

// rbac.authorization.k8s.io/v1 ClusterRole.
type clusterRole struct {
	object
	Rules []struct {
		APIGroups     []string `json:"apiGroups,omitempty"`
		Resources     []string `json:"resources,omitempty"`
		ResourceNames []string `json:"resourceNames,omitempty"`
		Verbs         []string `json:"verbs"`
	} `json:"rules"`
}

// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
type clusterRoleBinding struct {
	object
	RoleRef struct {
		APIGroup string `json:"apiGroup"`
		Kind     string `json:"kind"`
		Name     string `json:"name"`
	} `json:"roleRef"`
	Subjects []struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Namespace string `json:"namespace,omitempty"`
		APIGroup  string `json:"apiGroup,omitempty"`
	} `json:"subjects"`
}

// kustomization is the part of kustomize's Kustomization used here.
type kustomization struct {
	typeMeta
	Resources []string `json:"resources"`
}

type podTemplate struct {
	Metadata objectMeta `json:"metadata"`
	Spec     podSpec    `json:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool               `json:"automountServiceAccountToken,omitempty"`
	EnableServiceLinks            *bool               `json:"enableServiceLinks,omitempty"`
	TerminationGracePeriodSeconds *int64              `json:"terminationGracePeriodSeconds,omitempty"`
	RestartPolicy                 string              `json:"restartPolicy,omitempty"`
	ServiceAccountName            string              `json:"serviceAccountName,omitempty"`
	HostNetwork                   bool                `json:"hostNetwork,omitempty"`
	HostPID                       bool                `json:"hostPID,omitempty"`
	HostIPC                       bool                `json:"hostIPC,omitempty"`
	SecurityContext               *podSecurityContext `json:"securityContext,omitempty"`
	TopologySpreadConstraints     []struct {
		MaxSkew           int32          `json:"maxSkew"`
		TopologyKey       string         `json:"topologyKey"`
		WhenUnsatisfiable string         `json:"whenUnsatisfiable"`
		LabelSelector     *labelSelector `json:"labelSelector,omitempty"`
	} `json:"topologySpreadConstraints,omitempty"`
	InitContainers []containerSpec `json:"initContainers,omitempty"`
	Containers     []containerSpec `json:"containers"`
	Volumes        []volume        `json:"volumes,omitempty"`
}

// podAndContainerSecurity are the fields a pod's and a container's
// securityContext share; the container's win.
type podAndContainerSecurity struct {
	RunAsNonRoot   *bool           `json:"runAsNonRoot,omitempty"`
	RunAsUser      *int64          `json:"runAsUser,omitempty"`
	RunAsGroup     *int64          `json:"runAsGroup,omitempty"`
	SeccompProfile *seccompProfile `json:"seccompProfile,omitempty"`
}

type podSecurityContext struct {
	podAndContainerSecurity
	FSGroup *int64 `json:"fsGroup,omitempty"`
}

type securityContext struct {
	podAndContainerSecurity
	ReadOnlyRootFilesystem   *bool         `json:"readOnlyRootFilesystem,omitempty"`
	AllowPrivilegeEscalation *bool         `json:"allowPrivilegeEscalation,omitempty"`
	Privileged               *bool         `json:"privileged,omitempty"`
	Capabilities             *capabilities `json:"capabilities,omitempty"`
}

type capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

type seccompProfile struct {
	Type             string  `json:"type"`
	LocalhostProfile *string `json:"localhostProfile,omitempty"`
}

type containerSpec struct {
	Name            string   `json:"name"`
	Image           string   `json:"image,omitempty"`
	ImagePullPolicy string   `json:"imagePullPolicy,omitempty"`
	Command         []string `json:"command,omitempty"`
	Args            []string `json:"args,omitempty"`
	Ports           []struct {
		Name          string `json:"name,omitempty"`
		ContainerPort int32  `json:"containerPort"`
		Protocol      string `json:"protocol,omitempty"`
	} `json:"ports,omitempty"`
	Env       []envVar `json:"env,omitempty"`
	Resources struct {
		Requests map[string]quantity `json:"requests,omitempty"`
		Limits   map[string]quantity `json:"limits,omitempty"`
	} `json:"resources"`
	LivenessProbe   *probe           `json:"livenessProbe,omitempty"`
	ReadinessProbe  *probe           `json:"readinessProbe,omitempty"`
	StartupProbe    *probe           `json:"startupProbe,omitempty"`
	Lifecycle       *lifecycle       `json:"lifecycle,omitempty"`
	SecurityContext *securityContext `json:"securityContext,omitempty"`
	VolumeMounts    []volumeMount    `json:"volumeMounts,omitempty"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value,omitempty"`
	ValueFrom *struct {
		FieldRef *struct {
			APIVersion string `json:"apiVersion,omitempty"`
			FieldPath  string `json:"fieldPath"`
		} `json:"fieldRef,omitempty"`
		ResourceFieldRef *struct {
			ContainerName string    `json:"containerName,omitempty"`
			Resource      string    `json:"resource"`
			Divisor       *quantity `json:"divisor,omitempty"`
		} `json:"resourceFieldRef,omitempty"`
		ConfigMapKeyRef *keySelector `json:"configMapKeyRef,omitempty"`
		SecretKeyRef    *keySelector `json:"secretKeyRef,omitempty"`
	} `json:"valueFrom,omitempty"`
}

type keySelector struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

type probe struct {
	HTTPGet *struct {
		Path   string      `json:"path,omitempty"`
		Port   intOrString `json:"port"`
		Host   string      `json:"host,omitempty"`
		Scheme string      `json:"scheme,omitempty"`
	} `json:"httpGet,omitempty"`
	InitialDelaySeconds int32 `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds      int32 `json:"timeoutSeconds,omitempty"`
	PeriodSeconds       int32 `json:"periodSeconds,omitempty"`
	SuccessThreshold    int32 `json:"successThreshold,omitempty"`
	FailureThreshold    int32 `json:"failureThreshold,omitempty"`
}

type lifecycle struct {
	PostStart *lifecycleHandler `json:"postStart,omitempty"`
	PreStop   *lifecycleHandler `json:"preStop,omitempty"`
}

type lifecycleHandler struct {
	Exec *struct {
		Command []string `json:"command,omitempty"`
	} `json:"exec,omitempty"`
	Sleep *struct {
		Seconds int64 `json:"seconds"`
	} `json:"sleep,omitempty"`
}

type volumeMount struct {
	Name        string `json:"name"`
	MountPath   string `json:"mountPath"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
	SubPath     string `json:"subPath,omitempty"`
	SubPathExpr string `json:"subPathExpr,omitempty"`
}

type volume struct {
	Name   string `json:"name"`
	Secret *struct {
		SecretName  string `json:"secretName,omitempty"`
		DefaultMode *int32 `json:"defaultMode,omitempty"`
		Optional    *bool  `json:"optional,omitempty"`
		Items       []struct {
			Key  string `json:"key"`
			Path string `json:"path"`
			Mode *int32 `json:"mode,omitempty"`
		} `json:"items,omitempty"`
	} `json:"secret,omitempty"`
}

// labelSelector has matchLabels only: the manifests need no
// matchExpressions, and leaving them out keeps matches exact.
type labelSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// matches reports whether the selector picks pods with these labels. A nil
// selector picks none, as in Kubernetes; an empty one picks all.
func (ls *labelSelector) matches(set map[string]string) bool {
	return ls != nil && selects(ls.MatchLabels, set)
}

// empty reports whether the selector is missing or picks every pod.
func (ls *labelSelector) empty() bool { return ls == nil || len(ls.MatchLabels) == 0 }

func (ls *labelSelector) String() string {
	if ls == nil {
		return "<unset>"
	}
	return showLabels(ls.MatchLabels)
}

// selects reports whether every label of want is in set with that value,
// as an equality-based Kubernetes selector matches.
func selects(want, set map[string]string) bool {
	for k, v := range want {
		if got, ok := set[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// showLabels prints a label set the way kubectl writes a selector.
func showLabels(set map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(set)) {
		parts = append(parts, k+"="+set[k])
	}
	return strings.Join(parts, ",")
}

// intOrString is a port name or number, or a count or percentage, as
// Kubernetes' intstr.IntOrString: a JSON string or an int32.
type intOrString struct {
	isInt  bool
	intVal int32
	strVal string
}

func (v *intOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*v = intOrString{}
		return json.Unmarshal(b, &v.strVal)
	}
	*v = intOrString{isInt: true}
	return json.Unmarshal(b, &v.intVal)
}

func (v intOrString) MarshalJSON() ([]byte, error) {
	if v.isInt {
		return json.Marshal(v.intVal)
	}
	return json.Marshal(v.strVal)
}

func (v intOrString) String() string {
	if v.isInt {
		return strconv.Itoa(int(v.intVal))
	}
	return v.strVal
}

// quantity is a Kubernetes resource quantity such as 100m, 1 or 64Mi: a
// JSON string or number, kept exactly as a rational number.
type quantity struct {
	text string
	val  *big.Rat
}

var (
	quantityForm = regexp.MustCompile(`^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$`)
	quantityUnit = map[string]string{
		"Ki": "1024", "Mi": "1048576", "Gi": "1073741824", "Ti": "1099511627776",
		"Pi": "1125899906842624", "Ei": "1152921504606846976",
		"n": "1e-9", "u": "1e-6", "m": "1e-3", "": "1",
		"k": "1e3", "M": "1e6", "G": "1e9", "T": "1e12", "P": "1e15", "E": "1e18",
	}
)

func parseQuantity(s string) (quantity, error) {
	m := quantityForm.FindStringSubmatch(s)
	if m == nil {
		return quantity{}, fmt.Errorf("quantity %q: want a number with an optional suffix (100m, 1, 64Mi)", s)
	}
	num, ok := new(big.Rat).SetString(m[1])
	unit := quantityUnit[m[2]]
	if unit == "" {
		unit = "1" + m[2] // an exponent, e3
	}
	scale, ok2 := new(big.Rat).SetString(unit)
	if !ok || !ok2 {
		return quantity{}, fmt.Errorf("quantity %q: not a number", s)
	}
	return quantity{text: s, val: num.Mul(num, scale)}, nil
}

func (q *quantity) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	p, err := parseQuantity(strings.TrimSpace(s))
	if err != nil {
		return err
	}
	*q = p
	return nil
}

func (q quantity) MarshalJSON() ([]byte, error) { return json.Marshal(q.String()) }

func (q quantity) String() string {
	if q.val == nil {
		return "0"
	}
	return q.text
}

func (q quantity) Sign() int {
	if q.val == nil {
		return 0
	}
	return q.val.Sign()
}

func (q quantity) Cmp(o quantity) int {
	a, b := q.val, o.val
	if a == nil {
		a = new(big.Rat)
	}
	if b == nil {
		b = new(big.Rat)
	}
	return a.Cmp(b)
}
