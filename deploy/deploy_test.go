// Package deploy_test checks the deploy kit against the gateway it deploys:
// every YAML and JSON file parses; the kustomize base is complete and its
// Deployment probes, limits and runs the gateway as non-root with paths,
// ports and shutdown timing that agree with its config; that config uses
// only keys the gateway's strict loader knows (read from cmd/gateway's
// source); the dashboard and alert rules use only metrics the README
// documents; and the IAM templates grant exactly what the two roles need.
//
// The tests read files only. Where promtool, cfn-lint or kubectl are on
// PATH they also run them, offline, and skip those checks otherwise.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/bedrock-gateway/gateway/internal/gateway"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// readYAMLDocs decodes every document of a (multi-document) YAML file into
// nodes, which keep custom tags such as CloudFormation's !Ref.
func readYAMLDocs(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, &n)
	}
}

func TestEveryFileParses(t *testing.T) {
	var n int
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Helm templates are Go templates, not YAML yet: helm_test.go
			// lints and renders them.
			if d.Name() == "templates" && strings.HasPrefix(filepath.ToSlash(path), "helm/") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			n++
			t.Run(path, func(t *testing.T) {
				if docs := readYAMLDocs(t, path); len(docs) == 0 {
					t.Errorf("%s has no YAML document", path)
				}
			})
		case ".json":
			n++
			t.Run(path, func(t *testing.T) {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				var v any
				if err := json.Unmarshal(data, &v); err != nil {
					t.Errorf("%s: %v", path, err)
				}
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("found %d YAML and JSON files under deploy/, want at least 10", n)
	}
}

// --- Kubernetes ---------------------------------------------------------

const k8sDir = "kubernetes"

type kustomization struct {
	Resources          []string `yaml:"resources"`
	Namespace          string   `yaml:"namespace"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type object struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
	node       *yaml.Node
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type keyPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type volumeSource struct {
	Name  string    `yaml:"name"`
	Items []keyPath `yaml:"items"`
}

type deployment struct {
	Spec struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				ServiceAccountName            string `yaml:"serviceAccountName"`
				TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
					RunAsUser    *int64 `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []struct {
					Name  string   `yaml:"name"`
					Image string   `yaml:"image"`
					Args  []string `yaml:"args"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					Resources struct {
						Requests map[string]string `yaml:"requests"`
						Limits   map[string]string `yaml:"limits"`
					} `yaml:"resources"`
					ReadinessProbe  *probe `yaml:"readinessProbe"`
					LivenessProbe   *probe `yaml:"livenessProbe"`
					SecurityContext struct {
						ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
						AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
						Capabilities             struct {
							Drop []string `yaml:"drop"`
						} `yaml:"capabilities"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name      string `yaml:"name"`
					Projected *struct {
						Sources []struct {
							ConfigMap *volumeSource `yaml:"configMap"`
							Secret    *volumeSource `yaml:"secret"`
						} `yaml:"sources"`
					} `yaml:"projected"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type pdb struct {
	Spec struct {
		MinAvailable   any           `yaml:"minAvailable"`
		MaxUnavailable any           `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type hpa struct {
	Spec struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
		Metrics     []struct {
			Type     string `yaml:"type"`
			Resource struct {
				Name string `yaml:"name"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	Spec struct {
		Selector  labelSelector `yaml:"selector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// base is the kustomize base (rendered from the Helm chart by
// helm_test.go), loaded once per test.
type base struct {
	kust    kustomization
	objects map[string][]object // by kind
	config  *gateway.Config     // the ConfigMap's config, through the gateway's loader
	cfgPath string
}

func loadBase(t *testing.T) *base {
	t.Helper()
	b := &base{objects: map[string][]object{}}
	kdocs := readYAMLDocs(t, filepath.Join(k8sDir, "kustomization.yaml"))
	if err := kdocs[0].Decode(&b.kust); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.kust.Resources {
		for _, doc := range readYAMLDocs(t, filepath.Join(k8sDir, r)) {
			var o object
			if err := doc.Decode(&o); err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			o.node = doc
			b.objects[o.Kind] = append(b.objects[o.Kind], o)
		}
	}
	if len(b.kust.ConfigMapGenerator) != 1 || len(b.kust.ConfigMapGenerator[0].Files) != 1 {
		t.Fatalf("kustomization configMapGenerator = %+v, want one ConfigMap from one file (gateway.yaml)", b.kust.ConfigMapGenerator)
	}
	b.cfgPath = filepath.Join(k8sDir, b.kust.ConfigMapGenerator[0].Files[0])
	cfg, err := gateway.Load(b.cfgPath, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	b.config = cfg
	return b
}

// decode decodes the base's only object of a kind.
func (b *base) decode(t *testing.T, kind string, v any) object {
	t.Helper()
	objs := b.objects[kind]
	if len(objs) != 1 {
		t.Fatalf("the kustomize base has %d %s, want 1", len(objs), kind)
	}
	o := objs[0]
	if err := o.node.Decode(v); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return o
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	b := loadBase(t)
	if b.kust.Namespace != "" {
		t.Errorf("kustomization namespace = %q, want none (the base is namespace-agnostic)", b.kust.Namespace)
	}
	listed := map[string]bool{"kustomization.yaml": true}
	for _, r := range b.kust.Resources {
		listed[r] = true
	}
	for _, g := range b.kust.ConfigMapGenerator {
		for _, f := range g.Files {
			if _, err := os.Stat(filepath.Join(k8sDir, f)); err != nil {
				t.Errorf("configMapGenerator file %s: %v", f, err)
			}
			listed[f] = true
		}
	}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is not in kustomization.yaml", f)
		}
	}
	want := map[string]struct {
		api string
		n   int
	}{
		"ServiceAccount":          {"v1", 1},
		"Deployment":              {"apps/v1", 1},
		"Service":                 {"v1", 2}, // data plane, and admin in-cluster only
		"PodDisruptionBudget":     {"policy/v1", 1},
		"HorizontalPodAutoscaler": {"autoscaling/v2", 1},
		"ServiceMonitor":          {"monitoring.coreos.com/v1", 1},
	}
	for kind, w := range want {
		objs := b.objects[kind]
		if len(objs) != w.n {
			t.Errorf("the kustomize base has %d %s, want %d", len(objs), kind, w.n)
		}
		for _, o := range objs {
			if o.APIVersion != w.api {
				t.Errorf("%s apiVersion = %q, want %q", kind, o.APIVersion, w.api)
			}
			if o.Metadata.Name == "" || o.Metadata.Namespace != "" {
				t.Errorf("%s metadata = %+v, want a name and no namespace", kind, o.Metadata)
			}
		}
	}
	for kind := range b.objects {
		if _, ok := want[kind]; !ok {
			t.Errorf("the kustomize base has a %s, which this test does not check", kind)
		}
	}
}

func TestDeployment(t *testing.T) {
	b := loadBase(t)
	var d deployment
	b.decode(t, "Deployment", &d)
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if !reflect.DeepEqual(ports, map[string]int{"https": 8443, "admin": 9090}) {
		t.Errorf("container ports = %v, want https:8443 admin:9090", ports)
	}
	probes := []struct {
		name string
		p    *probe
		path string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	}
	for _, tc := range probes {
		if tc.p == nil || tc.p.HTTPGet == nil {
			t.Errorf("%s = none, want GET %s on the admin port", tc.name, tc.path)
			continue
		}
		if tc.p.HTTPGet.Path != tc.path || (tc.p.HTTPGet.Port != "admin" && tc.p.HTTPGet.Port != "9090") {
			t.Errorf("%s = GET %s on port %s, want GET %s on admin (9090)", tc.name, tc.p.HTTPGet.Path, tc.p.HTTPGet.Port, tc.path)
		}
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("resources.requests.%s is not set", r)
		}
		if c.Resources.Limits[r] == "" {
			t.Errorf("resources.limits.%s is not set", r)
		}
	}
	sc := pod.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod securityContext runAsNonRoot = %v, runAsUser = %v; want true and a non-zero UID", sc.RunAsNonRoot, sc.RunAsUser)
	}
	csc := c.SecurityContext
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Error("container readOnlyRootFilesystem is not true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("container allowPrivilegeEscalation is not false")
	}
	if !slices.Equal(csc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("container capabilities.drop = %q, want [ALL]", csc.Capabilities.Drop)
	}
	sa := b.decode(t, "ServiceAccount", &struct{}{})
	if pod.ServiceAccountName != sa.Metadata.Name {
		t.Errorf("Deployment serviceAccountName = %q, want the ServiceAccount %q", pod.ServiceAccountName, sa.Metadata.Name)
	}
	if !strings.HasPrefix(sa.Metadata.Annotations["eks.amazonaws.com/role-arn"], "arn:aws:iam::") {
		t.Errorf("ServiceAccount annotation eks.amazonaws.com/role-arn = %q, want an IAM role ARN", sa.Metadata.Annotations["eks.amazonaws.com/role-arn"])
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("pod template label %s = %q, want %q (the Deployment selector)", k, d.Spec.Template.Metadata.Labels[k], v)
		}
	}

	// Files: what the gateway is told to read is what the pod mounts.
	projected := map[string]string{} // file path -> source
	mountOf := map[string]string{}
	for _, m := range c.VolumeMounts {
		mountOf[m.Name] = m.MountPath
	}
	cmName := b.kust.ConfigMapGenerator[0].Name
	for _, v := range pod.Volumes {
		if v.Projected == nil {
			continue
		}
		dir, ok := mountOf[v.Name]
		if !ok {
			continue
		}
		for _, s := range v.Projected.Sources {
			src, kind := s.Secret, "secret"
			if s.ConfigMap != nil {
				src, kind = s.ConfigMap, "configMap"
				if src.Name != cmName {
					t.Errorf("projected configMap %q, want the generated %q", src.Name, cmName)
				}
			}
			if src == nil {
				continue
			}
			for _, it := range src.Items {
				projected[filepath.Join(dir, it.Path)] = kind + "/" + src.Name
			}
		}
	}
	cfgFile := ""
	for i, a := range c.Args {
		if a == "-config" && i+1 < len(c.Args) {
			cfgFile = c.Args[i+1]
		}
	}
	for _, f := range []struct{ what, path, from string }{
		{"args -config", cfgFile, "configMap/" + cmName},
		{"tls.cert_file", b.config.TLS.CertFile, "secret/"},
		{"tls.key_file", b.config.TLS.KeyFile, "secret/"},
		{"auth.api_keys_file", b.config.Auth.APIKeysFile, "secret/"},
	} {
		if src, ok := projected[f.path]; !ok || !strings.HasPrefix(src, f.from) {
			t.Errorf("%s = %q is projected from %q, want a file from %s*", f.what, f.path, src, f.from)
		}
	}

	// Ports the gateway listens on are the ones the pod declares, and the
	// admin listener is reachable by the kubelet and Prometheus.
	for _, l := range []struct {
		key, addr, port string
	}{{"listen", b.config.Listen, "https"}, {"admin.listen", b.config.Admin.Listen, "admin"}} {
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Errorf("%s %s: %q: %v", b.cfgPath, l.key, l.addr, err)
			continue
		}
		if port != strconv.Itoa(ports[l.port]) {
			t.Errorf("%s %s port = %s, want the container port %s (%d)", b.cfgPath, l.key, port, l.port, ports[l.port])
		}
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			t.Errorf("%s %s = %q listens on loopback: probes and scrapes cannot reach it", b.cfgPath, l.key, l.addr)
		}
	}

	// Shutdown: the kubelet must not SIGKILL before the gateway's drain
	// delay and grace period are over.
	drain, grace := b.config.Server.DrainDelay, b.config.Server.ShutdownGrace
	tgp := 30 * time.Second // Kubernetes' default
	if s := pod.TerminationGracePeriodSeconds; s != nil {
		tgp = time.Duration(*s) * time.Second
	}
	if tgp <= drain+grace {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than drain_delay + shutdown_grace = %v", tgp, drain+grace)
	}
}

