package deploy_test

// The Helm chart (deploy/helm/bedrock-gateway) is the one source of the
// Kubernetes manifests. These tests lint and render it with helm (found
// through $HELM or PATH; skipped without it, failed under CI=true), decode
// every rendered object strictly into its Kubernetes API type, load the
// rendered gateway.yaml through the gateway's own loader, and check that
// the kustomize base in deploy/kubernetes/ is the chart's current output
// and the chart's copy of the alert rules is deploy/prometheus/alerts.yaml.
//
// go test ./deploy -run 'TestKustomizeBaseIsRendered|TestChartAlertsInSync' -update
// rewrites both from their sources.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/bedrock-gateway/gateway/internal/gateway"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/ and the chart's copy of the alert rules from their sources")

const (
	chartDir = "helm/bedrock-gateway"
	// release is the release name the tests render with; the chart names
	// its objects after it (bedrock-gateway: no prefix).
	release = "bedrock-gateway"
	// kubeVersion is passed to helm: a helm built with `go install` does
	// not know its Kubernetes version and assumes v1.20, which the chart's
	// kubeVersion constraint refuses.
	kubeVersion  = "v1.31.0"
	baseValues   = "helm/kustomize-base-values.yaml"
	generatedBy  = "# Generated from deploy/helm/bedrock-gateway (values: deploy/helm/kustomize-base-values.yaml)\n# by `go test ./deploy -run TestKustomizeBaseIsRendered -update`. Edit the chart, not this file.\n"
	gatewayYAML  = "gateway.yaml"
	adminPortNum = 9090
	httpsPortNum = 8443
)

// helmBinary returns the helm to run: $HELM, else helm on PATH. Without
// one the test is skipped, except under CI=true, where it fails: CI
// installs helm (go install helm.sh/helm/v3/cmd/helm).
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h, err := exec.LookPath("helm")
	if err == nil {
		return h
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("helm not found ($HELM or PATH) and CI=true: install it with go install helm.sh/helm/v3/cmd/helm@v3.22.0")
	}
	t.Skip("helm not found ($HELM or PATH)")
	return ""
}

func runHelm(t *testing.T, helm string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out, nil
}

// renderChart runs helm template with the values files and --set pairs.
func renderChart(t *testing.T, helm string, valuesFiles []string, set ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", release, chartDir, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return runHelm(t, helm, args...)
}

// renderedDoc is one object of helm template's output.
type renderedDoc struct {
	source string // the template, e.g. templates/deployment.yaml
	data   []byte // the YAML, without the "# Source:" line
}

func splitRendered(out []byte) []renderedDoc {
	var docs []renderedDoc
	for _, part := range strings.Split("\n"+string(out), "\n---\n") {
		src := ""
		var body []string
		for _, line := range strings.Split(part, "\n") {
			if s, ok := strings.CutPrefix(line, "# Source: "); ok && src == "" {
				src = s
				continue
			}
			body = append(body, line)
		}
		text := strings.TrimSpace(strings.Join(body, "\n"))
		if src == "" || text == "" {
			continue
		}
		_, src, _ = strings.Cut(src, "/") // drop the chart name
		docs = append(docs, renderedDoc{source: src, data: []byte(text + "\n")})
	}
	return docs
}

// --- Custom resources: the fields the chart writes, decoded strictly. ---

type serviceMonitorCR struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel  string               `json:"jobLabel"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name" yaml:"name"`
		Rules []struct {
			Alert       string            `json:"alert" yaml:"alert"`
			Expr        string            `json:"expr" yaml:"expr"`
			For         string            `json:"for,omitempty" yaml:"for"`
			Labels      map[string]string `json:"labels" yaml:"labels"`
			Annotations map[string]string `json:"annotations" yaml:"annotations"`
		} `json:"rules" yaml:"rules"`
	} `json:"groups" yaml:"groups"`
}

type prometheusRuleCR struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

