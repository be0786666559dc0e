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

	"github.com/portcullis/portcullis/extauthz"
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
					AuthRequestHeaders  []string `yaml:"authRequestHeaders"`
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
	// Only the listed client headers reach Portcullis: the credential and
	// context headers, and no header of any forward-auth family.
	sent := lower(fa.AuthRequestHeaders)
	if len(sent) == 0 {
		t.Fatal("no authRequestHeaders: Traefik would pass every client header to Portcullis")
	}
	for h := range familyHeaders {
		if sent[strings.ToLower(h)] {
			t.Errorf("authRequestHeaders passes a client's %s", h)
		}
	}
	s, err := policy.Load(filepath.Join("three-tiers", "policy.yaml"), policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range append(s.ContextHeaders(), s.CredentialHeaders()...) {
		if !sent[h] {
			t.Errorf("authRequestHeaders lacks %s: Portcullis would never see it", h)
		}
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
	var annotations, cleared map[string]string
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name        string            `yaml:"name"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		switch doc.Kind {
		case "Ingress":
			annotations = doc.Metadata.Annotations
		case "ConfigMap":
			cleared = doc.Data
		}
	}
	if annotations["nginx.ingress.kubernetes.io/auth-url"] == "" {
		t.Fatal("no auth-url")
	}
	got := lower(strings.Split(annotations["nginx.ingress.kubernetes.io/auth-response-headers"], ","))
	for _, h := range mustClear(t) {
		if !got[h] {
			t.Errorf("auth-response-headers lacks %s", h)
		}
	}
	if !strings.HasSuffix(annotations["nginx.ingress.kubernetes.io/auth-proxy-set-headers"], "/portcullis-auth-headers") {
		t.Errorf("auth-proxy-set-headers does not name the ConfigMap")
	}
	for _, h := range otherFamilies(extauthz.ModeIngressNginx) {
		if v, ok := cleared[h]; !ok || v != "" {
			t.Errorf("the auth headers ConfigMap does not clear %s", h)
		}
	}
}

// familyHeaders are the headers any forward-auth mode reads, or that a
// proxy adds to describe a request; readBy says which mode reads each.
var familyHeaders = map[string]string{
	"X-Forwarded-Method": extauthz.ModeTraefik, "X-Forwarded-Uri": extauthz.ModeTraefik, "X-Forwarded-Host": extauthz.ModeTraefik,
	"X-Forwarded-Prefix": "", "X-Original-URI": extauthz.ModeNginx, "X-Original-Host": extauthz.ModeNginx,
	"X-Original-Method": extauthz.ModeNginx + "," + extauthz.ModeIngressNginx, "X-Original-URL": extauthz.ModeIngressNginx,
	"X-Envoy-Original-Path": "", "Forwarded": "",
}

// otherFamilies lists the family headers mode does not read, which its
// proxy configuration must keep from reaching Portcullis. X-Forwarded-Proto
// is left out: no mode reads it, and ingress-nginx clears it itself.
func otherFamilies(mode string) []string {
	var out []string
	for h, readBy := range familyHeaders {
		if !strings.Contains(","+readBy+",", ","+mode+",") {
			out = append(out, h)
		}
	}
	return out
}

// TestShippedConfigsPinTheirMode: each forward-auth configuration names
// its mode in the serve command it documents.
func TestShippedConfigsPinTheirMode(t *testing.T) {
	for file, mode := range map[string]string{
		"nginx/portcullis.conf":        extauthz.ModeNginx,
		"ingress-nginx/ingress.yaml":   extauthz.ModeIngressNginx,
		"traefik/dynamic.yaml":         extauthz.ModeTraefik,
		"../envoy/http-service.yaml":   extauthz.ModeEnvoy,
		"../k8s/istio/meshconfig.yaml": extauthz.ModeEnvoy,
	} {
		b, err := os.ReadFile(filepath.FromSlash(file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "--http-mode "+mode+"\n") && !strings.Contains(string(b), "--http-mode "+mode+" ") {
			t.Errorf("%s does not pin --http-mode %s", file, mode)
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
	auth := conf[strings.Index(conf, "location = /_portcullis"):]
	auth = auth[:strings.Index(auth, "}")]
	for _, h := range otherFamilies(extauthz.ModeNginx) {
		if !strings.Contains(auth, "proxy_set_header "+strings.ToLower(h)+` "";`) {
			t.Errorf("the auth location does not clear %s", h)
		}
	}
}
