package envoy_test

// This file makes the Envoy configuration Istio generates from Istio
// resources: the ext_authz filter istiod builds for a MeshConfig extension
// provider (envoyExtAuthzGrpc, envoyExtAuthzHttp) and the shadow RBAC
// filter it builds for an AuthorizationPolicy with action CUSTOM, which
// turns ext_authz on for the requests the policy's rules match. It follows
// istiod's builder (pilot/pkg/security/authz/builder: extauthz.go, and the
// golden files under its testdata) for the fields Portcullis's files use;
// testdata/realworld/envoy-configs/istio-pilot-generated-ext-authz-grpc-filter.yaml
// is one such golden file, run as it is.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/internal/testkit"
)

// meshProvider is one MeshConfig extensionProviders entry.
type meshProvider struct {
	Name              string         `yaml:"name"`
	EnvoyExtAuthzGrpc *extAuthzGrpc  `yaml:"envoyExtAuthzGrpc"`
	EnvoyExtAuthzHTTP *extAuthzHTTP  `yaml:"envoyExtAuthzHttp"`
	Rest              map[string]any `yaml:",inline"`
}

type extAuthzGrpc struct {
	Service       string `yaml:"service"`
	Port          int    `yaml:"port"`
	Timeout       string `yaml:"timeout"`
	FailOpen      bool   `yaml:"failOpen"`
	StatusOnError string `yaml:"statusOnError"`
}

type extAuthzHTTP struct {
	Service                      string   `yaml:"service"`
	Port                         int      `yaml:"port"`
	Timeout                      string   `yaml:"timeout"`
	FailOpen                     bool     `yaml:"failOpen"`
	StatusOnError                string   `yaml:"statusOnError"`
	PathPrefix                   string   `yaml:"pathPrefix"`
	IncludeRequestHeadersInCheck []string `yaml:"includeRequestHeadersInCheck"`
	HeadersToUpstreamOnAllow     []string `yaml:"headersToUpstreamOnAllow"`
	HeadersToDownstreamOnDeny    []string `yaml:"headersToDownstreamOnDeny"`
}

// meshConfig is the part of a MeshConfig these tests read.
type meshConfig struct {
	PathNormalization struct {
		Normalization string `yaml:"normalization"`
	} `yaml:"pathNormalization"`
	ExtensionProviders []meshProvider `yaml:"extensionProviders"`
}

// authorizationPolicy is the part of a security.istio.io AuthorizationPolicy
// a CUSTOM action uses here.
type authorizationPolicy struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec struct {
		Action   string `yaml:"action"`
		Provider struct {
			Name string `yaml:"name"`
		} `yaml:"provider"`
		Rules []struct {
			To []struct {
				Operation struct {
					Paths    []string `yaml:"paths"`
					NotPaths []string `yaml:"notPaths"`
				} `yaml:"operation"`
			} `yaml:"to"`
		} `yaml:"rules"`
	} `yaml:"spec"`
}

// readMeshConfig reads a MeshConfig fragment.
func readMeshConfig(t testing.TB, file string) meshConfig {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m meshConfig
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return m
}

// readPolicies returns the AuthorizationPolicies among the YAML documents
// in b.
func readPolicies(t testing.TB, name string, b []byte) []authorizationPolicy {
	t.Helper()
	var out []authorizationPolicy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var p authorizationPolicy
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Kind == "AuthorizationPolicy" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no AuthorizationPolicy", name)
	}
	return out
}

// outboundCluster is the name istiod gives the cluster of a service port.
func outboundCluster(host string, port int) string {
	return fmt.Sprintf("outbound|%d||%s", port, host)
}

// extAuthzMatchPrefix is the prefix of the shadow RBAC policy names that
// turn on a provider's ext_authz filter (istiod's extAuthzMatchPrefix and
// the provider's name).
func extAuthzMatchPrefix(provider string) string { return "istio-ext-authz-" + provider }

// filterEnabled is istiod's filter_enabled_metadata: ext_authz runs only
// when the shadow RBAC filter matched a CUSTOM rule of this provider.
func filterEnabled(provider string) map[string]any {
	return map[string]any{
		"filter": "envoy.filters.http.rbac",
		"path":   []any{map[string]any{"key": "istio_ext_authz_shadow_effective_policy_id"}},
		"value":  map[string]any{"string_match": map[string]any{"prefix": extAuthzMatchPrefix(provider)}},
	}
}

