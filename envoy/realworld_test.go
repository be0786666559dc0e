package envoy_test

// This file runs `envoy --mode validate` on every Envoy configuration the
// project ships or generates, and runs under the real Envoy, unchanged but
// for their addresses, the configurations others wrote (Envoy's own
// ext_authz sandbox, the OPA plugin's example, istiod's generated filter),
// the sidecar listener, and the configuration Istio generates from
// k8s/istio and the chart: a configuration only we find correct is not
// proof.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// runUnderEnvoy are the files under envoy/ the tests run under the real
// Envoy (TestEnvoyConventions, TestEnvoyFailsClosed, TestSidecarListener,
// TestRateLimits…): a new file must join them.
var runUnderEnvoy = []string{"envoy.yaml", "http-service.yaml", "sidecar-listener.yaml", "ratelimit/envoy.yaml"}

// realworldConfigs are the configurations of testdata/realworld/envoy-configs
// run as bootstraps.
var realworldConfigs = []string{
	"envoy-examples-ext-authz-grpc-service-v3.yaml",
	"envoy-examples-ext-authz-http-service.yaml",
	"opa-envoy-plugin-grpc-example-envoy.yaml",
}

// shippedFiles returns envoy/*.yaml and envoy/*/*.yaml (envoy/ratelimit/;
// the rate limit service's own configuration is in a folder below), named
// by their path under envoy/, each as a bootstrap Envoy can run: a
// Listener resource (a sidecar's, served over LDS) wrapped with the
// clusters its comments name.
func shippedFiles(t testing.TB) map[string]doc {
	t.Helper()
	top, err := filepath.Glob(filepath.Join(testkit.Root(), "envoy", "*.yaml"))
	if err != nil || len(top) == 0 {
		t.Fatalf("no envoy/*.yaml: %v", err)
	}
	below, err := filepath.Glob(filepath.Join(testkit.Root(), "envoy", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]doc{}
	for _, f := range append(top, below...) {
		d := loadDoc(t, f)
		name, _ := filepath.Rel(filepath.Join(testkit.Root(), "envoy"), f)
		switch {
		case path(d, "static_resources") != nil:
			out[name] = d
		case path(d, "filter_chains") != nil:
			out[name] = listenerBootstrap(d)
		default:
			t.Fatalf("%s is neither a bootstrap nor a Listener", f)
		}
	}
	return out
}

// listenerBootstrap wraps a sidecar's inbound Listener (sidecar-listener.yaml)
// in a bootstrap with the two clusters it routes to: "portcullis" on the
// unix socket its comments name (HTTP/2), and "local_app".
func listenerBootstrap(l doc) doc {
	h2 := map[string]any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
		"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}}}}
	cluster := func(name string, addr map[string]any) map[string]any {
		return map[string]any{"name": name, "type": "STATIC", "connect_timeout": "0.25s",
			"load_assignment": map[string]any{"cluster_name": name, "endpoints": []any{map[string]any{"lb_endpoints": []any{
				map[string]any{"endpoint": map[string]any{"address": addr}}}}}}}
	}
	pc := cluster("portcullis", map[string]any{"pipe": map[string]any{"path": "/run/portcullis/portcullis.sock"}})
	pc["typed_extension_protocol_options"] = h2
	app := cluster("local_app", map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 8080}})
	return doc{"static_resources": map[string]any{"listeners": []any{map[string]any(l)}, "clusters": []any{pc, app}}}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// TestEnvoyValidatesEveryConfig: `envoy --mode validate` accepts every
