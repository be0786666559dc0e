package k8s_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/portcullis/portcullis/policy"
)

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor the
// chart renders, decoded as strictly as the k8s.io/api types.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the Prometheus Operator's PrometheusRule as the chart
// renders it, decoded strictly.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// authorizationPolicy is Istio's CRD envelope; its spec is decoded with
// protojson into istio.io/api's message.
type authorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              json.RawMessage `json:"spec"`
	spec              *securityv1beta1.AuthorizationPolicy
}

// object is one decoded manifest.
type object struct {
	kind string
	v    any
}

// decodeDocs splits a multi-document YAML stream and decodes each document
// strictly into the type its kind names. Unknown kinds are errors.
func decodeDocs(t *testing.T, name string, data []byte) []object {
	t.Helper()
	var out []object
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s doc %d: %v", name, i, err)
		}
		var v any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/Namespace":
			v = &corev1.Namespace{}
		case "v1/ServiceAccount":
			v = &corev1.ServiceAccount{}
		case "v1/ConfigMap":
			v = &corev1.ConfigMap{}
		case "v1/Secret":
			v = &corev1.Secret{}
		case "v1/Service":
			v = &corev1.Service{}
		case "apps/v1/Deployment":
			v = &appsv1.Deployment{}
		case "policy/v1/PodDisruptionBudget":
			v = &policyv1.PodDisruptionBudget{}
		case "autoscaling/v2/HorizontalPodAutoscaler":
			v = &autoscalingv2.HorizontalPodAutoscaler{}
		case "networking.k8s.io/v1/NetworkPolicy":
			v = &networkingv1.NetworkPolicy{}
		case "networking.k8s.io/v1/Ingress":
			v = &networkingv1.Ingress{}
		case "monitoring.coreos.com/v1/ServiceMonitor":
			v = &serviceMonitor{}
		case "monitoring.coreos.com/v1/PrometheusRule":
			v = &prometheusRule{}
		case "security.istio.io/v1/AuthorizationPolicy", "security.istio.io/v1beta1/AuthorizationPolicy":
			v = &authorizationPolicy{}
		default:
			t.Fatalf("%s doc %d: unexpected kind %s %s", name, i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			t.Fatalf("%s doc %d (%s) does not match the schema: %v", name, i, tm.Kind, err)
		}
		if ap, ok := v.(*authorizationPolicy); ok {
			ap.spec = &securityv1beta1.AuthorizationPolicy{}
			if err := protojson.Unmarshal(ap.Spec, ap.spec); err != nil {
				t.Fatalf("%s doc %d: AuthorizationPolicy spec: %v", name, i, err)
			}
		}
		out = append(out, object{tm.Kind, v})
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

func byKind(objs []object) map[string][]any {
	m := map[string][]any{}
	for _, o := range objs {
		m[o.kind] = append(m[o.kind], o.v)
	}
	return m
}

func readAll(t *testing.T, glob string) ([]object, []string) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s", glob)
	}
	var objs []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decodeDocs(t, f, b)...)
	}
	return objs, files
}

// checkDeployment asserts what an operator relies on in every Deployment.
func checkDeployment(t *testing.T, d *appsv1.Deployment, minReplicas int32) {
	t.Helper()
	if d.Spec.Replicas != nil && *d.Spec.Replicas < minReplicas {
		t.Errorf("replicas %d, want at least %d", *d.Spec.Replicas, minReplicas)
	}
	ps := d.Spec.Template.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Error("pod must run as non-root")
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%d containers", len(ps.Containers))
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container must have a read-only root filesystem and no privilege escalation")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("readiness probe must be GET /readyz")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("liveness probe must be GET /healthz")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("resource requests and limits must be set")
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--policy=/etc/portcullis/policy/policy.yaml") {
		t.Errorf("args %v", c.Args)
	}
	flags := serveFlags(t)
	for _, a := range c.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !flags[name] {
			t.Errorf("arg %q is not a flag of portcullis serve (portcullis serve -h)", a)
		}
	}
}

var (
	serveFlagsOnce sync.Once
	serveFlagSet   map[string]bool
	serveFlagsErr  error
)

// serveFlags returns the flags the real `portcullis serve` takes, read from
// its -h.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	serveFlagsOnce.Do(func() {
		out, err := exec.Command(portcullis(t), "serve", "-h").CombinedOutput()
		if err != nil {
			serveFlagsErr = fmt.Errorf("portcullis serve -h: %v\n%s", err, out)
			return
		}
		serveFlagSet = map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(l, "  -") {
				serveFlagSet[strings.TrimPrefix(f[0], "-")] = true
			}
		}
	})
	if serveFlagsErr != nil {
		t.Fatal(serveFlagsErr)
	}
	return serveFlagSet
}