// statusOnError is istiod's parse of a provider's statusOnError.
func statusOnError(t testing.TB, s string) map[string]any {
	t.Helper()
	if s == "" {
		return nil
	}
	code, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("statusOnError %q: %v", s, err)
	}
	return map[string]any{"code": code}
}

// headerMatchers is istiod's generateHeaders: exact, case-insensitive
// (a leading or trailing "*" makes a suffix or prefix match).
func headerMatchers(hs []string) map[string]any {
	if len(hs) == 0 {
		return nil
	}
	var ps []any
	for _, h := range hs {
		m := map[string]any{"ignore_case": true}
		switch {
		case strings.HasPrefix(h, "*"):
			m["suffix"] = strings.TrimPrefix(h, "*")
		case strings.HasSuffix(h, "*"):
			m["prefix"] = strings.TrimSuffix(h, "*")
		default:
			m["exact"] = h
		}
		ps = append(ps, m)
	}
	return map[string]any{"patterns": ps}
}

// istioExtAuthz returns the ext_authz filter istiod generates for provider
// p, and the name of the cluster it calls.
func istioExtAuthz(t testing.TB, p meshProvider) (map[string]any, string) {
	t.Helper()
	timeout := func(s string) string {
		if s == "" {
			return "600s" // istiod's default
		}
		return s
	}
	cfg := map[string]any{
		"@type":                   "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
		"transport_api_version":   "V3",
		"failure_mode_allow":      false,
		"filter_enabled_metadata": filterEnabled(p.Name),
	}
	var cluster string
	switch {
	case p.EnvoyExtAuthzGrpc != nil:
		g := p.EnvoyExtAuthzGrpc
		cluster = outboundCluster(g.Service, g.Port)
		cfg["failure_mode_allow"] = g.FailOpen
		if s := statusOnError(t, g.StatusOnError); s != nil {
			cfg["status_on_error"] = s
		}
		cfg["grpc_service"] = map[string]any{
			"envoy_grpc": map[string]any{"cluster_name": cluster, "authority": strings.ReplaceAll(cluster, "|", "_.")},
			"timeout":    timeout(g.Timeout),
		}
	case p.EnvoyExtAuthzHTTP != nil:
		h := p.EnvoyExtAuthzHTTP
		cluster = outboundCluster(h.Service, h.Port)
		cfg["failure_mode_allow"] = h.FailOpen
		if s := statusOnError(t, h.StatusOnError); s != nil {
			cfg["status_on_error"] = s
		}
		svc := map[string]any{
			"server_uri": map[string]any{"uri": "http://" + h.Service, "cluster": cluster, "timeout": timeout(h.Timeout)},
		}
		if h.PathPrefix != "" {
			svc["path_prefix"] = h.PathPrefix
		}
		if m := headerMatchers(h.IncludeRequestHeadersInCheck); m != nil {
			svc["authorization_request"] = map[string]any{"allowed_headers": m}
		}
		resp := map[string]any{}
		if m := headerMatchers(h.HeadersToUpstreamOnAllow); m != nil {
			resp["allowed_upstream_headers"] = m
		}
		if m := headerMatchers(h.HeadersToDownstreamOnDeny); m != nil {
			resp["allowed_client_headers"] = m
		}
		if len(resp) > 0 {
			svc["authorization_response"] = resp
		}
		cfg["http_service"] = svc
	default:
		t.Fatalf("provider %s: neither envoyExtAuthzGrpc nor envoyExtAuthzHttp", p.Name)
	}
	return map[string]any{"name": "envoy.filters.http.ext_authz", "typed_config": cfg}, cluster
}

// pathMatcher is istiod's path matcher: "*" any, "/x*" prefix, "*x"
// suffix, else exact.
func pathMatcher(p string) map[string]any {
	var m map[string]any
	switch {
	case p == "*":
		return map[string]any{"any": true}
	case strings.HasSuffix(p, "*"):
		m = map[string]any{"prefix": strings.TrimSuffix(p, "*")}
	case strings.HasPrefix(p, "*"):
		m = map[string]any{"suffix": strings.TrimPrefix(p, "*")}
	default:
		m = map[string]any{"exact": p}
	}
	return map[string]any{"url_path": map[string]any{"path": m}}
}