func TestServicePDBHPAServiceMonitor(t *testing.T) {
	b := loadBase(t)
	var d deployment
	dep := b.decode(t, "Deployment", &d)
	podLabels := d.Spec.Template.Metadata.Labels

	// Two Services: the data plane (which a load balancer may front) and
	// the admin port, in-cluster only.
	containerPorts := map[string]bool{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		containerPorts[p.Name] = true
	}
	svcByPort := map[string]object{}
	for _, o := range b.objects["Service"] {
		var svc service
		if err := o.node.Decode(&svc); err != nil {
			t.Fatalf("Service %s: %v", o.Metadata.Name, err)
		}
		if !selects(svc.Spec.Selector, podLabels) {
			t.Errorf("Service %s selector %v does not select the pod labels %v", o.Metadata.Name, svc.Spec.Selector, podLabels)
		}
		if len(svc.Spec.Ports) != 1 {
			t.Errorf("Service %s has %d ports, want 1 (https or admin)", o.Metadata.Name, len(svc.Spec.Ports))
			continue
		}
		p := svc.Spec.Ports[0]
		if !containerPorts[p.TargetPort] {
			t.Errorf("Service %s port %s targets %q, want a named container port", o.Metadata.Name, p.Name, p.TargetPort)
		}
		svcByPort[p.Name] = o
	}
	if _, ok := svcByPort["https"]; !ok {
		t.Error("no Service for the https port")
	}
	adminSvc, ok := svcByPort["admin"]
	if !ok {
		t.Fatal("no Service for the admin port")
	}

	var p pdb
	b.decode(t, "PodDisruptionBudget", &p)
	if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
		t.Error("PodDisruptionBudget must set exactly one of minAvailable and maxUnavailable")
	}
	if !selects(p.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the pods %v", p.Spec.Selector.MatchLabels, podLabels)
	}

	var h hpa
	b.decode(t, "HorizontalPodAutoscaler", &h)
	if d.Spec.Replicas != nil {
		t.Errorf("Deployment replicas = %d, want none: the HorizontalPodAutoscaler owns the count, and a replicas field resets it on every apply", *d.Spec.Replicas)
	}
	ref := h.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != dep.Metadata.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scaleTargetRef = %+v, want apps/v1 Deployment %q", ref, dep.Metadata.Name)
	}
	if h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < h.Spec.MinReplicas {
		t.Errorf("HPA replicas = %d..%d, want at least 2 (the PDB lets one go)", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	hasCPU := false
	for _, m := range h.Spec.Metrics {
		hasCPU = hasCPU || (m.Type == "Resource" && m.Resource.Name == "cpu")
	}
	if !hasCPU {
		t.Error("HPA has no CPU resource metric")
	}
	// STS allows 600 AssumeRole calls per second per account and Region,
	// shared with every other STS caller (IAM User Guide, "STS request
	// quotas"); the gateway's default sts.rate is 400.
	// In fleet mode sts.rate is the fleet's budget; alone, each replica's.
	rate, replicas := b.config.STS.Rate, float64(h.Spec.MaxReplicas)
	if b.config.Fleet.Enabled() {
		replicas = 1
	}
	if total := rate * replicas; total > 500 {
		t.Errorf("sts.rate %v x %v = %v AssumeRole/s, want at most 500, the stricter STS quota", rate, replicas, total)
	}

	var sm serviceMonitor
	b.decode(t, "ServiceMonitor", &sm)
	if !selects(sm.Spec.Selector.MatchLabels, adminSvc.Metadata.Labels) {
		t.Errorf("ServiceMonitor selector %v does not select the admin Service's labels %v", sm.Spec.Selector.MatchLabels, adminSvc.Metadata.Labels)
	}
	if https := svcByPort["https"]; selects(sm.Spec.Selector.MatchLabels, https.Metadata.Labels) {
		t.Errorf("ServiceMonitor selector %v also selects the data Service %s", sm.Spec.Selector.MatchLabels, https.Metadata.Name)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints = %+v, want port admin path /metrics", sm.Spec.Endpoints)
	}
}

func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not on PATH")
	}
	out, err := exec.Command(kubectl, "kustomize", k8sDir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", k8sDir, err, out)
	}
	// The generated ConfigMap's hashed name must reach the Deployment.
	m := regexp.MustCompile(`name: (bedrock-gateway-config-[a-z0-9]+)`).FindAllSubmatch(out, -1)
	if len(m) < 2 || !bytes.Equal(m[0][1], m[1][1]) {
		t.Errorf("kubectl kustomize: the hashed ConfigMap name appears %d times, want in the ConfigMap and the Deployment", len(m))
	}
}

