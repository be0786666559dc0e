package envoy_test

// This file checks envoy/ratelimit/ without running it (ratelimit_test.go
// runs it): the Envoy configuration against Envoy's protos, its route rule
// against the metadata Portcullis writes (CONTRACT §12) and the rate limit
// service's configuration beside it, and everything but its rate limit
// parts against envoy/envoy.yaml, so the two front proxies never drift
// apart.

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/internal/testkit"
)

// The metadata Portcullis writes on every allow (CONTRACT §12), in the
// ext_authz filter's namespace.
const (
	extAuthzNamespace = "envoy.filters.http.ext_authz"
	tenantMeta        = "ratelimit_tenant"
	keyMeta           = "ratelimit_key"
	limitMeta         = "ratelimit_limit"
)

// rateLimitServiceConfig is envoy/ratelimit/config/portcullis.yaml as the
// rate limit service reads it.
type rateLimitServiceConfig struct {
	Domain      string       `yaml:"domain"`
	Descriptors []descriptor `yaml:"descriptors"`
}

type descriptor struct {
	Key         string         `yaml:"key"`
	Value       string         `yaml:"value"`
	RateLimit   map[string]any `yaml:"rate_limit"`
	Descriptors []descriptor   `yaml:"descriptors"`
}

func readServiceConfig(t *testing.T) rateLimitServiceConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testkit.Root(), "envoy", "ratelimit", "config", "portcullis.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c rateLimitServiceConfig
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("envoy/ratelimit/config/portcullis.yaml: %v", err)
	}
	return c
}

// metadataPath says which dynamic metadata a MetadataKey reads.
func metadataPath(k interface {
	GetKey() string
}, segments []string) string {
	return k.GetKey() + ":" + strings.Join(segments, ".")
}

