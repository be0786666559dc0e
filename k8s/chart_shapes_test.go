package k8s_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

var chart = filepath.Join("helm", "portcullis")

// helmCmd is helm with its caches in the test's folders.
func helmCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(helm(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	return cmd
}

// notes renders the chart's NOTES.txt with values, as helm install prints
// it: helm template does not render notes, and helm install needs a
// cluster, so a copy of the chart carries them in a ConfigMap.
func notes(t *testing.T, values ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "portcullis")
	if err := os.CopyFS(dir, os.DirFS(chart)); err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(dir, "templates")
	raw, err := os.ReadFile(filepath.Join(tmpl, "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tmpl, "NOTES.txt")); err != nil {
		t.Fatal(err)
	}
	def := `{{- define "test.notes" -}}` + string(raw) + `{{- end -}}`
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: notes }\ndata:\n  notes: {{ include \"test.notes\" . | quote }}\n"
	if err := os.WriteFile(filepath.Join(tmpl, "_notes_test.tpl"), []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmpl, "notes_test.yaml"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runHelm(t, append([]string{"template", "portcullis", dir, "--namespace", "portcullis", "--show-only", "templates/notes_test.yaml"}, values...)...)
	var m corev1.ConfigMap
	if err := yaml.UnmarshalStrict(out, &m); err != nil {
		t.Fatal(err)
	}
	return m.Data["notes"]
}

// TestHelmExamples: each deployment shape in the chart's examples/ passes
// helm lint --strict, renders, decodes strictly into the Kubernetes types,
// carries a policy the real binary validates, and gets notes that fit it.
func TestHelmExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chart, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string]struct {
		args, noArgs []string
		kinds        map[string]int
		says, never  []string
	}{
		"file-keys.yaml": {
			noArgs: []string{"--keys-api-addr", "--http-addr"},
			kinds:  map[string]int{"Ingress": 0},
			says:   []string{"Keys:   portcullis keys new --keys keys.yaml", "update the Secret portcullis-keys"},
			never:  []string{"PostgreSQL", "Token page", "forward-auth"},
		},
		"key-store.yaml": {
			args:  []string{"--keys-api-addr=0.0.0.0:9003"},
			kinds: map[string]int{"Ingress": 1},
			says: []string{"Keys:   in PostgreSQL (the DSN in the Secret portcullis-db, key dsn)", "Token page: https://keys.example.com/",
				"POST /v1/sessions", "keys list|new|revoke --policy"},
			never: []string{"update the Secret", "forward-auth"},
		},
		"forward-auth.yaml": {
			args:   []string{"--http-addr=0.0.0.0:9002", "--http-mode=ingress-nginx", "--trusted-proxies=10.0.0.0/8"},
			noArgs: []string{"--keys-api-addr"},
			kinds:  map[string]int{"Ingress": 0},
			says:   []string{"forward-auth HTTP (ingress-nginx mode)", "nginx.ingress.kubernetes.io/auth-url", "update the Secret"},
			never:  []string{"PostgreSQL", "Token page"},
		},
	}
	if len(files) != len(shapes) {
		t.Errorf("examples %v, want one per shape %v", files, shapes)
	}
	for _, f := range files {
		shape, ok := shapes[filepath.Base(f)]
		if !ok {
			t.Errorf("%s: a shape this test does not know", f)
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			runHelm(t, "lint", "--strict", chart, "-f", f)
			k := byKind(decodeDocs(t, f, runHelm(t, "template", "portcullis", chart, "--namespace", "portcullis", "-f", f)))
			for kind, n := range shape.kinds {
				if len(k[kind]) != n {
					t.Errorf("%d %s, want %d", len(k[kind]), kind, n)
				}
			}
			d := k["Deployment"][0].(*appsv1.Deployment)
			checkDeployment(t, d, 2)
			var pol *corev1.ConfigMap
			for _, cm := range k["ConfigMap"] {
				if cm := cm.(*corev1.ConfigMap); cm.Data["policy.yaml"] != "" {
					pol = cm
				}
			}
			if pol == nil {
				t.Fatal("no policy ConfigMap")
			}
			checkPolicy(t, pol, k["Secret"][0].(*corev1.Secret))
			args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
			for _, a := range shape.args {
				if !strings.Contains(args, a) {
					t.Errorf("args lack %s: %s", a, args)
				}
			}
			for _, a := range shape.noArgs {
				if strings.Contains(args, a) {
					t.Errorf("args have %s: %s", a, args)
				}
			}
			n := notes(t, "-f", f)
			for _, s := range shape.says {
				if !strings.Contains(n, s) {
					t.Errorf("the notes do not say %q:\n%s", s, n)
				}
			}
			for _, s := range shape.never {
				if strings.Contains(n, s) {
					t.Errorf("the notes say %q, which is not this shape:\n%s", s, n)
				}
			}
		})
	}
}