// file under envoy/ (the shipped bootstraps as they are), the
// configuration Istio generates from k8s/istio and the chart, and the
// configurations of testdata/realworld the tests run.
func TestEnvoyValidatesEveryConfig(t *testing.T) {
	envoyBinary(t)
	dir := t.TempDir()
	docs := map[string]doc{}
	for name, d := range shippedFiles(t) {
		if !slices.Contains(runUnderEnvoy, name) {
			t.Errorf("envoy/%s is run by no test under the real Envoy: add it to runUnderEnvoy and to a test", name)
		}
		if path(d, "static_resources", "listeners") != nil && name != "sidecar-listener.yaml" {
			t.Run("envoy/"+name+" as shipped", func(t *testing.T) { validate(t, filepath.Join(testkit.Root(), "envoy", name)) })
			continue
		}
		docs["envoy/"+name+" in a bootstrap"] = d
	}
	for _, f := range realworldConfigs {
		docs["realworld "+f] = loadDoc(t, filepath.Join(testkit.Realworld(t, "envoy-configs"), f))
	}
	for _, d := range istioDocs(t) {
		docs[d.name] = d.d
	}
	g := goldenIstioDoc(t)
	docs[g.name] = g.d
	for name, d := range docs {
		t.Run(name, func(t *testing.T) {
			validate(t, writeDoc(t, dir, unsafeName.ReplaceAllString(name, "_")+".yaml", d))
		})
	}
}

// exchangesOf returns a convention's exchanges.
func exchangesOf(t *testing.T, example string) (convention, *testkit.Demo) {
	t.Helper()
	for _, c := range conventions {
		if c.example == example {
			return c, testkit.Load(t, example)
		}
	}
	t.Fatalf("no convention %s", example)
	return convention{}, nil
}

// runExchanges runs every exchange of convention c through st.
func runExchanges(t *testing.T, st *stack, c convention, d *testkit.Demo) {
	t.Helper()
	for _, x := range c.cases {
		t.Run(x.name, func(t *testing.T) { st.exchange(t, t, d, c, x) })
	}
}

// TestSidecarListenerUnderEnvoy runs envoy/sidecar-listener.yaml, with Portcullis on
// the unix socket its comments describe: the conventions' exchanges, and
// 503 for every request once Portcullis is stopped.
func TestSidecarListenerUnderEnvoy(t *testing.T) {
	envoyBinary(t)
	c, d := exchangesOf(t, "three-tiers")
	sock := filepath.Join(t.TempDir(), "portcullis.sock")
	p := startPortcullis(t, "--policy", d.Policy(), "--grpc-addr", "unix://"+sock)
	up := newUpstream(t)
	e := startEnvoy(t, rewriteAddresses(t, shippedFiles(t)["sidecar-listener.yaml"], map[string][]endpoint{
		"portcullis": unixSockets(sock), "local_app": tcp(up.addr())}))
	// The sidecar is not the edge: it clears no header family (the ingress
	// in front does) and writes no access log.
	st := &stack{envoy: e, addr: e.listener(t, "inbound_8443"), up: up, pc: p, transport: "grpc", others: true}
	runExchanges(t, st, c, d)
	p.stop(t)
	st.assertDenied(t, t, d.Key(t, "acme"), 5, 503)
}