// keyIDChars are the characters of a key id (CONTRACT §7).
var keyIDChars = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// TestRateLimitConfig: envoy/ratelimit/envoy.yaml decodes strictly into
// Envoy's protos and validates; its ratelimit filter comes after ext_authz
// (only allowed requests are counted, with the metadata there to read) and
// before the router, fails open, sends RateLimit headers and Retry-After,
// and calls a cluster it defines, in the domain of the service's
// configuration; its route rule builds one descriptor from
// ratelimit_tenant and ratelimit_key with the limit override read from
// ratelimit_limit, its descriptor keys are the service's tree, and that
// tree names no limit of its own (every limit comes from Portcullis).
func TestRateLimitConfig(t *testing.T) {
	svc := readServiceConfig(t)
	b := &bootstrapv3.Bootstrap{}
	decode(t, filepath.Join("ratelimit", "envoy.yaml"), b)
	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	l := b.GetStaticResources().GetListeners()
	if len(l) != 1 {
		t.Fatalf("%d listeners", len(l))
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	order := map[string]int{}
	var rl *ratelimitv3.RateLimit
	for i, f := range hcm.GetHttpFilters() {
		order[f.GetName()] = i
		if f.GetName() == "envoy.filters.http.ratelimit" {
			rl = &ratelimitv3.RateLimit{}
			if err := f.GetTypedConfig().UnmarshalTo(rl); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rl == nil {
		t.Fatal("no envoy.filters.http.ratelimit filter")
	}
	if !(order["envoy.filters.http.ext_authz"] < order["envoy.filters.http.ratelimit"] && order["envoy.filters.http.ratelimit"] < order["envoy.filters.http.router"]) {
		t.Errorf("filters in the order %v: the rate limit filter must come after ext_authz and before the router", order)
	}
	if rl.GetDomain() != svc.Domain || svc.Domain == "" {
		t.Errorf("domain %q, the service's configuration %q", rl.GetDomain(), svc.Domain)
	}
	if rl.GetFailureModeDeny() {
		t.Error("failure_mode_deny: the shipped choice is false (documented in the file and the README)")
	}
	if rl.GetEnableXRatelimitHeaders() != ratelimitv3.RateLimit_DRAFT_VERSION_03 || !rl.GetEnableRetryAfterHeader() {
		t.Error("RateLimit headers and Retry-After must be on")
	}
	if c := rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName(); !clusters[c] || rl.GetRateLimitService().GetTransportApiVersion().String() != "V3" {
		t.Errorf("rate limit service: cluster %q (defined: %v), %v", c, clusters[c], rl.GetRateLimitService().GetTransportApiVersion())
	}

	var rules []*routev3.RateLimit
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		if len(vh.GetRateLimits()) > 0 {
			t.Errorf("virtual host %s has rate limits: the rule belongs to the route", vh.GetName())
		}
		for _, r := range vh.GetRoutes() {
			rules = append(rules, r.GetRoute().GetRateLimits()...)
		}
	}
	if len(rules) != 1 {
		t.Fatalf("%d rate limit rules, want one for every tenant", len(rules))
	}
	var keys, reads []string
	for _, a := range rules[0].GetActions() {
		m := a.GetMetadata()
		if m == nil || m.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC || m.GetDefaultValue() != "" || m.GetSkipIfAbsent() {
			t.Errorf("action %v: want a dynamic metadata value, no default, never skipped", a)
			continue
		}
		var segs []string
		for _, s := range m.GetMetadataKey().GetPath() {
			segs = append(segs, s.GetKey())
		}
		keys, reads = append(keys, m.GetDescriptorKey()), append(reads, metadataPath(m.GetMetadataKey(), segs))
	}
	want := []string{extAuthzNamespace + ":" + tenantMeta, extAuthzNamespace + ":" + keyMeta}
	if !reflect.DeepEqual(reads, want) {
		t.Errorf("the descriptor reads %v, want %v", reads, want)
	}
	var segs []string
	ov := rules[0].GetLimit().GetDynamicMetadata().GetMetadataKey()
	for _, s := range ov.GetPath() {
		segs = append(segs, s.GetKey())
	}
	if ov == nil || metadataPath(ov, segs) != extAuthzNamespace+":"+limitMeta {
		t.Errorf("limit override %v, want the dynamic metadata %s:%s", rules[0].GetLimit(), extAuthzNamespace, limitMeta)
	}
	if len(keys) == 2 && keyIDChars.MatchString(keys[1]) {
		t.Errorf("descriptor key %q: the service joins keys and values with _ into one counter name, so the key of a key id "+
			"must hold a character no key id holds (else tenant a_%s_b with key c and tenant a with key b_%s_c would share one)", keys[1], keys[1], keys[1])
	}

	// The service's tree: the same keys, no value, no limit anywhere.
	var tree []string
	var walkTree func(ds []descriptor)
	walkTree = func(ds []descriptor) {
		if len(ds) != 1 {
			t.Errorf("descriptors %v: want one chain", ds)
			return
		}
		d := ds[0]
		if d.Value != "" || d.RateLimit != nil {
			t.Errorf("descriptor %s: a value %q or a rate_limit %v here would name a tenant or a limit: every limit comes from Portcullis", d.Key, d.Value, d.RateLimit)
		}
		tree = append(tree, d.Key)
		if len(d.Descriptors) > 0 {
			walkTree(d.Descriptors)
		}
	}
	walkTree(svc.Descriptors)
	if !reflect.DeepEqual(tree, keys) {
		t.Errorf("the service's descriptor tree %v, Envoy's descriptor %v", tree, keys)
	}
}

// TestRateLimitConfigIsTheFrontProxy: envoy/ratelimit/envoy.yaml without
// its rate limit parts (the filter, the route rule, the service's cluster,
// two access log fields) is envoy/envoy.yaml: every other setting, tested
// there, is the same.
func TestRateLimitConfigIsTheFrontProxy(t *testing.T) {
	d := rateLimitDoc(t)
	walk(d, func(m map[string]any) {
		if fs, k := field(m, "http_filters"); fs != nil {
			var keep []any
			for _, f := range list(fs) {
				if path(obj(f), "name") != "envoy.filters.http.ratelimit" {
					keep = append(keep, f)
				}
			}
			m[k] = keep
		}
		if r := obj(path(m, "route")); r != nil {
			_, k := field(r, "rate_limits")
			delete(r, k)
		}
		if jf := obj(path(m, "json_format")); jf != nil {
			delete(jf, "plan")
			delete(jf, "limit_key")
		}
	})
	static := obj(path(d, "static_resources"))
	cs, k := field(static, "clusters")
	var keep []any
	for _, c := range list(cs) {
		if path(obj(c), "name") != "ratelimit" {
			keep = append(keep, c)
		}
	}
	static[k] = keep
	front := shippedDoc(t, "envoy.yaml")
	if !reflect.DeepEqual(d, front) {
		got, _ := yaml.Marshal(d)
		want, _ := yaml.Marshal(front)
		dir := t.TempDir()
		a, b := filepath.Join(dir, "envoy.yaml"), filepath.Join(dir, "ratelimit-without-rate-limits.yaml")
		_ = os.WriteFile(a, want, 0o644)
		_ = os.WriteFile(b, got, 0o644)
		diff, _ := exec.Command("diff", "-u", a, b).CombinedOutput()
		t.Errorf("envoy/ratelimit/envoy.yaml differs from envoy/envoy.yaml beyond its rate limit parts:\n%s", diff)
	}
}