// TestHelmRefusesWhatCannotStart: values whose pods would exit at start
// (or serve a key API refusing every call) fail at render time (helm
// template, install and upgrade), saying what to change.
func TestHelmRefusesWhatCannotStart(t *testing.T) {
	all := filepath.Join("test", "values-all.yaml")
	store := filepath.Join(chart, "examples", "key-store.yaml")
	dir := t.TempDir()
	policyFile := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return "policy.inline=" + p
	}
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"the key store without a policy keys_store",
			[]string{"--set", "keyStore.enabled=true", "--set", "keyStore.keysAPI.enabled=true", "--set", "keyStore.dsnSecret.name=db"},
			"keyStore.enabled: policy.inline has no keys_store"},
		{"a policy keys_store without the key store",
			[]string{"-f", store, "--set", "keyStore.enabled=false", "--set", "keyStore.keysAPI.enabled=false", "--set", "keyStore.keysAPI.ingress.enabled=false"},
			"policy.inline names a keys_store but keyStore.enabled is false"},
		{"the key API without the key store", []string{"--set", "keyStore.keysAPI.enabled=true"}, "keyStore.keysAPI.enabled needs keyStore.enabled"},
		{"the Ingress without the key API", []string{"-f", store, "--set", "keyStore.keysAPI.enabled=false"},
			"keyStore.keysAPI.ingress.enabled needs keyStore.keysAPI.enabled"},
		{"the Ingress without a host", []string{"-f", store, "--set", "keyStore.keysAPI.ingress.host="}, "keyStore.keysAPI.ingress.host"},
		{"another DSN variable", []string{"-f", store, "--set-file", policyFile("dsn.yaml", strings.Replace(readFile(t, store, "inline"), "PORTCULLIS_DATABASE_URL", "DB_URL", 1))},
			`keys_store.postgres.dsn_env is "DB_URL"`},
		{"the key API without keys_api", []string{"-f", store, "--set-file", policyFile("noapi.yaml", cut(readFile(t, store, "inline"), "keys_api:", "key_lifetime:"))},
			"policy.inline has no keys_api"},
		{"management tokens named but not given", []string{"-f", all, "--set", "keys.managementTokens="}, "keys.managementTokens is empty"},
		{"management tokens in a file no pod has", []string{"-f", store, "--set-file",
			policyFile("tokens.yaml", strings.Replace(readFile(t, store, "inline"), "/etc/portcullis/keys/management-tokens.yaml", "/etc/tokens.yaml", 1))},
			"keys_api.management_tokens_file is /etc/tokens.yaml, a file no pod has"},
		{"a keys file no pod has", []string{"--set-file", policyFile("keysfile.yaml", strings.Replace(readFile(t, filepath.Join(chart, "values.yaml"), "inline"),
			"/etc/portcullis/keys/keys.yaml", "keys.yaml", 1))}, "policy.extraFiles has no keys.yaml"},
		{"a policy that is not YAML", []string{"--set-file", policyFile("bad.yaml", "routes: [")}, "policy.inline is not YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helmCmd(t, append([]string{"template", "portcullis", chart}, tc.args...)...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.says) {
				t.Errorf("helm template: %v; want a failure saying %q:\n%s", err, tc.says, out)
			}
		})
	}
}