// checkPolicy validates the policy a ConfigMap carries, with the files its
// Secret carries where the Deployment mounts them, exactly as the server
// will load them, and with the real binary's validate.
func checkPolicy(t *testing.T, cm *corev1.ConfigMap, secret *corev1.Secret) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The Secret's files, where the Deployment mounts them (the policy
	// names them by absolute path).
	secretDir := filepath.Join(dir, "secret")
	if err := os.MkdirAll(secretDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range secret.StringData {
		if err := os.WriteFile(filepath.Join(secretDir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pol := filepath.Join(dir, "policy.yaml")
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatalf("the ConfigMap has no policy.yaml: %v", err)
	}
	if strings.Contains(string(b), "keys_file:") && !strings.Contains(string(b), "keys_file: /etc/portcullis/keys/keys.yaml") {
		t.Error("the policy's keys_file must name the mounted Secret: keys_file: /etc/portcullis/keys/keys.yaml")
	}
	if err := os.WriteFile(pol, []byte(strings.ReplaceAll(string(b), "/etc/portcullis/keys/", secretDir+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(pol, policy.LoadOptions{}); err != nil {
		t.Fatalf("the shipped policy does not validate:\n%v", err)
	}
	if out, err := exec.Command(portcullis(t), "validate", pol).CombinedOutput(); err != nil {
		t.Fatalf("portcullis validate: %v\n%s", err, out)
	}
}

func TestManifests(t *testing.T) {
	objs, _ := readAll(t, filepath.Join("manifests", "*.yaml"))
	k := byKind(objs)
	for _, kind := range []string{"Namespace", "ServiceAccount", "Deployment", "ConfigMap", "Secret",
		"PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} {
		if len(k[kind]) != 1 {
			t.Errorf("%d %s, want 1", len(k[kind]), kind)
		}
	}
	checkServices(t, k["Service"])
	checkDeployment(t, k["Deployment"][0].(*appsv1.Deployment), 2)
	checkPolicy(t, k["ConfigMap"][0].(*corev1.ConfigMap), k["Secret"][0].(*corev1.Secret))
	svc := k["Service"][0].(*corev1.Service)
	ports := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if ports["grpc"] != 9001 || ports["admin"] != 9090 {
		t.Errorf("service ports %v", ports)
	}
	if hpa := k["HorizontalPodAutoscaler"][0].(*autoscalingv2.HorizontalPodAutoscaler); hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Error("HPA must keep at least 2 replicas")
	}
}

func TestIngressNginxExample(t *testing.T) {
	objs, _ := readAll(t, filepath.Join("..", "examples", "ingress-nginx", "*.yaml"))
	if len(byKind(objs)["Ingress"]) != 1 {
		t.Fatal("no Ingress")
	}
}

// TestIstio decodes the mesh config and the AuthorizationPolicy strictly
// into istio.io/api types and checks that they name the same provider.
func TestIstio(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("istio", "meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	mesh := &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal(j, mesh); err != nil {
		t.Fatalf("meshconfig.yaml does not match istio.io/api MeshConfig: %v", err)
	}
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider{}
	for _, p := range mesh.GetExtensionProviders() {
		providers[p.GetName()] = p
	}
	grpc := providers["portcullis"].GetEnvoyExtAuthzGrpc()
	if grpc == nil || grpc.GetFailOpen() || grpc.GetPort() != 9001 || grpc.GetStatusOnError() != "503" {
		t.Errorf("gRPC provider %v: must fail closed on port 9001 with 503", grpc)
	}
	http := providers["portcullis-http"].GetEnvoyExtAuthzHttp()
	if http == nil || http.GetFailOpen() {
		t.Fatalf("HTTP provider %v", http)
	}
	for _, h := range http.GetIncludeRequestHeadersInCheck() {
		h = strings.ToLower(h)
		if strings.HasPrefix(h, "x-forwarded-") || strings.HasPrefix(h, "x-original-") || h == "x-envoy-original-path" || h == "forwarded" {
			t.Errorf("includeRequestHeadersInCheck passes a client's %s to Portcullis", h)
		}
	}
	up := strings.Join(http.GetHeadersToUpstreamOnAllow(), ",")
	for _, h := range []string{"x-tenant-id", "x-tenant-kind", "x-user-id", "x-auth-tier", "x-credential-id"} {
		if !strings.Contains(up, h) {
			t.Errorf("headersToUpstreamOnAllow lacks %s", h)
		}
	}
	objs, _ := readAll(t, filepath.Join("istio", "authorizationpolicy.yaml"))
	ap := byKind(objs)["AuthorizationPolicy"][0].(*authorizationPolicy)
	if ap.spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM || providers[ap.spec.GetProvider().GetName()] == nil {
		t.Errorf("AuthorizationPolicy must be CUSTOM with a declared provider: %v", ap.spec)
	}
}

// helm returns the helm binary scripts/install-deps.sh installs.
func helm(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("HELM"), "helm", filepath.Join(os.Getenv("HOME"), "go", "bin", "helm")} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		if p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "helm"); fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("helm is not installed: scripts/install-deps.sh installs it")
	}
	t.Skip("helm not installed (scripts/install-deps.sh installs it)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func runHelm(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s%s", args, err, out, stderr.String())
	}
	return out
}