func orRules(ps []string) map[string]any {
	var rs []any
	for _, p := range ps {
		rs = append(rs, pathMatcher(p))
	}
	return map[string]any{"or_rules": map[string]any{"rules": rs}}
}

// istioRBAC returns the shadow RBAC filter istiod generates for the CUSTOM
// policies of provider: each rule a DENY shadow policy, whose match names
// it in the dynamic metadata the ext_authz filter is enabled by.
func istioRBAC(t testing.TB, provider string, policies []authorizationPolicy) map[string]any {
	t.Helper()
	rules := map[string]any{}
	for _, p := range policies {
		if p.Spec.Action != "CUSTOM" || p.Spec.Provider.Name != provider {
			t.Fatalf("policy %s: action %s provider %s, want CUSTOM %s", p.Metadata.Name, p.Spec.Action, p.Spec.Provider.Name, provider)
		}
		for i, r := range p.Spec.Rules {
			var perms []any
			for _, to := range r.To {
				var and []any
				if ps := to.Operation.Paths; len(ps) > 0 {
					and = append(and, orRules(ps))
				}
				if ps := to.Operation.NotPaths; len(ps) > 0 {
					and = append(and, map[string]any{"not_rule": orRules(ps)})
				}
				if len(and) == 0 {
					and = append(and, map[string]any{"any": true})
				}
				perms = append(perms, map[string]any{"and_rules": map[string]any{"rules": and}})
			}
			name := fmt.Sprintf("%s-ns[%s]-policy[%s]-rule[%d]", extAuthzMatchPrefix(provider), p.Metadata.Namespace, p.Metadata.Name, i)
			rules[name] = map[string]any{
				"permissions": perms,
				"principals":  []any{map[string]any{"and_ids": map[string]any{"ids": []any{map[string]any{"any": true}}}}},
			}
		}
	}
	return map[string]any{"name": "envoy.filters.http.rbac", "typed_config": map[string]any{
		"@type":                    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
		"shadow_rules":             map[string]any{"action": "DENY", "policies": rules},
		"shadow_rules_stat_prefix": "istio_ext_authz_",
	}}
}