// --- gateway configs: every shipped and documented one loads ------------

// noEnv is an empty environment: a shipped config must not depend on the
// machine that checks it.
func noEnv(string) string { return "" }

// TestConfigsLoad loads every gateway config the project ships or
// documents through the gateway's own loader (unknown keys refused, every
// rule checked): configs/, the Kubernetes ConfigMap, and each YAML block
// in the docs that is not a Kubernetes object.
func TestConfigsLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "configs", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(k8sDir, "gateway.yaml"))
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if _, err := gateway.Load(f, noEnv); err != nil {
				t.Error(err)
			}
		})
	}
	var examples int
	for _, doc := range []string{filepath.Join("..", "README.md"), filepath.Join("..", "docs", "clients.md"), "README.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, block := range yamlBlocks(string(data)) {
			if strings.Contains(block, "apiVersion:") {
				continue // a Kubernetes object, not a gateway config
			}
			examples++
			t.Run(fmt.Sprintf("%s block %d", doc, i+1), func(t *testing.T) {
				if _, err := gateway.Parse([]byte(block), noEnv); err != nil {
					t.Errorf("%v\n%s", err, block)
				}
			})
		}
	}
	if examples == 0 {
		t.Error("no gateway config example found in the docs; the README should show one")
	}
	// The loader is strict: a wrong key anywhere is refused, named.
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown top-level key", "listen_addr: ':2'\n", "listen_addr"},
		{"unknown nested key", "server:\n  write_timeout: 1s\n", "write_timeout"},
		{"duration without unit", "sts:\n  timeout: 10\n", "time.Duration"},
		{"map of structs", "policy:\n  teams:\n    a: {modelz: []}\n", "modelz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gateway.Parse([]byte("aws: {region: us-east-1}\nsession: {role_arn: 'arn:aws:iam::123456789012:role/R'}\nauth: {api_keys_file: k.json}\n"+tc.yaml), noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %v, want an error naming %s", tc.yaml, err, tc.want)
			}
		})
	}
}

