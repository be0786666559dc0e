package k8s_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// notesBlock returns the YAML the notes print between the line ending
// with after and the line starting (trimmed) with until, dedented.
func notesBlock(t *testing.T, notes, after, until string) []any {
	t.Helper()
	var lines []string
	in := false
	for _, l := range strings.Split(notes, "\n") {
		switch {
		case strings.HasSuffix(l, after):
			in = true
		case in && strings.HasPrefix(strings.TrimSpace(l), until):
			in = false
		case in:
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("the notes print nothing after %q:\n%s", after, notes)
	}
	indent := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
	for i, l := range lines {
		lines[i] = l[min(indent, len(l)-len(strings.TrimLeft(l, " "))):]
	}
	var out []any
	if err := yaml.Unmarshal([]byte(strings.Join(lines, "\n")), &out); err != nil {
		t.Fatalf("the notes' YAML after %q: %v\n%s", after, err, strings.Join(lines, "\n"))
	}
	return out
}

// shippedRateLimit returns the ratelimit filter and the rate limit
// service's cluster of envoy/ratelimit/envoy.yaml.
func shippedRateLimit(t *testing.T) (filter, cluster map[string]any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "envoy", "ratelimit", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["name"] == "envoy.filters.http.ratelimit" {
				filter = x
			}
			if x["name"] == "ratelimit" && x["load_assignment"] != nil {
				cluster = x
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(d)
	if filter == nil || cluster == nil {
		t.Fatal("envoy/ratelimit/envoy.yaml has no ratelimit filter or cluster")
	}
	return filter, cluster
}

// TestHelmRateLimitNotes: with rateLimit.service, the install notes print
// the ratelimit filter and cluster of envoy/ratelimit/envoy.yaml (the same
// settings, failure_mode_deny from the values) pointing at that service;
// a policy with plans and no service is told nothing enforces them yet;
// anything else says nothing of rate limits; a service that is not
// host:port is refused at render time.
func TestHelmRateLimitNotes(t *testing.T) {
	dir := t.TempDir()
	withPlans := filepath.Join(dir, "plans.yaml")
	if err := os.WriteFile(withPlans, []byte(`version: 1
credentials:
  api_key: { headers: [x-api-key] }
keys_file: /etc/portcullis/keys/keys.yaml
plans:
  free: { requests_per_unit: 60, unit: minute }
default_plan: free
tiers:
  service: { requires_any: [ { key: any } ] }
routes:
  - { prefix: /, tier: service }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := "ratelimit.infra.svc.cluster.local:8081"
	filter, cluster := shippedRateLimit(t)

	n := notes(t, "--set", "rateLimit.service="+svc, "--set-file", "policy.inline="+withPlans)
	if !strings.Contains(n, "the policy's plans ride every allow's metadata to the rate limit\n        service at "+svc+" (domain portcullis)") {
		t.Errorf("the notes do not name the service:\n%s", n)
	}
	got := notesBlock(t, n, "after envoy.filters.http.ext_authz:", "the cluster:")
	if len(got) != 1 || !reflect.DeepEqual(got[0], filter) {
		t.Errorf("the notes' filter %v, want envoy/ratelimit/envoy.yaml's %v", got, filter)
	}
	gotC := notesBlock(t, n, "the cluster:", "and the route rule")
	want, _ := yaml.Marshal(cluster)
	want = []byte(strings.Replace(string(want), "address: ratelimit\n", "address: ratelimit.infra.svc.cluster.local\n", 1))
	var wantC map[string]any
	if err := yaml.Unmarshal(want, &wantC); err != nil {
		t.Fatal(err)
	}
	if len(gotC) != 1 || !reflect.DeepEqual(gotC[0], wantC) {
		t.Errorf("the notes' cluster %v, want envoy/ratelimit/envoy.yaml's at %s: %v", gotC, svc, wantC)
	}

	strict := notes(t, "--set", "rateLimit.service="+svc, "--set", "rateLimit.failureModeDeny=true")
	if !strings.Contains(strict, "failure_mode_deny: true") || !strings.Contains(strict, "once the policy has plans") {
		t.Errorf("failureModeDeny=true, a policy without plans:\n%s", strict)
	}
	if n := notes(t, "--set-file", "policy.inline="+withPlans); !strings.Contains(n, "nothing enforces them until your proxies call a rate\n        limit service") {
		t.Errorf("plans without a service:\n%s", n)
	}
	if n := notes(t); strings.Contains(n, "Rate limits") {
		t.Errorf("the defaults' notes speak of rate limits:\n%s", n)
	}
	for _, bad := range []string{"ratelimit", "ratelimit:grpc", "grpc://ratelimit:8081"} {
		out, err := helmCmd(t, "template", "portcullis", chart, "--set", "rateLimit.service="+bad).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "give the rate limit service's gRPC listener as host:port") {
			t.Errorf("rateLimit.service=%s rendered (%v):\n%s", bad, err, out)
		}
	}
	runHelm(t, "lint", "--strict", chart, "--set", "rateLimit.service="+svc, "--set", "rateLimit.failureModeDeny=true")
}