// readFile returns policy.<key> of a values file (the inline policy).
func readFile(t *testing.T, path, key string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Policy map[string]any `json:"policy"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	s, _ := v.Policy[key].(string)
	if s == "" {
		t.Fatalf("%s has no policy.%s", path, key)
	}
	return s
}

// cut removes from s the lines from the one starting with from up to (not
// including) the one starting with to.
func cut(s, from, to string) string {
	i, j := strings.Index(s, "\n"+from), strings.Index(s, "\n"+to)
	if i < 0 || j < i {
		panic("cut: " + from + " or " + to + " not found")
	}
	return s[:i] + s[j:]
}

// TestTokenPageIngressCoversThePage: the chart's Ingress for the token page
// routes every path the page itself loads or calls (read from the embedded
// page's files), and none of the management calls, so a change to the page
// that needs a new path fails here rather than in a user's browser.
func TestTokenPageIngressCoversThePage(t *testing.T) {
	all := filepath.Join("test", "values-all.yaml")
	k := byKind(decodeDocs(t, "values-all", runHelm(t, "template", "portcullis", chart, "-f", all)))
	if len(k["Ingress"]) != 1 {
		t.Fatalf("%d Ingress rendered", len(k["Ingress"]))
	}
	ing := k["Ingress"][0].(*networkingv1.Ingress)
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" || len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "keys-tls" ||
		ing.Spec.Rules[0].Host != "keys.example.com" {
		t.Errorf("the Ingress: %+v", ing.Spec)
	}
	var paths []networkingv1.HTTPIngressPath
	for _, p := range ing.Spec.Rules[0].HTTP.Paths {
		if p.Backend.Service == nil || p.Backend.Service.Name != "portcullis" || p.Backend.Service.Port.Name != "keys-api" {
			t.Errorf("path %s leads to %+v, not the keys-api port", p.Path, p.Backend)
		}
		paths = append(paths, p)
	}
	routed := func(path string) bool {
		for _, p := range paths {
			switch *p.PathType {
			case networkingv1.PathTypeExact:
				if path == p.Path {
					return true
				}
			case networkingv1.PathTypePrefix:
				prefix := strings.TrimSuffix(p.Path, "/")
				if path == prefix || strings.HasPrefix(path, prefix+"/") {
					return true
				}
			}
		}
		return false
	}
	page := filepath.Join("..", "api", "page")
	var used []string
	for _, name := range []string{"index.html", "app.js"} {
		b, err := os.ReadFile(filepath.Join(page, name))
		if err != nil {
			t.Fatal(err)
		}
		// Quoted paths: "/v1/…", '/assets/…', `/v1/keys/${id}` up to the
		// template's first placeholder.
		for _, m := range regexp.MustCompile("[\"'`](/(?:v1|assets)/[A-Za-z0-9._/-]*)").FindAllStringSubmatch(string(b), -1) {
			used = append(used, m[1])
		}
	}
	used = append(used, "/")
	if len(used) < 5 {
		t.Fatalf("found only %v in the page", used)
	}
	for _, p := range used {
		if !routed(p) {
			t.Errorf("the page uses %s, which the Ingress does not route (keyStore.keysAPI.ingress.paths)", p)
		}
	}
	for _, p := range []string{"/v1/sessions", "/v1/tenants", "/v1/tenants/org-acme/members", "/v1/users/u-alice", "/v1/openapi.json", "/v1/status", "/metrics"} {
		if routed(p) {
			t.Errorf("the Ingress routes %s, a management call browsers never make", p)
		}
	}
}
