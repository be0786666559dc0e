package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/internal/testkit"
)

var updateMetrics = flag.Bool("update-metrics", false, "rewrite k8s/testdata/exported-metrics.txt from a running server")

// exportedMetricsFile lists every portcullis_* series name the server
// exports; the chart's tests check that the dashboard and the alerts name
// only these.
var exportedMetricsFile = filepath.Join(testkit.Root(), "k8s", "testdata", "exported-metrics.txt")

// TestExportedMetricsListed: the real binary, with every feature that
// exports metrics on (a remote JWK set, the key store, a shadow policy, a
// reload), exports exactly the portcullis_* series names the list holds.
// Run `go test ./cmd/portcullis -run TestExportedMetricsListed -update-metrics`
// after adding a metric.
func TestExportedMetricsListed(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	staffSet, _ := os.ReadFile(filepath.Join(demo.Dir, "staff-jwks.json"))
	idp := testkit.NewIdP(t, staffSet)
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	pol := filepath.Join(dir, "policy.yaml")
	editFile(t, pol, "jwks: { file: staff-jwks.json }", `jwks: { uri: "`+idp.URL()+`" }`)
	editFile(t, pol, "keys_file: keys.yaml", "keys_file: keys.yaml\nkeys_store:\n  postgres: { dsn_env: PORTCULLIS_DATABASE_URL }")
	shadow := filepath.Join(dir, "shadow.yaml")
	raw, _ := os.ReadFile(pol)
	writeAtomic(t, shadow, raw)
	pg := testkit.SharedPostgreSQL(t)
	p := startServeEnv(t, []string{"PORTCULLIS_DATABASE_URL=" + pg.Database(t)}, "--policy", pol, "--shadow-policy", shadow)
	p.waitFor(t, msgIs("key store loaded"))
	p.waitFor(t, msgIs("JWK set fetched"))
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
	if _, err := c.Check(t.Context(), checkReq("GET", "/images", map[string]string{"x-api-key": demo.Key(t, "acme")})); err != nil {
		t.Fatal(err)
	}
	p.signal(t, syscall.SIGHUP)
	p.waitFor(t, msgIs("shadow policy reloaded")) // after the live one, both counted
	_, metrics := p.get(t, "/metrics")
	got := seriesNames(metrics)
	if *updateMetrics {
		if err := os.WriteFile(exportedMetricsFile, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(exportedMetricsFile)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(string(b))
	if !slices.Equal(got, want) {
		t.Errorf("the server exports\n%s\nthe list (%s) holds\n%s\nrun with -update-metrics, then check the dashboard and the alerts",
			strings.Join(got, "\n"), exportedMetricsFile, strings.Join(want, "\n"))
	}
}

// seriesNames returns the sorted, distinct portcullis_* series names of a
// Prometheus text exposition.
func seriesNames(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "portcullis_") {
			continue
		}
		name := l[:strings.IndexAny(l, "{ ")]
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