// TestHelmForwardAuthNamesItsMode: the chart refuses to turn forward-auth
// on without naming the proxy in front, and refuses a mode the server does
// not know: a client's headers never pick the mode.
func TestHelmForwardAuthNamesItsMode(t *testing.T) {
	chart := filepath.Join("helm", "portcullis")
	for _, mode := range []string{"", "haproxy"} {
		cmd := exec.Command(helm(t), "template", "portcullis", chart, "--set", "server.forwardAuth.enabled=true",
			"--set", "server.forwardAuth.mode="+mode)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "server.forwardAuth.mode") {
			t.Errorf("mode %q rendered (%v):\n%s", mode, err, out)
		}
	}
	for _, mode := range []string{"traefik", "nginx", "ingress-nginx", "envoy"} {
		out := runHelm(t, "template", "portcullis", chart, "--set", "server.forwardAuth.enabled=true", "--set", "server.forwardAuth.mode="+mode)
		if !strings.Contains(string(out), "--http-mode="+mode) {
			t.Errorf("mode %s not passed to the server", mode)
		}
	}
}

func TestHelmChart(t *testing.T) {
	chart := filepath.Join("helm", "portcullis")
	all := filepath.Join("test", "values-all.yaml")
	for _, tc := range []struct {
		name   string
		values []string
		kinds  map[string]int
	}{
		{"defaults", nil, map[string]int{"ServiceAccount": 1, "ConfigMap": 1, "Secret": 1, "Service": 2, "Deployment": 1,
			"PodDisruptionBudget": 1, "NetworkPolicy": 1, "HorizontalPodAutoscaler": 0, "ServiceMonitor": 0, "AuthorizationPolicy": 0,
			"Ingress": 0}},
		{"everything on", []string{"-f", all}, map[string]int{"ServiceAccount": 1, "ConfigMap": 2, "Secret": 1, "Service": 2, "Deployment": 1,
			"PodDisruptionBudget": 1, "NetworkPolicy": 1, "HorizontalPodAutoscaler": 1, "ServiceMonitor": 1, "AuthorizationPolicy": 1,
			"PrometheusRule": 1, "Ingress": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runHelm(t, append([]string{"lint", "--strict", chart}, tc.values...)...)
			out := runHelm(t, append([]string{"template", "portcullis", chart, "--namespace", "portcullis"}, tc.values...)...)
			objs := decodeDocs(t, "helm template "+tc.name, out)
			k := byKind(objs)
			for kind, n := range tc.kinds {
				if len(k[kind]) != n {
					t.Errorf("%d %s rendered, want %d", len(k[kind]), kind, n)
				}
			}
			d := k["Deployment"][0].(*appsv1.Deployment)
			checkDeployment(t, d, 2)
			for _, cm := range k["ConfigMap"] {
				if cm := cm.(*corev1.ConfigMap); cm.Name == "portcullis" { // the other is the Grafana dashboard
					checkPolicy(t, cm, k["Secret"][0].(*corev1.Secret))
				}
			}
			args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
			if tc.name == "everything on" {
				for _, want := range []string{"--reflection", "--http-addr=0.0.0.0:9002", "--http-mode=nginx", "--http-path-prefix=/authz",
					"--trusted-proxies=10.0.0.0/8,192.168.0.0/16", "--tls-cert=", "--client-ca=", "--log-level=debug", "--shutdown-timeout=25s",
					"--gc-headroom-mib=32"} {
					if !strings.Contains(args, want) {
						t.Errorf("args lack %s: %s", want, args)
					}
				}
				if d.Spec.Replicas != nil {
					t.Error("with autoscaling the Deployment must not pin replicas")
				}
				if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 38 {
					t.Errorf("terminationGracePeriodSeconds %v, want shutdownTimeout + shutdownDelay + 10 = 38", g)
				}
				ap := k["AuthorizationPolicy"][0].(*authorizationPolicy)
				if ap.Namespace != "apps" || ap.spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
					t.Errorf("AuthorizationPolicy %s %v", ap.Namespace, ap.spec)
				}
				checkKeyStore(t, d, k)
				env := map[string]string{}
				for _, e := range d.Spec.Template.Spec.Containers[0].Env {
					env[e.Name] = e.Value
				}
				np := k["NetworkPolicy"][0].(*networkingv1.NetworkPolicy)
				collector := false
				for _, r := range np.Spec.Egress {
					for _, p := range r.Ports {
						collector = collector || (p.Port.IntValue() == 4317 && len(r.To) == 1 && r.To[0].IPBlock.CIDR == "10.30.0.0/16")
					}
				}
				if !collector {
					t.Error("the NetworkPolicy does not let spans out to the collector")
				}
				for name, want := range map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317",
					"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"} {
					if env[name] != want {
						t.Errorf("%s = %q, want %q", name, env[name], want)
					}
				}
			} else if strings.Contains(args, "--http-addr") || strings.Contains(args, "--tls-cert") {
				t.Errorf("defaults enable optional listeners: %s", args)
			}
		})
	}
}