// TestRealworldEnvoyExamples runs Envoy's own ext_authz sandbox (gRPC and
// HTTP service) and the OPA plugin's example unchanged but for their
// addresses, with Portcullis where their authorization server was.
func TestRealworldEnvoyExamples(t *testing.T) {
	envoyBinary(t)
	dir := testkit.Realworld(t, "envoy-configs")
	c, d := exchangesOf(t, "three-tiers")
	for _, rc := range []struct {
		file, authz, upstream, listener string
	}{
		{"envoy-examples-ext-authz-grpc-service-v3.yaml", "ext_authz-grpc-service", "upstream-service", ""},
		{"opa-envoy-plugin-grpc-example-envoy.yaml", "opa-envoy", "testsrv", "listener1"}, // testsrv: HTTP/2 upstream
	} {
		t.Run(rc.file, func(t *testing.T) {
			p := startPortcullis(t, "--policy", d.Policy())
			up := newUpstream(t)
			e := startEnvoy(t, rewriteAddresses(t, loadDoc(t, filepath.Join(dir, rc.file)), map[string][]endpoint{
				rc.authz: tcp(p.grpcAddr), rc.upstream: tcp(up.addr())}))
			st := &stack{envoy: e, addr: e.listener(t, rc.listener), up: up, pc: p, transport: "grpc", others: true}
			runExchanges(t, st, c, d)
			// Neither sets status_on_error: Envoy's default, 403, with
			// failure_mode_allow false (their default): closed.
			p.stop(t)
			st.assertDenied(t, t, d.Key(t, "acme"), 5, 403)
		})
	}

	// Envoy's HTTP-service sandbox copies only x-current-user from an
	// allow onto the request: Portcullis's headers never arrive, and a
	// client's own x-tenant-id does (Portcullis removes only the names it
	// has no value for). That is why http-service.yaml lists every header
	// Portcullis sets in allowed_upstream_headers.
	t.Run("envoy-examples-ext-authz-http-service.yaml", func(t *testing.T) {
		bd := testkit.Load(t, "bearer-key") // Authorization is always sent to an HTTP service
		p := startPortcullis(t, "--policy", bd.Policy(), "--http-addr", "127.0.0.1:0", "--http-mode", "envoy")
		up := newUpstream(t)
		e := startEnvoy(t, rewriteAddresses(t, loadDoc(t, filepath.Join(dir, "envoy-examples-ext-authz-http-service.yaml")), map[string][]endpoint{
			"ext_authz-http-service": tcp(p.httpAddr), "upstream-service": tcp(up.addr())}))
		addr := e.listener(t, "")
		a := send(t, addr, "GET", "/api/things", "", "authorization", "Bearer "+bd.Key(t, "app"), "x-tenant-id", "forged", "x-user-id", "forged")
		var got seen
		if err := json.Unmarshal(a.body, &got); err != nil || a.status != 200 {
			t.Fatalf("allowed request: %d %s", a.status, a.body)
		}
		if got.Header["x-tenant-id"] != "forged" || got.Header["x-auth-tier"] != "" {
			t.Errorf("the upstream received x-tenant-id %q, x-auth-tier %q: this configuration copies neither of Portcullis's",
				got.Header["x-tenant-id"], got.Header["x-auth-tier"])
		}
		if _, ok := got.Header["x-user-id"]; ok {
			t.Errorf("x-user-id reached the upstream: Portcullis lists it in x-envoy-auth-headers-to-remove, which Envoy applies")
		}
		if _, ok := got.Header["authorization"]; ok {
			t.Errorf("the credential reached the upstream: Portcullis lists it in x-envoy-auth-headers-to-remove")
		}
		a = send(t, addr, "GET", "/api/things", "", "authorization", "Bearer "+bd.Key(t, "revoked"))
		var body map[string]string
		if err := json.Unmarshal(a.body, &body); err != nil || a.status != 401 || body["reason"] != "key_disabled" ||
			!strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("a disabled key: %d %v %s", a.status, a.header, a.body)
		}
		if up.count() != 1 {
			t.Errorf("%d requests reached the upstream, want the one allowed", up.count())
		}
	})
}

// TestIstio runs the sidecar configuration Istio generates from
// k8s/istio/meshconfig.yaml and the AuthorizationPolicies of
// k8s/istio/authorizationpolicy.yaml and the chart: the conventions'
// exchanges through each provider (gRPC and HTTP), /healthz reaching the
// application without a check (the policies' notPaths), and 503 for every
// checked request once Portcullis is stopped (failOpen: false,
// statusOnError: 503).
func TestIstio(t *testing.T) {
	envoyBinary(t)
	c, d := exchangesOf(t, "three-tiers")
	for _, id := range istioDocs(t) {
		t.Run(id.name, func(t *testing.T) {
			p := startPortcullis(t, "--policy", d.Policy(), "--http-addr", "127.0.0.1:0", "--http-mode", "envoy")
			target := p.grpcAddr
			if id.transport == "http" {
				target = p.httpAddr
			}
			up := newUpstream(t)
			e := startEnvoy(t, rewriteAddresses(t, id.d, map[string][]endpoint{id.authz: tcp(target), "inbound|8080||": tcp(up.addr())}))
			st := &stack{envoy: e, addr: e.listener(t, "virtualInbound"), up: up, pc: p, transport: id.transport, others: true}
			runExchanges(t, st, c, d)
			if a := send(t, st.addr, "GET", "/healthz", ""); a.status != 200 {
				t.Errorf("/healthz without credentials: %d, want 200 (not checked)", a.status)
			}
			p.stop(t)
			st.assertDenied(t, t, d.Key(t, "acme"), 5, 503)
			if a := send(t, st.addr, "GET", "/healthz", ""); a.status != 200 {
				t.Errorf("/healthz with Portcullis stopped: %d, want 200 (not checked)", a.status)
			}
		})
	}
}

