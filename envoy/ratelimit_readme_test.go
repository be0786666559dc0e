package envoy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// TestREADMERateLimitsConfig runs the README's line that makes Envoy's
// configuration for the rate limits walk-through from
// envoy/ratelimit/envoy.yaml, as written, and checks that Envoy accepts
// the result and that its clusters point where the walk-through's other
// commands listen: Portcullis (portcullis demo) on 127.0.0.1:9001, the
// echo upstream on 127.0.0.1:8080, the rate limit service on the
// README's GRPC_PORT.
func TestREADMERateLimitsConfig(t *testing.T) {
	envoyBinary(t)
	b, err := os.ReadFile(filepath.Join(testkit.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var line, grpcPort string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "sed ") && strings.Contains(l, "envoy/ratelimit/envoy.yaml > /tmp/envoy-ratelimit.yaml") {
			line = l
		}
		if m := regexp.MustCompile(`GRPC_PORT=(\d+)`).FindStringSubmatch(l); m != nil {
			grpcPort = m[1]
		}
	}
	if line == "" || grpcPort == "" {
		t.Fatalf("the README has no line making /tmp/envoy-ratelimit.yaml from envoy/ratelimit/envoy.yaml (%q), or no GRPC_PORT= for the service (%q)", line, grpcPort)
	}
	out := filepath.Join(t.TempDir(), "envoy-ratelimit.yaml")
	cmd := exec.Command("sh", "-c", strings.Replace(line, "/tmp/envoy-ratelimit.yaml", out, 1))
	cmd.Dir = testkit.Root()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	validate(t, out)
	d := loadDoc(t, out)
	want := map[string]string{"portcullis": "127.0.0.1:9001", "api": "127.0.0.1:8080", "ratelimit": "127.0.0.1:" + grpcPort}
	cs, _ := field(obj(path(d, "static_resources")), "clusters")
	for _, c := range list(cs) {
		name := fmt.Sprint(path(obj(c), "name"))
		var got []string
		walk(c, func(m map[string]any) {
			if sa := obj(m["socket_address"]); sa != nil {
				got = append(got, fmt.Sprintf("%v:%v", sa["address"], sa["port_value"]))
			}
		})
		if len(got) != 1 || got[0] != want[name] {
			t.Errorf("cluster %s points at %v after the README's edit, want %s", name, got, want[name])
		}
	}
}