type certificateCR struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName string `json:"secretName"`
		IssuerRef  struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group"`
		} `json:"issuerRef"`
		DNSNames    []string `json:"dnsNames"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
	} `json:"spec"`
}

// newTyped returns the API type of apiVersion/kind, or nil.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "networking.k8s.io/v1 Ingress":
		return &networkingv1.Ingress{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &serviceMonitorCR{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &prometheusRuleCR{}
	case "cert-manager.io/v1 Certificate":
		return &certificateCR{}
	}
	return nil
}

// release is a rendered chart, decoded.
type renderedRelease struct {
	byKind map[string][]any
	docs   []renderedDoc
	config *gateway.Config
	cfgRaw string
}

// decodeRelease decodes every object strictly (unknown fields are errors)
// into its API type and the ConfigMap's gateway.yaml through the gateway's
// loader.
func decodeRelease(t *testing.T, out []byte) *renderedRelease {
	t.Helper()
	r := &renderedRelease{byKind: map[string][]any{}, docs: splitRendered(out)}
	if len(r.docs) == 0 {
		t.Fatalf("helm template rendered no object:\n%s", out)
	}
	for _, d := range r.docs {
		var tm metav1.TypeMeta
		if err := k8syaml.Unmarshal(d.data, &tm); err != nil {
			t.Fatalf("%s: %v", d.source, err)
		}
		obj := newTyped(tm.APIVersion, tm.Kind)
		if obj == nil {
			t.Errorf("%s: %s %s is not a kind the chart is known to render", d.source, tm.APIVersion, tm.Kind)
			continue
		}
		if err := k8syaml.UnmarshalStrict(d.data, obj); err != nil {
			t.Errorf("%s: %s %s does not decode strictly: %v\n%s", d.source, tm.APIVersion, tm.Kind, err, d.data)
			continue
		}
		r.byKind[tm.Kind] = append(r.byKind[tm.Kind], obj)
	}
	cms := r.byKind["ConfigMap"]
	if len(cms) != 1 {
		t.Fatalf("rendered %d ConfigMaps, want 1 (gateway.yaml)", len(cms))
	}
	r.cfgRaw = cms[0].(*corev1.ConfigMap).Data[gatewayYAML]
	cfg, err := gateway.Parse([]byte(r.cfgRaw), noEnv)
	if err != nil {
		t.Fatalf("the rendered gateway.yaml does not load: %v\n%s", err, r.cfgRaw)
	}
	r.config = cfg
	return r
}

func only[T any](t *testing.T, r *renderedRelease, kind string) T {
	t.Helper()
	objs := r.byKind[kind]
	if len(objs) != 1 {
		t.Fatalf("rendered %d %s, want 1", len(objs), kind)
	}
	return objs[0].(T)
}

func kinds(r *renderedRelease) []string {
	var ks []string
	for k, objs := range r.byKind {
		for range objs {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

func selects(sel map[string]string, lbls map[string]string) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(lbls))
}

func TestHelmChart(t *testing.T) {
	helm := helmBinary(t)
	base := []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Service", "ServiceAccount"}
	for _, tc := range []struct {
		name   string
		values []string
		kinds  []string
	}{
		{"defaults", nil, base},
		{"all-on", []string{chartDir + "/ci/all-on-values.yaml"}, []string{
			"Certificate", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy",
			"PodDisruptionBudget", "PrometheusRule", "Secret", "Service", "Service", "ServiceAccount", "ServiceMonitor"}},
		{"nlb", []string{chartDir + "/examples/nlb-values.yaml"}, base},
		{"alb", []string{chartDir + "/examples/alb-values.yaml"}, append(slices.Clone(base), "Ingress")},
		{"kustomize base", []string{baseValues}, append(slices.Clone(base), "ServiceMonitor")},
		{"no autoscaling", nil, []string{"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Service", "ServiceAccount"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var set []string
			if tc.name == "no autoscaling" {
				set = []string{"autoscaling.enabled=false", "replicaCount=3"}
			}
			lint := []string{"lint", chartDir, "--strict", "--kube-version", kubeVersion}
			for _, f := range tc.values {
				lint = append(lint, "--values", f)
			}
			for _, s := range set {
				lint = append(lint, "--set", s)
			}
			if out, err := runHelm(t, helm, lint...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			out, err := renderChart(t, helm, tc.values, set...)
			if err != nil {
				t.Fatal(err)
			}
			r := decodeRelease(t, out)
			want := slices.Clone(tc.kinds)
			slices.Sort(want)
			if got := kinds(r); !slices.Equal(got, want) {
				t.Errorf("rendered kinds = %v, want %v", got, want)
			}
			checkRelease(t, r)
			if tc.name == "all-on" {
				checkAllOn(t, r)
			}
		})
	}
}

// checkRelease holds for every values file: the pod runs the gateway the
// config describes, safely, and every object points at the right thing.
func checkRelease(t *testing.T, r *renderedRelease) {
	t.Helper()
	d := only[*appsv1.Deployment](t, r, "Deployment")
	pod := d.Spec.Template.Spec
	podLabels := d.Spec.Template.Labels
	if !selects(d.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment selector %v does not select its pods %v", d.Spec.Selector.MatchLabels, podLabels)
	}

	// The HPA owns the replica count: a replicas field would reset it on
	// every apply.
	hpas := r.byKind["HorizontalPodAutoscaler"]
	maxReplicas := int32(1)
	if len(hpas) == 1 {
		h := hpas[0].(*autoscalingv2.HorizontalPodAutoscaler)
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment replicas = %d with a HorizontalPodAutoscaler, want no replicas field", *d.Spec.Replicas)
		}
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
			t.Errorf("HPA scaleTargetRef = %+v, want apps/v1 Deployment %s", ref, d.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HPA replicas %v..%d, want at least 2 (the PDB lets one go)", h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		maxReplicas = h.Spec.MaxReplicas
	} else {
		if d.Spec.Replicas == nil {
			t.Error("Deployment has no replicas and no HorizontalPodAutoscaler")
		} else {
			maxReplicas = *d.Spec.Replicas
		}
	}
	if !r.config.Fleet.Enabled() {
		if total := r.config.STS.Rate * float64(maxReplicas); total > 500 {
			t.Errorf("sts.rate %v x %d replicas = %v AssumeRole/s, want at most 500, the stricter STS quota", r.config.STS.Rate, maxReplicas, total)
		}
	}

	if len(pod.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if !cmp.Equal(ports, map[string]int32{"https": httpsPortNum, "admin": adminPortNum}) {
		t.Errorf("container ports = %v, want https:%d admin:%d", ports, httpsPortNum, adminPortNum)
	}
	for _, l := range []struct{ key, addr, port string }{
		{"listen", r.config.Listen, "https"}, {"admin.listen", r.config.Admin.Listen, "admin"},
	} {
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Errorf("gateway.yaml %s = %q: %v", l.key, l.addr, err)
			continue
		}
		if port != strconv.Itoa(int(ports[l.port])) {
			t.Errorf("gateway.yaml %s port = %s, want the container port %s (%d)", l.key, port, l.port, ports[l.port])
		}
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			t.Errorf("gateway.yaml %s = %q is loopback: probes and scrapes cannot reach it", l.key, l.addr)
		}
	}
	for _, p := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.p == nil || p.p.HTTPGet == nil || p.p.HTTPGet.Path != p.path || p.p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s = %+v, want GET %s on port admin", p.name, p.p, p.path)
		}
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("resources.requests.%s is not set", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("resources.limits.%s is not set", res)
		}
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot and a non-zero runAsUser", psc)
	}
	csc := c.SecurityContext
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext = %+v, want readOnlyRootFilesystem, no privilege escalation, drop ALL", csc)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod automountServiceAccountToken is not false (the gateway never calls the Kubernetes API)")
	}
	if sas := r.byKind["ServiceAccount"]; len(sas) == 1 && sas[0].(*corev1.ServiceAccount).Name != pod.ServiceAccountName {
		t.Errorf("pod serviceAccountName = %q, want the chart's ServiceAccount %q", pod.ServiceAccountName, sas[0].(*corev1.ServiceAccount).Name)
	}

	// Shutdown: the kubelet must not SIGKILL before drain delay + grace.
	drain, grace := r.config.Server.DrainDelay, r.config.Server.ShutdownGrace
	tgp := 30 * time.Second // Kubernetes' default
	if s := pod.TerminationGracePeriodSeconds; s != nil {
		tgp = time.Duration(*s) * time.Second
	}
	if tgp <= drain+grace {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than drain_delay + shutdown_grace = %v", tgp, drain+grace)
	}

	// A config change rolls the pods.
	sum := sha256.Sum256([]byte(strings.TrimSuffix(r.cfgRaw, "\n")))
	if got := d.Spec.Template.Annotations["checksum/config"]; got != hex.EncodeToString(sum[:]) {
		t.Errorf("pod annotation checksum/config = %q, want the sha256 of gateway.yaml %s", got, hex.EncodeToString(sum[:]))
	}

	// Files: what the gateway is told to read is what the pod mounts.
	cm := only[*corev1.ConfigMap](t, r, "ConfigMap")
	projected := map[string]string{} // path -> configMap/NAME or secret/NAME
	mountOf := map[string]string{}
	for _, m := range c.VolumeMounts {
		mountOf[m.Name] = m.MountPath
	}
	for _, v := range pod.Volumes {
		dir, ok := mountOf[v.Name]
		if !ok || v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			switch {
			case s.ConfigMap != nil:
				for _, it := range s.ConfigMap.Items {
					projected[filepath.Join(dir, it.Path)] = "configMap/" + s.ConfigMap.Name
				}
			case s.Secret != nil:
				for _, it := range s.Secret.Items {
					projected[filepath.Join(dir, it.Path)] = "secret/" + s.Secret.Name
				}
			}
		}
	}
	files := []struct{ what, path, from string }{
		{"args -config", argAfter(c.Args, "-config"), "configMap/" + cm.Name},
		{"auth.api_keys_file", r.config.Auth.APIKeysFile, "secret/"},
	}
	if r.config.TLS.CertFile != "" || r.config.TLS.KeyFile != "" {
		files = append(files,
			struct{ what, path, from string }{"tls.cert_file", r.config.TLS.CertFile, "secret/"},
			struct{ what, path, from string }{"tls.key_file", r.config.TLS.KeyFile, "secret/"})
	}
	if f := r.config.Fleet; f.Enabled() {
		files = append(files, struct{ what, path, from string }{"fleet.session_key_file", f.SessionKeyFile, "secret/"})
		if f.Redis.UsernameFile != "" {
			files = append(files, struct{ what, path, from string }{"fleet.redis.username_file", f.Redis.UsernameFile, "secret/"})
		}
		if f.Redis.TLSCAFile != "" {
			files = append(files, struct{ what, path, from string }{"fleet.redis.tls_ca_file", f.Redis.TLSCAFile, "secret/"})
		}
		if f.Redis.PasswordFile != "" {
			files = append(files, struct{ what, path, from string }{"fleet.redis.password_file", f.Redis.PasswordFile, "secret/"})
		}
		if env := f.Redis.PasswordEnv; env != "" {
			i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == env })
			if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.SecretKeyRef == nil {
				t.Errorf("fleet.redis.password_env = %s, want that variable set from a Secret", env)
			}
		}
	}
	for _, f := range files {
		if src, ok := projected[f.path]; !ok || !strings.HasPrefix(src, f.from) {
			t.Errorf("%s = %q is projected from %q, want a file from %s*", f.what, f.path, src, f.from)
		}
	}
	if certs := r.byKind["Certificate"]; len(certs) == 1 {
		cert := certs[0].(*certificateCR)
		if projected[r.config.TLS.CertFile] != "secret/"+cert.Spec.SecretName {
			t.Errorf("Certificate secretName %q is not the Secret tls.cert_file comes from (%s)", cert.Spec.SecretName, projected[r.config.TLS.CertFile])
		}
		if cert.Spec.IssuerRef.Name == "" || len(cert.Spec.DNSNames) == 0 {
			t.Errorf("Certificate spec = %+v, want an issuerRef and dnsNames", cert.Spec)
		}
	}
	if secrets := r.byKind["Secret"]; len(secrets) == 1 {
		s := secrets[0].(*corev1.Secret)
		if projected[r.config.Auth.APIKeysFile] != "secret/"+s.Name {
			t.Errorf("the chart's Secret %s is not the key store's source (%s)", s.Name, projected[r.config.Auth.APIKeysFile])
		}
	}

	// Services: the data Service has the data port only; the admin port
	// lives on an in-cluster Service, so a load balancer never exposes it.
	var data, admin *corev1.Service
	for _, o := range r.byKind["Service"] {
		s := o.(*corev1.Service)
		if !selects(s.Spec.Selector, podLabels) {
			t.Errorf("Service %s selector %v does not select the pods %v", s.Name, s.Spec.Selector, podLabels)
		}
		var names []string
		for _, p := range s.Spec.Ports {
			names = append(names, p.Name)
			if _, ok := ports[p.TargetPort.String()]; !ok {
				t.Errorf("Service %s port %s targets %q, want a named container port", s.Name, p.Name, p.TargetPort.String())
			}
		}
		switch {
		case slices.Equal(names, []string{"https"}):
			data = s
		case slices.Equal(names, []string{"admin"}):
			admin = s
			if s.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("admin Service %s type = %s, want ClusterIP", s.Name, s.Spec.Type)
			}
		default:
			t.Errorf("Service %s ports = %v, want [https] or [admin]", s.Name, names)
		}
	}
	if data == nil || admin == nil {
		t.Fatal("want one Service for https and one for admin")
	}

	if pdbs := r.byKind["PodDisruptionBudget"]; len(pdbs) == 1 {
		p := pdbs[0].(*policyv1.PodDisruptionBudget)
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			t.Error("PodDisruptionBudget must set exactly one of minAvailable and maxUnavailable")
		}
		if p.Spec.Selector == nil || !selects(p.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("PodDisruptionBudget selector %v does not select the pods %v", p.Spec.Selector, podLabels)
		}
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		if tsc.LabelSelector == nil || !selects(tsc.LabelSelector.MatchLabels, podLabels) {
			t.Errorf("topologySpreadConstraint %s: labelSelector %v does not select the pods", tsc.TopologyKey, tsc.LabelSelector)
		}
	}

	// The ServiceMonitor scrapes the admin Service, and job is
	// "bedrock-gateway" whatever the release, as the alerts expect.
	if sms := r.byKind["ServiceMonitor"]; len(sms) == 1 {
		sm := sms[0].(*serviceMonitorCR)
		if !selects(sm.Spec.Selector.MatchLabels, admin.Labels) || selects(sm.Spec.Selector.MatchLabels, data.Labels) {
			t.Errorf("ServiceMonitor selector %v, want the admin Service (%v) and not the data Service", sm.Spec.Selector.MatchLabels, admin.Labels)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints = %+v, want port admin path /metrics", sm.Spec.Endpoints)
		}
		if job := admin.Labels[sm.Spec.JobLabel]; job != "bedrock-gateway" {
			t.Errorf("ServiceMonitor jobLabel %q gives job=%q, want bedrock-gateway (the alerts select it)", sm.Spec.JobLabel, job)
		}
	}
	if prs := r.byKind["PrometheusRule"]; len(prs) == 1 {
		want := readRuleGroups(t)
		if diff := cmp.Diff(want, prs[0].(*prometheusRuleCR).Spec); diff != "" {
			t.Errorf("PrometheusRule spec differs from prometheus/alerts.yaml (-want +got):\n%s", diff)
		}
	}
	if nps := r.byKind["NetworkPolicy"]; len(nps) == 1 {
		np := nps[0].(*networkingv1.NetworkPolicy)
		if !selects(np.Spec.PodSelector.MatchLabels, podLabels) {
			t.Errorf("NetworkPolicy podSelector %v does not select the pods", np.Spec.PodSelector.MatchLabels)
		}
		adminRules := 0
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && p.Port.String() == "admin" {
					adminRules++
					if len(rule.From) == 0 {
						t.Error("NetworkPolicy admits the admin port from anywhere, want only Prometheus")
					}
				}
			}
		}
		if adminRules != 1 {
			t.Errorf("NetworkPolicy has %d rules for the admin port, want 1", adminRules)
		}
	}
	for _, o := range r.byKind["Ingress"] {
		ing := o.(*networkingv1.Ingress)
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if b := p.Backend.Service; b == nil || b.Name != data.Name || b.Port.Name != "https" {
					t.Errorf("Ingress %s path %s backend %+v, want Service %s port https", ing.Name, p.Path, p.Backend, data.Name)
				}
			}
		}
	}
}

// checkAllOn: the options of ci/all-on-values.yaml reach the objects.
func checkAllOn(t *testing.T, r *renderedRelease) {
	t.Helper()
	sm := only[*serviceMonitorCR](t, r, "ServiceMonitor")
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels = %v, want release=kube-prometheus-stack (serviceMonitor.labels)", sm.Labels)
	}
	if pr := only[*prometheusRuleCR](t, r, "PrometheusRule"); pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule labels = %v, want release=kube-prometheus-stack", pr.Labels)
	}
	sa := only[*corev1.ServiceAccount](t, r, "ServiceAccount")
	if !strings.HasPrefix(sa.Annotations["eks.amazonaws.com/role-arn"], "arn:aws:iam::") {
		t.Errorf("ServiceAccount annotations = %v, want eks.amazonaws.com/role-arn", sa.Annotations)
	}
	d := only[*appsv1.Deployment](t, r, "Deployment")
	if img := d.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(img, "ghcr.io/bedrock-gateway/gateway@sha256:") {
		t.Errorf("image = %q, want ghcr.io/bedrock-gateway/gateway@sha256:... (image.digest)", img)
	}
	if !r.config.Fleet.Enabled() || r.config.Fleet.ExpectedReplicas != 3 {
		t.Errorf("fleet = %+v, want Redis and expected_replicas 3", r.config.Fleet)
	}
	for _, o := range r.byKind["Service"] {
		s := o.(*corev1.Service)
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Annotations["service.beta.kubernetes.io/aws-load-balancer-type"] != "external" {
			t.Errorf("LoadBalancer Service annotations = %v, want the AWS Load Balancer Controller's", s.Annotations)
		}
	}
	ing := only[*networkingv1.Ingress](t, r, "Ingress")
	if ing.Annotations["alb.ingress.kubernetes.io/backend-protocol-version"] != "HTTP2" {
		t.Errorf("Ingress annotations = %v, want HTTP2 to the pods", ing.Annotations)
	}
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func readRuleGroups(t *testing.T) ruleGroups {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var g ruleGroups
	if err := k8syaml.UnmarshalStrict(data, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestHelmChartRefuses: values that would deploy a broken or quota-breaking
// gateway stop the render, with a message naming the value.
func TestHelmChartRefuses(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"listen set in config", []string{"config.listen=:9999"}, "config.listen is set by the chart"},
		{"drain delay set in config", []string{"config.server.drain_delay=1s"}, "shutdown.*"},
		{"key store path set in config", []string{"config.auth.api_keys_file=/k.json"}, "apiKeys"},
		{"STS quota", []string{"config.sts.rate=100"}, "above 500/s, the stricter"},
		{"STS quota without HPA", []string{"autoscaling.enabled=false", "replicaCount=11"}, "above 500/s, the stricter"},
		{"fleet without Redis", []string{"fleet.enabled=true", "fleet.sessionKeys.existingSecret=s"}, "fleet.redis.url (or fleet.redis.addresses) is required"},
		{"Redis twice", []string{"fleet.enabled=true", "fleet.sessionKeys.existingSecret=s", "fleet.redis.url=redis://r:6379/0",
			"fleet.redis.addresses={r:6379}"}, "set url or addresses, not both"},
		{"Redis CA without TLS to addresses", []string{"fleet.enabled=true", "fleet.sessionKeys.existingSecret=s",
			"fleet.redis.addresses={r:6379}", "fleet.redis.caSecret=ca"}, "fleet.redis.caSecret needs TLS"},
		{"Redis CA without TLS", []string{"fleet.enabled=true", "fleet.redis.url=redis://r:6379/0", "fleet.sessionKeys.existingSecret=s",
			"fleet.redis.caSecret=ca"}, "fleet.redis.caSecret needs TLS"},
		{"fleet without session keys", []string{"fleet.enabled=true", "fleet.redis.url=redis://r:6379/0"}, "fleet.sessionKeys.existingSecret is required"},
		{"cert-manager without issuer", []string{"tls.certManager.enabled=true", "tls.certManager.dnsNames={a.example.com}"}, "issuerRef.name is required"},
		{"ingress without host", []string{"ingress.enabled=true"}, "ingress.hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(t, helm, nil, tc.set...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template --set %v = %v, want an error containing %q", tc.set, err, tc.want)
			}
		})
	}
	// Fleet mode: sts.rate is the fleet's, so the quota check is off and a
	// Redis-backed config loads.
	out, err := renderChart(t, helm, nil, "fleet.enabled=true", "fleet.redis.url=redis://r:6379/0",
		"fleet.sessionKeys.existingSecret=s", "config.sts.rate=400")
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeRelease(t, out); r.config.Fleet.ExpectedReplicas != 2 {
		t.Errorf("fleet.expected_replicas = %d, want autoscaling.minReplicas (2)", r.config.Fleet.ExpectedReplicas)
	}
	// A Cluster's configuration endpoint over TLS with a private CA.
	out, err = renderChart(t, helm, nil, "fleet.enabled=true", "fleet.redis.addresses={cfg.example.cache.amazonaws.com:6379}",
		"fleet.redis.tls=true", "fleet.redis.caSecret=ca", "fleet.sessionKeys.existingSecret=s")
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeRelease(t, out).config.Fleet.Redis; r.URL != "" || !slices.Equal(r.Addresses, []string{"cfg.example.cache.amazonaws.com:6379"}) ||
		!r.TLS || r.TLSCAFile == "" || r.MasterName != "" {
		t.Errorf("fleet.redis = %+v, want the one address with TLS and the CA file", r)
	}
}

// TestChartAlertsInSync: the chart's PrometheusRule is rendered from
// files/alerts.yaml (Helm reads only files inside the chart), which must be
// prometheus/alerts.yaml byte for byte.
func TestChartAlertsInSync(t *testing.T) {
	src := filepath.Join("prometheus", "alerts.yaml")
	dst := filepath.Join(chartDir, "files", "alerts.yaml")
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(dst, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s: run go test ./deploy -run TestChartAlertsInSync -update", dst, src)
	}
}

// kustomizeBase turns a render into the kustomize base's files: one file
// per template, except the ConfigMap, whose gateway.yaml becomes the input
// of a configMapGenerator (so overlays can replace it, and kustomize's
// content hash rolls the pods).
func kustomizeBase(t *testing.T, out []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	var resources []string
	cmName := ""
	for _, d := range splitRendered(out) {
		name := filepath.Base(d.source)
		if d.source == "templates/configmap.yaml" {
			var cm corev1.ConfigMap
			if err := k8syaml.UnmarshalStrict(d.data, &cm); err != nil {
				t.Fatal(err)
			}
			cmName = cm.Name
			files[gatewayYAML] = []byte(generatedBy + "# The gateway's config; README.md, \"Configuration reference\".\n" + cm.Data[gatewayYAML])
			continue
		}
		if _, dup := files[name]; dup {
			t.Fatalf("template %s rendered twice", d.source)
		}
		files[name] = append([]byte(generatedBy), d.data...)
		resources = append(resources, name)
	}
	if cmName == "" {
		t.Fatal("the render has no ConfigMap")
	}
	var k strings.Builder
	k.WriteString(generatedBy)
	k.WriteString("# Kustomize base: namespace-agnostic; set the namespace, image, role ARNs\n# and gateway.yaml in an overlay (deploy/README.md).\n")
	k.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	for _, r := range resources {
		fmt.Fprintf(&k, "  - %s\n", r)
	}
	fmt.Fprintf(&k, "# gateway.yaml gets a content-hash suffix, so changing it rolls the\n# Deployment: every replica starts with the new config, validated at start.\nconfigMapGenerator:\n  - name: %s\n    files:\n      - %s\n", cmName, gatewayYAML)
	files["kustomization.yaml"] = []byte(k.String())
	return files
}

// TestKustomizeBaseIsRendered: deploy/kubernetes/ is the chart rendered
// with helm/kustomize-base-values.yaml, so the kustomize base and the chart
// cannot drift apart.
func TestKustomizeBaseIsRendered(t *testing.T) {
	helm := helmBinary(t)
	out, err := renderChart(t, helm, []string{baseValues})
	if err != nil {
		t.Fatal(err)
	}
	want := kustomizeBase(t, out)
	if *update {
		old, _ := filepath.Glob(filepath.Join(k8sDir, "*"))
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range want {
			if err := os.WriteFile(filepath.Join(k8sDir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Name()] = true
		w, ok := want[e.Name()]
		if !ok {
			t.Errorf("%s/%s is not rendered from the chart: remove it or add it to the chart", k8sDir, e.Name())
			continue
		}
		got, err := os.ReadFile(filepath.Join(k8sDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(w), string(got)); diff != "" {
			t.Errorf("%s/%s differs from the chart's render (-chart +file); run go test ./deploy -run TestKustomizeBaseIsRendered -update:\n%s", k8sDir, e.Name(), diff)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("%s/%s is missing; run go test ./deploy -run TestKustomizeBaseIsRendered -update", k8sDir, name)
		}
	}
}