// yamlBlocks returns the fenced ```yaml blocks of a Markdown text.
func yamlBlocks(md string) []string {
	var blocks []string
	for {
		_, rest, ok := strings.Cut(md, "```yaml\n")
		if !ok {
			return blocks
		}
		block, after, _ := strings.Cut(rest, "```")
		blocks = append(blocks, block)
		md = after
	}
}

// --- metrics: dashboard and alert rules ---------------------------------

// readmeMetrics returns the metric names of the README's "Metrics" table,
// with the series names a histogram adds.
func readmeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Metrics\n")
	if !ok {
		t.Fatal(`README.md has no "## Metrics" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([a-z_:][a-z0-9_:]*)` \\| (\\w+) \\|")
	names := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		names[m[1]] = true
		if m[2] == "histogram" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("README metrics table: found %d names, want at least 10", len(names))
	}
	// Series Prometheus itself makes for every target.
	names["up"] = true
	return names
}

var (
	gatewayMetricRE = regexp.MustCompile(`\bbedrock_gateway_[a-z0-9_]+`)
	// selectorRE finds metric selectors: a name followed by { or [.
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)
	stringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// metricsIn returns the metric names a PromQL expression references.
func metricsIn(expr string) []string {
	expr = stringRE.ReplaceAllString(expr, `""`)
	seen := map[string]bool{}
	for _, m := range gatewayMetricRE.FindAllString(expr, -1) {
		seen[m] = true
	}
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		seen[m[1]] = true
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func TestMetricsIn(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (team) (rate(bedrock_gateway_tokens_total{team=~"$team"}[5m]))`, []string{"bedrock_gateway_tokens_total"}},
		{`histogram_quantile(0.95, sum by (le) (rate(bedrock_gateway_x_bucket[$__rate_interval])))`, []string{"bedrock_gateway_x_bucket"}},
		{`up{job="a{b}"} == 0`, []string{"up"}},
		{`label_values(bedrock_gateway_tokens_total, team)`, []string{"bedrock_gateway_tokens_total"}},
		{`bedrock_gateway_a < 0.9 * max_over_time(bedrock_gateway_a[6h])`, []string{"bedrock_gateway_a"}},
	} {
		if got := metricsIn(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricsIn(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("grafana", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// grafanaVarRE matches Grafana's variables: $x, ${x}, ${x:fmt}.
var grafanaVarRE = regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?`)

// dashboardExprs returns every PromQL expression of the dashboard, with
// Grafana's variables replaced so that Prometheus could parse them.
func dashboardExprs(d dashboard) map[string]string {
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("panel %d %q target %d", p.ID, p.Title, i)] = grafanaVarRE.ReplaceAllStringFunc(tg.Expr, func(v string) string {
				name := grafanaVarRE.FindStringSubmatch(v)[1]
				switch {
				case name == "__rate_interval" || name == "__interval":
					return "5m"
				case name == "__range":
					return "1h"
				case strings.HasPrefix(name, "usd_per_mtok_"):
					return "1"
				default:
					return ".*"
				}
			})
		}
	}
	return out
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	known := readmeMetrics(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid = %q, title = %q; want both", d.UID, d.Title)
	}
	ids := map[int]bool{}
	used := map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			ms := metricsIn(tg.Expr)
			if len(ms) == 0 {
				t.Errorf("panel %q: %q references no metric", p.Title, tg.Expr)
			}
			for _, m := range ms {
				used[m] = true
				if !known[m] {
					t.Errorf("panel %q: metric %s is not in the README's metrics table", p.Title, m)
				}
			}
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			for _, m := range metricsIn(fmt.Sprint(q["query"])) {
				if !known[m] {
					t.Errorf("variable %s: metric %s is not in the README's metrics table", v.Name, m)
				}
			}
		}
	}
	for _, m := range []string{
		"bedrock_gateway_tokens_total",
		"bedrock_gateway_requests_total",
		"bedrock_gateway_request_duration_seconds_bucket",
		"bedrock_gateway_time_to_first_byte_seconds_bucket",
		"bedrock_gateway_sts_assume_role_total",
		"bedrock_gateway_sts_admission_rejections_total",
		"bedrock_gateway_sts_admission_wait_seconds_bucket",
		"bedrock_gateway_session_cache_requests_total",
		"bedrock_gateway_session_cache_entries",
		"bedrock_gateway_session_credentials_min_remaining_seconds",
	} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
	// Prometheus's own parser, through promtool, on every expression.
	exprs := dashboardExprs(d)
	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	i := 0
	for _, e := range exprs {
		i++
		q, _ := json.Marshal(e)
		fmt.Fprintf(&rules, "  - record: dashboard:expr%d\n    expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard_rules.yaml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	promtoolCheckRules(t, path)
}

func promtoolCheckRules(t *testing.T, path string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not on PATH: PromQL not parsed by Prometheus")
		return
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", path, err, out)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRules(t *testing.T) {
	path := filepath.Join("prometheus", "alerts.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatal(err)
	}
	known := readmeMetrics(t)
	names := map[string]bool{}
	var all []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert: %q", g.Name, r.Expr)
				continue
			}
			if names[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			names[r.Alert] = true
			all = append(all, r.Expr)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: want labels.severity, annotations.summary and annotations.description", r.Alert)
			}
			ms := metricsIn(r.Expr)
			if len(ms) == 0 {
				t.Errorf("alert %s: %q references no metric", r.Alert, r.Expr)
			}
			for _, m := range ms {
				if !known[m] {
					t.Errorf("alert %s: metric %s is not in the README's metrics table", r.Alert, m)
				}
			}
		}
	}
	joined := strings.Join(all, "\n")
	for _, want := range []struct{ what, re string }{
		{"STS throttling", `bedrock_gateway_sts_assume_role_total\{outcome="throttled"\}`},
		{"STS access denied", `bedrock_gateway_sts_assume_role_total\{outcome="access_denied"\}`},
		{"admission saturation", `bedrock_gateway_sts_admission_rejections_total`},
		{"admission budget lowered", `bedrock_gateway_sts_admission_rate`},
		{"error rate", `bedrock_gateway_requests_total\{code="5xx"\}`},
		{"credentials close to expiry", `bedrock_gateway_session_credentials_min_remaining_seconds\)? < 120`},
		{"TLS certificate expiry", `bedrock_gateway_tls_certificate_expiry_timestamp_seconds\) - time\(\) <`},
		{"refused config reload", `bedrock_gateway_config_last_reload_successful == 0`},
		{"a replica not scraped", `up\{job="bedrock-gateway"\} == 0`},
		{"no target at all", `absent\(up\{job="bedrock-gateway"\}\)`},
	} {
		if !regexp.MustCompile(want.re).MatchString(joined) {
			t.Errorf("no alert on %s (want an expression matching %s)", want.what, want.re)
		}
	}

	// deploy/README.md's table lists every alert, each once, with its
	// severity.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	tableRow := regexp.MustCompile("(?m)^\\| `(BedrockGateway\\w+)` \\| .* \\| (\\w+) \\|$")
	listed := map[string]string{}
	for _, m := range tableRow.FindAllStringSubmatch(string(readme), -1) {
		if _, dup := listed[m[1]]; dup {
			t.Errorf("README.md lists alert %s twice", m[1])
		}
		listed[m[1]] = m[2]
	}
	severity := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			severity[r.Alert] = r.Labels["severity"]
		}
	}
	for name, sev := range severity {
		if got, ok := listed[name]; !ok {
			t.Errorf("README.md's alert table does not list %s", name)
		} else if got != sev {
			t.Errorf("README.md lists %s with severity %s, want %s", name, got, sev)
		}
	}
	for name := range listed {
		if _, ok := severity[name]; !ok {
			t.Errorf("README.md lists alert %s, which prometheus/alerts.yaml does not define", name)
		}
	}
	promtoolCheckRules(t, path)
}

