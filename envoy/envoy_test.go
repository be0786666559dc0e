// Package envoy_test checks the shipped Envoy configurations against
// Envoy's own protos (go-control-plane): each parses strictly, passes
// ValidateAll, and wires the ext_authz filter to the Portcullis cluster,
// failing closed.
package envoy_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// decode reads a YAML file into m with protojson (unknown fields are errors).
func decode(t *testing.T, path string, m proto.Message) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := protojson.Unmarshal(j, m); err != nil {
		t.Fatalf("%s does not match Envoy's protos: %v", path, err)
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("%s fails validation: %v", path, err)
		}
	}
}

// extAuthz returns the ext_authz filter configs of a listener's HTTP
// connection managers.
func extAuthz(t *testing.T, l *listenerv3.Listener) []*extauthzv3.ExtAuthz {
	t.Helper()
	var out []*extauthzv3.ExtAuthz
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				continue
			}
			if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
				t.Errorf("listener %s: enable normalize_path and merge_slashes (Portcullis routes on the path Envoy forwards)", l.GetName())
			}
			for i, hf := range hcm.GetHttpFilters() {
				ea := &extauthzv3.ExtAuthz{}
				if hf.GetTypedConfig().UnmarshalTo(ea) != nil {
					continue
				}
				if i == len(hcm.GetHttpFilters())-1 {
					t.Errorf("ext_authz must come before the router")
				}
				out = append(out, ea)
			}
		}
	}
	return out
}

func checkFilter(t *testing.T, ea *extauthzv3.ExtAuthz, clusters map[string]bool, want string) {
	t.Helper()
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow must be false: an unreachable Portcullis must deny")
	}
	if ea.GetStatusOnError().GetCode() != 503 {
		t.Errorf("status_on_error %v, want 503", ea.GetStatusOnError())
	}
	if ea.GetTransportApiVersion().String() != "V3" {
		t.Errorf("transport_api_version %v", ea.GetTransportApiVersion())
	}
	cluster := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if cluster == "" {
		cluster = ea.GetHttpService().GetServerUri().GetCluster()
	}
	if cluster != want {
		t.Errorf("ext_authz calls cluster %q, want %q", cluster, want)
	}
	if clusters != nil && !clusters[cluster] {
		t.Errorf("cluster %q is not defined", cluster)
	}
}

func TestBootstraps(t *testing.T) {
	for file, cluster := range map[string]string{"envoy.yaml": "portcullis", "http-service.yaml": "portcullis_http", "ratelimit/envoy.yaml": "portcullis"} {
		t.Run(file, func(t *testing.T) {
			b := &bootstrapv3.Bootstrap{}
			decode(t, file, b)
			clusters := map[string]bool{}
			for _, c := range b.GetStaticResources().GetClusters() {
				clusters[c.GetName()] = true
			}
			n := 0
			for _, l := range b.GetStaticResources().GetListeners() {
				for _, ea := range extAuthz(t, l) {
					checkFilter(t, ea, clusters, cluster)
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d ext_authz filters, want 1", n)
			}
		})
	}
}

func TestHTTPServiceHeaders(t *testing.T) {
	b := &bootstrapv3.Bootstrap{}
	decode(t, "http-service.yaml", b)
	ea := extAuthz(t, b.GetStaticResources().GetListeners()[0])[0]
	hs := ea.GetHttpService()
	if hs.GetPathPrefix() != "/authz" {
		t.Errorf("path_prefix %q", hs.GetPathPrefix())
	}
	up := map[string]bool{}
	for _, p := range hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
		up[p.GetExact()] = true
	}
	for _, h := range []string{"x-tenant-id", "x-tenant-kind", "x-user-id", "x-auth-tier", "x-credential-id"} {
		if !up[h] {
			t.Errorf("allowed_upstream_headers lacks %s", h)
		}
	}
	req := map[string]bool{}
	for _, p := range ea.GetAllowedHeaders().GetPatterns() {
		req[p.GetExact()] = true
		if familyHeader(p.GetExact()) || p.GetPrefix() != "" || p.GetSafeRegex() != nil || p.GetContains() != "" || p.GetSuffix() != "" {
			t.Errorf("allowed_headers pattern %v could forward a client's X-Forwarded-*/X-Original-*/Forwarded", p)
		}
	}
	for _, h := range []string{"x-api-key", "x-selected-customer"} {
		if !req[h] {
			t.Errorf("allowed_headers lacks %s: Portcullis would never see it", h)
		}
	}
}

func TestSidecarListener(t *testing.T) {
	l := &listenerv3.Listener{}
	decode(t, "sidecar-listener.yaml", l)
	filters := extAuthz(t, l)
	if len(filters) != 1 {
		t.Fatalf("%d ext_authz filters", len(filters))
	}
	checkFilter(t, filters[0], nil, "portcullis")
}

// familyHeader reports whether h is a header some forward-auth mode reads
// the checked request from, or that describes a forwarded request: Envoy
// must never pass a client's copy on (Portcullis runs in envoy mode behind
// it, reading the request itself).
func familyHeader(h string) bool {
	h = strings.ToLower(h)
	return strings.HasPrefix(h, "x-forwarded-") || strings.HasPrefix(h, "x-original-") || h == "x-envoy-original-path" || h == "forwarded"
}