// checkKeyStore: with the key store on, the DSN comes from the named
// Secret (never a literal), the API listens on its port behind the
// Service, the NetworkPolicy lets the console in and the pods out to the
// database only on its port, and the lag alert watches the mirror.
func checkKeyStore(t *testing.T, d *appsv1.Deployment, k map[string][]any) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	var dsn *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "PORTCULLIS_DATABASE_URL" {
			dsn = &c.Env[i]
		}
	}
	if dsn == nil || dsn.Value != "" || dsn.ValueFrom == nil || dsn.ValueFrom.SecretKeyRef == nil ||
		dsn.ValueFrom.SecretKeyRef.Name != "portcullis-db" || dsn.ValueFrom.SecretKeyRef.Key != "dsn" {
		t.Errorf("PORTCULLIS_DATABASE_URL must come from the DSN Secret: %+v", dsn)
	}
	args := strings.Join(c.Args, " ")
	if !strings.Contains(args, "--keys-api-addr=0.0.0.0:9003") || !strings.Contains(args, "--no-migrate") {
		t.Errorf("args lack the keys API or --no-migrate: %s", args)
	}
	svc := k["Service"][0].(*corev1.Service)
	found := false
	for _, p := range svc.Spec.Ports {
		found = found || (p.Name == "keys-api" && p.Port == 9003)
	}
	if !found {
		t.Error("the Service has no keys-api port")
	}
	np := k["NetworkPolicy"][0].(*networkingv1.NetworkPolicy)
	in, out := false, false
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			in = in || (p.Port.IntValue() == 9003 && len(r.From) == 1 && r.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "console")
		}
	}
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			out = out || (p.Port.IntValue() == 6432 && len(r.To) == 1 && r.To[0].IPBlock.CIDR == "10.20.0.0/16")
		}
	}
	if !in || !out {
		t.Errorf("NetworkPolicy: keys API ingress %v, database egress %v", in, out)
	}
	pr := k["PrometheusRule"][0].(*prometheusRule)
	lag := false
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			lag = lag || (r.Alert == "PortcullisKeyStoreLagging" && strings.Contains(r.Expr, "portcullis_keystore_lag_seconds") && strings.Contains(r.Expr, "> 30"))
		}
	}
	if !lag {
		t.Errorf("no key store lag alert: %+v", pr.Spec)
	}
}

// checkServices: the Service (one cluster IP) and its headless twin
// (clusterIP None: one address per replica, for an Envoy that health-checks
// each), both selecting the pods and exposing gRPC and admin.
func checkServices(t *testing.T, objs []any) {
	t.Helper()
	if len(objs) != 2 {
		t.Fatalf("%d Services, want 2 (the Service and its headless twin)", len(objs))
	}
	headless := 0
	for _, o := range objs {
		svc := o.(*corev1.Service)
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			headless++
			if !strings.HasSuffix(svc.Name, "-headless") || len(svc.Spec.Ports) != 2 || len(svc.Spec.Selector) == 0 {
				t.Errorf("headless Service %s: ports %v, selector %v", svc.Name, svc.Spec.Ports, svc.Spec.Selector)
			}
		}
	}
	if headless != 1 {
		t.Errorf("%d headless Services, want 1", headless)
	}
}