// --- IAM ----------------------------------------------------------------

// cfnValue turns a YAML node into plain Go values, CloudFormation's short
// tags into their long form: !Ref x becomes {"Ref": x}, !Sub s becomes
// {"Fn::Sub": s}, !GetAtt a.b becomes {"Fn::GetAtt": [a, b]}.
func cfnValue(n *yaml.Node) any {
	var v any
	switch n.Kind {
	case yaml.DocumentNode:
		return cfnValue(n.Content[0])
	case yaml.AliasNode:
		return cfnValue(n.Alias)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = cfnValue(n.Content[i+1])
		}
		v = m
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			l = append(l, cfnValue(c))
		}
		v = l
	default:
		v = n.Value
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v
	}
	fn := strings.TrimPrefix(n.Tag, "!")
	switch fn {
	case "Ref", "Condition":
		return map[string]any{fn: v}
	case "GetAtt":
		if s, ok := v.(string); ok {
			a, b, _ := strings.Cut(s, ".")
			v = []any{a, b}
		}
	}
	return map[string]any{"Fn::" + fn: v}
}

// statements returns a policy document's statements, both branches of
// each Fn::If, without AWS::NoValue.
func statements(doc any) []map[string]any {
	m, _ := doc.(map[string]any)
	var out []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch s := v.(type) {
		case []any:
			for _, e := range s {
				walk(e)
			}
		case map[string]any:
			if branches, ok := s["Fn::If"].([]any); ok && len(branches) == 3 {
				walk(branches[1])
				walk(branches[2])
				return
			}
			if s["Ref"] == "AWS::NoValue" {
				return
			}
			out = append(out, s)
		}
	}
	walk(m["Statement"])
	return out
}

