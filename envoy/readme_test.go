package envoy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// TestREADMEQuickstartConfig runs the README's real-Envoy quickstart line
// that makes Envoy's configuration from envoy/envoy.yaml, as written, and
// checks that Envoy accepts the result and that it points Portcullis's
// cluster at the first command's 127.0.0.1:9001 and the upstream's at the
// echo server's 127.0.0.1:8080, so the quickstart keeps working when the
// shipped file changes.
func TestREADMEQuickstartConfig(t *testing.T) {
	envoyBinary(t)
	b, err := os.ReadFile(filepath.Join(testkit.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "sed ") && strings.Contains(l, "envoy/envoy.yaml > /tmp/envoy.yaml") {
			line = l
		}
	}
	if line == "" {
		t.Fatal("the README has no quickstart line making /tmp/envoy.yaml from envoy/envoy.yaml")
	}
	out := filepath.Join(t.TempDir(), "envoy.yaml")
	cmd := exec.Command("sh", "-c", strings.Replace(line, "/tmp/envoy.yaml", out, 1))
	cmd.Dir = testkit.Root()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	validate(t, out)
	d := loadDoc(t, out)
	want := map[string]string{"portcullis": "127.0.0.1:9001", "api": "127.0.0.1:8080"}
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
