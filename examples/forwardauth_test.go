// Package examples_test checks that the forward-auth proxy configurations
// shipped here clear every header the three-tiers policy says must not reach
// the upstream: forward-auth cannot remove headers, so the proxy must.
package examples_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/policy"
)

// mustClear is every header the three-tiers policy sets or removes.
func mustClear(t *testing.T) []string {
	s, err := policy.Load(filepath.Join("three-tiers", "policy.yaml"), policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := append(s.ContextHeaders(), s.CredentialHeaders()...)
	return append(out, policy.DefaultTenantHeader, policy.DefaultTenantKindHeader, policy.DefaultUserHeader,
		policy.DefaultTierHeader, policy.DefaultCredentialHeader)
}

func lower(list []string) map[string]bool {
	m := map[string]bool{}
	for _, h := range list {
		m[strings.ToLower(strings.TrimSpace(h))] = true
	}
	return m
}

func TestTraefikClearsHeaders(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("traefik", "dynamic.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		HTTP struct {
			Middlewares map[string]struct {
				ForwardAuth struct {
					Address             string   `yaml:"address"`
					TrustForwardHeader  bool     `yaml:"trustForwardHeader"`
					AuthResponseHeaders []string `yaml:"authResponseHeaders"`
				} `yaml:"forwardAuth"`
			} `yaml:"middlewares"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	fa := cfg.HTTP.Middlewares["portcullis"].ForwardAuth
	if fa.Address == "" || fa.TrustForwardHeader {
		t.Fatalf("forwardAuth %+v: needs an address and trustForwardHeader: false", fa)
	}
	got := lower(fa.AuthResponseHeaders)
	for _, h := range mustClear(t) {
		if !got[h] {
			t.Errorf("authResponseHeaders lacks %s: a client's copy would reach the upstream", h)
		}
	}
}

func TestIngressNginxClearsHeaders(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("ingress-nginx", "ingress.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ing struct {
		Metadata struct {
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(b, &ing); err != nil {
		t.Fatal(err)
	}
	a := ing.Metadata.Annotations
	if a["nginx.ingress.kubernetes.io/auth-url"] == "" {
		t.Fatal("no auth-url")
	}
	got := lower(strings.Split(a["nginx.ingress.kubernetes.io/auth-response-headers"], ","))
	for _, h := range mustClear(t) {
		if !got[h] {
			t.Errorf("auth-response-headers lacks %s", h)
		}
	}
}

func TestNginxConfClearsHeaders(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("nginx", "portcullis.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ToLower(string(b))
	for _, h := range mustClear(t) {
		if !strings.Contains(conf, "proxy_set_header "+h+" ") {
			t.Errorf("portcullis.conf does not set or clear %s", h)
		}
	}
}