// TestIstioGoldenFilter runs the ext_authz filter istiod generated in its
// own golden test (testdata/realworld), as generated, with the RBAC filter
// of that test's AuthorizationPolicies: /httpbin1 and /httpbin2 go through
// Portcullis, other paths are never checked. Its 2 ms timeout and
// failureModeAllow: true let a check that is late (the first, which opens
// the connection, often is) through unchecked, as Envoy counts in
// failure_mode_allowed; every other request gets Portcullis's answer. With
// Portcullis stopped every request passes unchecked: the reason
// k8s/istio/meshconfig.yaml sets failOpen: false and a 250 ms timeout.
func TestIstioGoldenFilter(t *testing.T) {
	envoyBinary(t)
	d := testkit.Load(t, "workspace-token") // routes every path
	g := goldenIstioDoc(t)
	p := startPortcullis(t, "--policy", d.Policy())
	up := newUpstream(t)
	e := startEnvoy(t, rewriteAddresses(t, g.d, map[string][]endpoint{g.authz: tcp(p.grpcAddr), "inbound|8080||": tcp(up.addr())}))
	addr := e.listener(t, "virtualInbound")
	const failedOpen = "http.inbound_0.0.0.0_8080.ext_authz.failure_mode_allowed"
	unchecked := 0 // requests on a checked path that reached the application without Portcullis's headers
	for i := range 20 {
		target := fmt.Sprintf("/httpbin%d?i=%d", 1+i%2, i)
		a := send(t, addr, "GET", target, "", "rime-api-key", d.Key(t, "ws1-alice"))
		var got seen
		if err := json.Unmarshal(a.body, &got); err != nil || a.status != 200 {
			t.Fatalf("%s with a token: %d %s", target, a.status, a.body)
		}
		if got.Header["x-tenant-id"] == "" {
			unchecked++
		} else if got.Header["x-tenant-id"] != "workspace-1" || got.Header["x-user-id"] != "alice" {
			t.Errorf("%s: the upstream received %v", target, got.Header)
		}
		a = send(t, addr, "GET", target, "")
		switch {
		case a.status == 200:
			unchecked++
		case a.status != 401 || !strings.Contains(string(a.body), `"reason":"missing_credential"`):
			t.Errorf("%s without a token: %d %s", target, a.status, a.body)
		}
	}
	if n := e.stat(t, failedOpen); n != unchecked {
		t.Errorf("%d requests reached the application unchecked, Envoy let %d through failing open", unchecked, n)
	}
	before := up.count()
	if a := send(t, addr, "GET", "/elsewhere", ""); a.status != 200 || up.count() != before+1 {
		t.Errorf("a path no CUSTOM rule names: %d, want 200 unchecked", a.status)
	}
	p.stop(t)
	before, opened := up.count(), e.stat(t, failedOpen)
	for i := range 5 {
		if a := send(t, addr, "GET", fmt.Sprintf("/httpbin1?stopped=%d", i), ""); a.status != 200 {
			t.Errorf("with Portcullis stopped: %d, want 200 (this filter fails open)", a.status)
		}
	}
	if up.count() != before+5 || e.stat(t, failedOpen) != opened+5 {
		t.Errorf("with Portcullis stopped, %d of 5 unchecked requests reached the application, %d counted failing open",
			up.count()-before, e.stat(t, failedOpen)-opened)
	}
}