func strs(v any) []string {
	switch s := v.(type) {
	case string:
		return []string{s}
	case []any:
		var out []string
		for _, e := range s {
			if str, ok := e.(string); ok {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

var (
	gatewayActions = []string{"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}
	tagKeys        = []string{"team", "tenant", "cost-center"}
	// What the invocation role may be allowed, at most.
	invocationActions = []string{
		"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream", "bedrock:CountTokens",
		"bedrock:ApplyGuardrail", "bedrock:GetAsyncInvoke", "bedrock:ListAsyncInvokes",
		"s3:PutObject", // async-invoke output, only with AllowAsyncInvoke and a bucket
	}
)

// checkGatewayPolicy: the gateway role may assume, tag and set the source
// identity of the invocation role, and nothing else; isInvocationRole says
// whether a Resource names it.
func checkGatewayPolicy(doc any, isInvocationRole func(any) bool) []string {
	var p []string
	var allowed []string
	denyBedrock := false
	for _, s := range statements(doc) {
		acts := strs(s["Action"])
		if s["Effect"] == "Deny" {
			denyBedrock = denyBedrock || slices.Contains(acts, "bedrock:*")
			continue
		}
		for _, a := range acts {
			if !slices.Contains(gatewayActions, a) {
				p = append(p, fmt.Sprintf("gateway role allows %s, want only %v", a, gatewayActions))
			}
		}
		allowed = append(allowed, acts...)
		if !isInvocationRole(s["Resource"]) {
			p = append(p, fmt.Sprintf("gateway role: resource %v, want the invocation role only", s["Resource"]))
		}
	}
	slices.Sort(allowed)
	if !slices.Equal(slices.Compact(allowed), gatewayActions) {
		p = append(p, fmt.Sprintf("gateway role allows %v, want %v", allowed, gatewayActions))
	}
	if !denyBedrock {
		p = append(p, "gateway role does not deny bedrock:*")
	}
	return p
}

// checkInvocationTrust: only the gateway role is trusted, for AssumeRole
// and for TagSession with the tag keys limited by aws:TagKeys.
func checkInvocationTrust(doc any, isGateway func(any) bool) []string {
	var p []string
	var actions []string
	for _, s := range statements(doc) {
		if s["Effect"] != "Allow" {
			continue
		}
		principal, _ := s["Principal"].(map[string]any)
		if len(principal) != 1 || !isGateway(principal["AWS"]) {
			p = append(p, fmt.Sprintf("invocation role trusts %v, want the gateway role only", s["Principal"]))
		}
		acts := strs(s["Action"])
		actions = append(actions, acts...)
		if slices.Contains(acts, "sts:TagSession") {
			cond, _ := s["Condition"].(map[string]any)
			fa, _ := cond["ForAllValues:StringEquals"].(map[string]any)
			got := strs(fa["aws:TagKeys"])
			if !slices.Equal(got, tagKeys) {
				p = append(p, fmt.Sprintf("sts:TagSession allowed with aws:TagKeys %v (ForAllValues:StringEquals), want %v", got, tagKeys))
			}
		}
	}
	for _, want := range []string{"sts:AssumeRole", "sts:TagSession"} {
		if !slices.Contains(actions, want) {
			p = append(p, "invocation role trust does not allow "+want)
		}
	}
	return p
}

// checkInvocationPolicy: Bedrock invoke actions, no wildcard actions.
func checkInvocationPolicy(doc any) []string {
	var p []string
	var actions []string
	for _, s := range statements(doc) {
		if s["Effect"] != "Allow" {
			continue
		}
		for _, a := range strs(s["Action"]) {
			actions = append(actions, a)
			if !slices.Contains(invocationActions, a) {
				p = append(p, fmt.Sprintf("invocation role allows %s, want only %v", a, invocationActions))
			}
		}
		for _, r := range strs(s["Resource"]) {
			if r == "*" && !slices.Equal(strs(s["Action"]), []string{"bedrock:ListAsyncInvokes"}) {
				p = append(p, fmt.Sprintf("invocation role allows %v on *", s["Action"]))
			}
		}
	}
	for _, want := range []string{"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"} {
		if !slices.Contains(actions, want) {
			p = append(p, "invocation role does not allow "+want)
		}
	}
	return p
}

func TestCloudFormation(t *testing.T) {
	path := filepath.Join("iam", "cloudformation.yaml")
	docs := readYAMLDocs(t, path)
	tmpl, _ := cfnValue(docs[0]).(map[string]any)
	resources, _ := tmpl["Resources"].(map[string]any)
	byType := map[string][]string{}
	for name, r := range resources {
		rm, _ := r.(map[string]any)
		byType[fmt.Sprint(rm["Type"])] = append(byType[fmt.Sprint(rm["Type"])], name)
	}
	props := func(name string) map[string]any {
		r, _ := resources[name].(map[string]any)
		p, _ := r["Properties"].(map[string]any)
		return p
	}
	const gw, inv = "GatewayRole", "InvocationRole"
	roles := byType["AWS::IAM::Role"]
	slices.Sort(roles)
	if !slices.Equal(roles, []string{gw, inv}) {
		t.Fatalf("IAM roles = %v, want [%s %s]", roles, gw, inv)
	}
	policiesOf := func(role string) []any {
		ps, _ := props(role)["Policies"].([]any)
		var docs []any
		for _, p := range ps {
			pm, _ := p.(map[string]any)
			docs = append(docs, pm["PolicyDocument"])
		}
		if len(docs) == 0 {
			t.Errorf("%s has no inline policy", role)
		}
		return docs
	}

	invRoleName, _ := props(inv)["RoleName"].(map[string]any)
	for _, doc := range policiesOf(gw) {
		for _, p := range checkGatewayPolicy(doc, func(r any) bool {
			// !Sub arn:...:role/${InvocationRoleName}, the same name the
			// invocation role is created with.
			m, _ := r.(map[string]any)
			sub, _ := m["Fn::Sub"].(string)
			return invRoleName["Ref"] != nil && strings.HasSuffix(sub, ":role/${"+fmt.Sprint(invRoleName["Ref"])+"}")
		}) {
			t.Error(p)
		}
	}
	isGatewayRole := func(v any) bool {
		m, _ := v.(map[string]any)
		return reflect.DeepEqual(m["Fn::GetAtt"], []any{gw, "Arn"})
	}
	for _, p := range checkInvocationTrust(props(inv)["AssumeRolePolicyDocument"], isGatewayRole) {
		t.Error(p)
	}
	for _, doc := range policiesOf(inv) {
		for _, p := range checkInvocationPolicy(doc) {
			t.Error(p)
		}
	}
	if d, ok := props(inv)["MaxSessionDuration"]; !ok || fmt.Sprint(d) != "3600" {
		t.Errorf("%s MaxSessionDuration = %v, want 3600 (role chaining allows one hour)", inv, d)
	}

	// The IRSA trust is a JSON string with ${...} substitutions.
	trust, _ := props(gw)["AssumeRolePolicyDocument"].(map[string]any)
	branches, _ := trust["Fn::If"].([]any)
	if len(branches) != 3 {
		t.Fatalf("%s AssumeRolePolicyDocument = %v, want Fn::If on the platform", gw, trust)
	}
	irsa, _ := branches[1].(map[string]any)
	irsaJSON, _ := irsa["Fn::Sub"].(string)
	var irsaDoc any
	if err := json.Unmarshal([]byte(irsaJSON), &irsaDoc); err != nil {
		t.Errorf("%s IRSA trust policy is not JSON: %v", gw, err)
	} else if s := statements(irsaDoc); len(s) != 1 || s[0]["Action"] != "sts:AssumeRoleWithWebIdentity" ||
		!strings.Contains(irsaJSON, `:sub": "system:serviceaccount:${KubernetesNamespace}:${KubernetesServiceAccount}"`) {
		t.Errorf("%s IRSA trust = %s, want AssumeRoleWithWebIdentity for the gateway's service account only", gw, irsaJSON)
	}

	// EKS Pod Identity: the EKS service is trusted, the stack's association
	// names the one service account, and Pod Identity's transitive session
	// tags are off so that they never reach the callers' sessions.
	podBranch, _ := branches[2].(map[string]any)
	pod, _ := podBranch["Fn::If"].([]any)
	if len(pod) != 3 || pod[0] != "IsPodIdentity" {
		t.Fatalf("%s trust for the other platforms = %v, want Fn::If on IsPodIdentity", gw, podBranch)
	}
	if s := statements(pod[1]); len(s) != 1 || !reflect.DeepEqual(s[0]["Principal"], map[string]any{"Service": "pods.eks.amazonaws.com"}) ||
		!reflect.DeepEqual(s[0]["Action"], []any{"sts:AssumeRole", "sts:TagSession"}) || s[0]["Condition"] != nil && s[0]["Condition"] != "" {
		t.Errorf("%s Pod Identity trust = %v, want pods.eks.amazonaws.com with sts:AssumeRole and sts:TagSession only", gw, pod[1])
	}
	params, _ := tmpl["Parameters"].(map[string]any)
	platform, _ := params["GatewayPlatform"].(map[string]any)
	if allowed := fmt.Sprint(platform["AllowedValues"]); allowed != "[eks-irsa eks-pod-identity ecs-task ec2]" {
		t.Errorf("GatewayPlatform AllowedValues = %s", allowed)
	}
	assocs := byType["AWS::EKS::PodIdentityAssociation"]
	if len(assocs) != 1 {
		t.Fatalf("PodIdentityAssociations = %v, want 1", assocs)
	}
	assocRes, _ := resources[assocs[0]].(map[string]any)
	assoc := props(assocs[0])
	ref := func(v any) any { m, _ := v.(map[string]any); return m["Ref"] }
	if assocRes["Condition"] != "IsPodIdentity" || !isGatewayRole(assoc["RoleArn"]) || fmt.Sprint(assoc["DisableSessionTags"]) != "true" ||
		ref(assoc["ClusterName"]) != "EksClusterName" || ref(assoc["Namespace"]) != "KubernetesNamespace" ||
		ref(assoc["ServiceAccount"]) != "KubernetesServiceAccount" {
		t.Errorf("%s = %v (condition %v), want the gateway role for the gateway's service account, session tags disabled, only on eks-pod-identity",
			assocs[0], assoc, assocRes["Condition"])
	}

	// CUR 2.0 export with IAM principal data, to a parameterised bucket.
	exports := byType["AWS::BCMDataExports::Export"]
	if len(exports) != 1 {
		t.Fatalf("BCMDataExports exports = %v, want 1", exports)
	}
	export, _ := props(exports[0])["Export"].(map[string]any)
	query, _ := export["DataQuery"].(map[string]any)
	tables, _ := query["TableConfigurations"].(map[string]any)
	cur, _ := tables["COST_AND_USAGE_REPORT"].(map[string]any)
	if cur["INCLUDE_IAM_PRINCIPAL_DATA"] != "TRUE" {
		t.Errorf("COST_AND_USAGE_REPORT INCLUDE_IAM_PRINCIPAL_DATA = %v, want \"TRUE\"", cur["INCLUDE_IAM_PRINCIPAL_DATA"])
	}
	stmt, _ := query["QueryStatement"].(string)
	for _, col := range []string{"line_item_iam_principal", "tags", "line_item_unblended_cost", "FROM COST_AND_USAGE_REPORT"} {
		if !strings.Contains(stmt, col) {
			t.Errorf("QueryStatement does not contain %s", col)
		}
	}
	dest, _ := export["DestinationConfigurations"].(map[string]any)
	s3, _ := dest["S3Destination"].(map[string]any)
	if _, literal := s3["S3Bucket"].(string); literal || s3["S3Bucket"] == nil {
		t.Errorf("S3Bucket = %v, want a parameter", s3["S3Bucket"])
	}

	if cfnLint, err := exec.LookPath("cfn-lint"); err != nil {
		t.Log("cfn-lint not on PATH: the template is checked only by this test")
	} else if out, err := exec.Command(cfnLint, path).CombinedOutput(); err != nil {
		t.Errorf("cfn-lint %s: %v\n%s", path, err, out)
	}
}

func readJSON(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func TestPlainPolicyDocuments(t *testing.T) {
	isGateway := func(v any) bool {
		s, _ := v.(string)
		return regexp.MustCompile(`^arn:aws:iam::\d{12}:role/BedrockGatewayRole$`).MatchString(s)
	}
	isInvocation := func(v any) bool {
		s, _ := v.(string)
		return regexp.MustCompile(`^arn:aws:iam::\d{12}:role/BedrockInvocationRole$`).MatchString(s)
	}
	for _, p := range checkGatewayPolicy(readJSON(t, filepath.Join("iam", "gateway-role-policy.json")), isInvocation) {
		t.Error("gateway-role-policy.json: " + p)
	}
	for _, p := range checkInvocationTrust(readJSON(t, filepath.Join("iam", "invocation-role-trust.json")), isGateway) {
		t.Error("invocation-role-trust.json: " + p)
	}
	for _, p := range checkInvocationPolicy(readJSON(t, filepath.Join("iam", "invocation-role-policy.json"))) {
		t.Error("invocation-role-policy.json: " + p)
	}
}

// The IAM checks refuse the mistakes they exist for.
func TestIAMChecksCatchMistakes(t *testing.T) {
	isGateway := func(v any) bool { return v == "gw" }
	isInvocation := func(v any) bool { return v == "inv" }
	parse := func(s string) any {
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	const tagOK = `{"Effect":"Allow","Principal":{"AWS":"gw"},"Action":"sts:TagSession","Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["team","tenant","cost-center"]}}}`
	const deny = `{"Effect":"Deny","Action":["bedrock:*"],"Resource":"*"}`
	for _, tc := range []struct {
		name  string
		check func(any) []string
		doc   string
		want  string
	}{
		{"trust ok", func(d any) []string { return checkInvocationTrust(d, isGateway) },
			`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"gw"},"Action":"sts:AssumeRole"},` + tagOK + `]}`, ""},
		{"trust anyone", func(d any) []string { return checkInvocationTrust(d, isGateway) },
			`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"},` + tagOK + `]}`, "want the gateway role only"},
		{"trust a second principal", func(d any) []string { return checkInvocationTrust(d, isGateway) },
			`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"gw","Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},` + tagOK + `]}`, "want the gateway role only"},
		{"tag session without condition", func(d any) []string { return checkInvocationTrust(d, isGateway) },
			`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"gw"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`, "aws:TagKeys"},
		{"gateway ok", func(d any) []string { return checkGatewayPolicy(d, isInvocation) },
			`{"Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Resource":"inv"},` + deny + `]}`, ""},
		{"gateway on any role", func(d any) []string { return checkGatewayPolicy(d, isInvocation) },
			`{"Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Resource":"*"},` + deny + `]}`, "want the invocation role only"},
		{"gateway calls bedrock", func(d any) []string { return checkGatewayPolicy(d, isInvocation) },
			`{"Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity","bedrock:InvokeModel"],"Resource":"inv"}]}`, "gateway role allows bedrock:InvokeModel"},
		{"gateway without deny", func(d any) []string { return checkGatewayPolicy(d, isInvocation) },
			`{"Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Resource":"inv"}]}`, "does not deny bedrock:*"},
		{"invocation wildcard", checkInvocationPolicy,
			`{"Statement":[{"Effect":"Allow","Action":"bedrock:*","Resource":"*"}]}`, "invocation role allows bedrock:*"},
		{"invocation on everything", checkInvocationPolicy,
			`{"Statement":[{"Effect":"Allow","Action":["bedrock:InvokeModel","bedrock:InvokeModelWithResponseStream"],"Resource":"*"}]}`, "on *"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(tc.check(parse(tc.doc)), "\n")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("check(%s) = %q, want %q", tc.doc, got, tc.want)
			}
		})
	}
}