// sidecarInbound wraps HTTP filters into a sidecar's inbound listener and
// the clusters it names: the application ("inbound|8080||") and the
// authorization service (authz, HTTP/2 when grpc).
func sidecarInbound(filters []any, normalize bool, authz string, grpc bool) doc {
	hcm := map[string]any{
		"@type":        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"stat_prefix":  "inbound_0.0.0.0_8080",
		"http_filters": append(filters, map[string]any{"name": "envoy.filters.http.router", "typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
		"route_config": map[string]any{"name": "inbound|8080||", "virtual_hosts": []any{map[string]any{
			"name": "inbound|http|8080", "domains": []any{"*"},
			"routes": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "route": map[string]any{"cluster": "inbound|8080||"}}},
		}}},
	}
	if normalize {
		hcm["normalize_path"] = true
		hcm["merge_slashes"] = true
	}
	authzCluster := map[string]any{"name": authz, "type": "STRICT_DNS", "connect_timeout": "1s",
		"load_assignment": map[string]any{"cluster_name": authz, "endpoints": []any{map[string]any{"lb_endpoints": []any{
			map[string]any{"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": "authz.invalid", "port_value": 9000}}}}}}}}}
	if grpc {
		authzCluster["typed_extension_protocol_options"] = map[string]any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
			"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}}}}
	}
	app := map[string]any{"name": "inbound|8080||", "type": "STATIC", "connect_timeout": "1s",
		"load_assignment": map[string]any{"cluster_name": "inbound|8080||", "endpoints": []any{map[string]any{"lb_endpoints": []any{
			map[string]any{"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 8080}}}}}}}}}
	return doc{"static_resources": map[string]any{
		"listeners": []any{map[string]any{"name": "virtualInbound", "address": map[string]any{"socket_address": map[string]any{"address": "0.0.0.0", "port_value": 15006}},
			"filter_chains": []any{map[string]any{"filters": []any{map[string]any{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}}}}}},
		"clusters": []any{authzCluster, app},
	}}
}

// istioDoc is one Envoy configuration made from Istio resources.
type istioDoc struct {
	name      string
	d         doc
	authz     string // the authorization cluster's name
	transport string // grpc or http
}

// helmBinary finds helm (scripts/install-deps.sh builds it into .tools/bin),
// "" when it is not installed.
func helmBinary() string {
	if p := filepath.Join(testkit.Root(), ".tools", "bin", "helm"); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	return ""
}

// chartPolicies renders the Helm chart with Istio on and returns its
// AuthorizationPolicy.
func chartPolicies(t testing.TB, helm string) []authorizationPolicy {
	t.Helper()
	cmd := exec.Command(helm, "template", "portcullis", filepath.Join(testkit.Root(), "k8s", "helm", "portcullis"), "--set", "istio.enabled=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	return readPolicies(t, "the chart", out)
}

// istioDocs makes, for each extension provider of k8s/istio/meshconfig.yaml,
// the sidecar inbound configuration istiod generates for the
// AuthorizationPolicy of k8s/istio/authorizationpolicy.yaml (its provider
// named there) and for the chart's (the same provider).
func istioDocs(t testing.TB) []istioDoc {
	t.Helper()
	root := testkit.Root()
	mesh := readMeshConfig(t, filepath.Join(root, "k8s", "istio", "meshconfig.yaml"))
	b, err := os.ReadFile(filepath.Join(root, "k8s", "istio", "authorizationpolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	static := readPolicies(t, "authorizationpolicy.yaml", b)
	sources := []struct {
		name     string
		policies []authorizationPolicy
	}{{"k8s/istio/authorizationpolicy.yaml", static}}
	// Missing helm fails under CI; elsewhere only the chart's policy is
	// left out.
	switch helm := helmBinary(); {
	case helm != "":
		sources = append(sources, struct {
			name     string
			policies []authorizationPolicy
		}{"the chart's AuthorizationPolicy", chartPolicies(t, helm)})
	case os.Getenv("CI") != "":
		t.Fatal("helm is not installed: scripts/install-deps.sh installs it")
	default:
		t.Log("helm not installed (scripts/install-deps.sh installs it): the chart's AuthorizationPolicy is left out")
	}
	normalize := mesh.PathNormalization.Normalization == "MERGE_SLASHES"
	var out []istioDoc
	for _, p := range mesh.ExtensionProviders {
		f, cluster := istioExtAuthz(t, p)
		transport := "grpc"
		if p.EnvoyExtAuthzHTTP != nil {
			transport = "http"
		}
		for _, s := range sources {
			var mine []authorizationPolicy
			for _, ap := range s.policies {
				if ap.Spec.Provider.Name == p.Name {
					mine = append(mine, ap)
				}
			}
			if len(mine) == 0 {
				// The shipped policies name the gRPC provider; the HTTP one
				// is tried with the same rules under its own name.
				for _, ap := range s.policies {
					ap.Spec.Provider.Name = p.Name
					mine = append(mine, ap)
				}
			}
			d := sidecarInbound([]any{istioRBAC(t, p.Name, mine), f}, normalize, cluster, transport == "grpc")
			out = append(out, istioDoc{name: fmt.Sprintf("meshconfig %s + %s", p.Name, s.name), d: d, authz: cluster, transport: transport})
		}
	}
	return out
}

// goldenIstioDoc wraps testdata/realworld's golden ext_authz filter (as
// istiod generated it) with the shadow RBAC filter istiod generates for the
// golden AuthorizationPolicies of the same builder tests (provider
// "default": /httpbin1 and /httpbin2 go through ext_authz, nothing else).
func goldenIstioDoc(t testing.TB) istioDoc {
	t.Helper()
	dir := testkit.Realworld(t, "envoy-configs")
	f := loadDoc(t, filepath.Join(dir, "istio-pilot-generated-ext-authz-grpc-filter.yaml"))
	cluster := fmt.Sprint(path(f, "typed_config", "grpc_service", "envoy_grpc", "cluster_name"))
	b, err := os.ReadFile(filepath.Join(dir, "istio-authorizationpolicy-custom-action.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rbac := istioRBAC(t, "default", readPolicies(t, "istio-authorizationpolicy-custom-action.yaml", b))
	d := sidecarInbound([]any{rbac, map[string]any(f)}, false, cluster, true)
	return istioDoc{name: "istiod's golden ext_authz filter", d: d, authz: cluster, transport: "grpc"}
}
