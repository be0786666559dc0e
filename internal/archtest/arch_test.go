package archtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

const mod = "github.com/portcullis/portcullis"

// transport is what only the adapters and the server may depend on.
var transport = []string{"github.com/envoyproxy/", "google.golang.org/grpc", "google.golang.org/genproto"}

// rule is one arrow that must not exist: pkg must not depend (directly or
// not) on anything starting with one of forbidden.
type rule struct {
	pkg       string // a package path below the module, or a prefix ending in "/"
	forbidden []string
	why       string
}

var rules = []rule{
	{"policy", transport, "nothing below extauthz imports Envoy or gRPC"},
	{"authn", transport, "nothing below extauthz imports Envoy or gRPC"},
	{"keys", transport, "nothing below extauthz imports Envoy or gRPC"},
	{"cache", []string{mod + "/"}, "cache stands alone: no project package"},
	{"reason", []string{mod + "/"}, "reason is a leaf: no project package"},
	{"internal/source", []string{mod + "/policy", mod + "/authn", mod + "/keys", mod + "/extauthz"}, "source knows no file's meaning"},
	{"authn", []string{mod + "/policy", mod + "/extauthz"}, "authn says who is calling, never what they may do"},
	{"keys", []string{mod + "/policy", mod + "/authn", mod + "/extauthz", mod + "/store", mod + "/api"}, "keys is data: policies validate it through a callback"},
	{"directory", append([]string{mod + "/"}, transport...), "the directory is data: it imports no project package"},
	{"credits", append([]string{mod + "/", "github.com/jackc/"}, transport...), "the ledger knows no SQL, no policy: the store is its Bank, the policy its caller"},
	{"policy", []string{mod + "/extauthz", mod + "/internal/server", mod + "/internal/telemetry"}, "policy decides; it neither adapts nor serves"},
	{"extauthz", []string{mod + "/internal/server", mod + "/internal/telemetry"}, "the adapters are a library: no server internals"},
	{"internal/telemetry", []string{mod + "/internal/server"}, "telemetry is told; it runs nothing"},
	{"store", append([]string{mod + "/policy", mod + "/authn", mod + "/api"}, transport...),
		"the store does what it is told: who may do it is the API's business"},
	{"api", append([]string{mod + "/internal/server", mod + "/extauthz"}, transport...), "the management API is a library"},
	{"internal/cli", []string{mod + "/internal/server", "google.golang.org/grpc"}, "the offline commands run no server"},
	{"internal/demo", []string{mod + "/policy", mod + "/authn", mod + "/keys", mod + "/extauthz"}, "demo credentials are data: no decision"},
	{"internal/pgtemp", []string{mod + "/"}, "throwaway PostgreSQL clusters know nothing of what they store: no project package"},
	{"internal/sandbox", []string{mod + "/internal/testkit", mod + "/cmd/"}, "the demo is part of the binary: it never imports the test kit"},
}

// libraries must never import the binary, the server's lifecycle or the
// test kit.
var libraries = []string{"policy", "authn", "keys", "directory", "credits", "store", "api", "cache", "reason", "extauthz",
	"internal/source", "internal/telemetry", "internal/cli", "internal/demo"}

// violations returns every arrow of deps (package → everything it depends
// on) that the rules forbid.
func violations(deps map[string][]string) []string {
	var out []string
	check := func(pkg string, forbidden []string, why string) {
		for _, d := range deps[pkg] {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) && d != pkg {
					out = append(out, fmt.Sprintf("%s imports %s: %s", pkg, d, why))
				}
			}
		}
	}
	for _, r := range rules {
		check(mod+"/"+r.pkg, r.forbidden, r.why)
	}
	for _, l := range libraries {
		forbidden := []string{mod + "/cmd/", mod + "/internal/server", mod + "/internal/testkit", mod + "/internal/sandbox"}
		if l != "internal/cli" {
			forbidden = append(forbidden, mod+"/internal/cli")
		}
		check(mod+"/"+l, forbidden,
			"libraries never import the binary, the server or the test kit")
	}
	return out
}

// graph returns every package of the module with its dependencies.
func graph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Deps", "./...")
	cmd.Dir = testkit.Root()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p.ImportPath, mod) {
			deps[p.ImportPath] = p.Deps
		}
	}
	return deps
}

// TestArrows: the module's import graph has no forbidden arrow.
func TestArrows(t *testing.T) {
	deps := graph(t)
	for _, r := range rules {
		if _, ok := deps[mod+"/"+r.pkg]; !ok {
			t.Errorf("rule for %s names no package of the module", r.pkg)
		}
	}
	for _, v := range violations(deps) {
		t.Error(v)
	}
}

// TestRulesCatchViolations: each kind of wrong arrow is reported, so a
// passing TestArrows means something.
func TestRulesCatchViolations(t *testing.T) {
	for name, tc := range map[string]struct{ pkg, dep string }{
		"policy imports gRPC":    {mod + "/policy", "google.golang.org/grpc"},
		"authn imports policy":   {mod + "/authn", mod + "/policy"},
		"cache imports keys":     {mod + "/cache", mod + "/keys"},
		"keys imports policy":    {mod + "/keys", mod + "/policy"},
		"extauthz imports cmd":   {mod + "/extauthz", mod + "/cmd/portcullis"},
		"policy imports server":  {mod + "/policy", mod + "/internal/server"},
		"reason imports source":  {mod + "/reason", mod + "/internal/source"},
		"keys imports envoy":     {mod + "/keys", "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"},
		"telemetry runs servers": {mod + "/internal/telemetry", mod + "/internal/server"},
	} {
		if len(violations(map[string][]string{tc.pkg: {tc.dep}})) == 0 {
			t.Errorf("%s: not reported", name)
		}
	}
}
