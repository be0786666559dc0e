package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/internal/testkit"
)

// nginxBinary finds nginx, which scripts/install-deps.sh installs. Missing
// under CI is a failure; elsewhere the test is skipped.
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is not installed: scripts/install-deps.sh installs it")
	}
	t.Skip("nginx not installed (scripts/install-deps.sh installs it)")
	return ""
}

// startNginx runs nginx with the site configuration site (the inside of an
// http {} block, listening on the placeholder "listen SOCKET;") and returns
// an HTTP client that talks to it over a unix socket. nginx writes its pid
// file after it has bound its listeners; the test waits for that file
// event, never for a fixed time.
func startNginx(t *testing.T, site string) *http.Client {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "nginx.sock")
	conf := strings.Replace(site, "listen SOCKET;", "listen unix:"+sock+";", 1)
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "logs"} {
		_ = os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	main := `daemon off;
master_process off;
worker_processes 1;
pid ` + dir + `/nginx.pid;
error_log ` + dir + `/logs/error.log info;
events { worker_connections 256; }
http {
  access_log ` + dir + `/logs/access.log;
  client_body_temp_path ` + dir + `/tmp/body;
  proxy_temp_path ` + dir + `/tmp/proxy;
  fastcgi_temp_path ` + dir + `/tmp/fastcgi;
  uwsgi_temp_path ` + dir + `/tmp/uwsgi;
  scgi_temp_path ` + dir + `/tmp/scgi;
  include ` + dir + `/site.conf;
}
`
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "logs", "error.log")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, out, conf)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "logs", "error.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
wait:
	for {
		select {
		case ev := <-w.Events:
			if filepath.Base(ev.Name) == "nginx.pid" {
				break wait
			}
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Fatalf("nginx exited: %v\n%s", err, b)
		case <-deadline:
			t.Fatal("nginx did not start")
		}
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 16,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
}

// nginxSite is examples/nginx/portcullis.conf pointed at portcullisAddr and
// upstreamAddr.
func nginxSite(t *testing.T, portcullisAddr, upstreamAddr string) string {
	t.Helper()
	site, err := os.ReadFile(filepath.Join(testkit.Root(), "examples", "nginx", "portcullis.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("127.0.0.1:9002", portcullisAddr, "127.0.0.1:8080", upstreamAddr,
		"listen 127.0.0.1:8000;", "listen SOCKET;").Replace(string(site))
}

// ingressNginxSite renders, from examples/ingress-nginx/ingress.yaml, the
// nginx configuration ingress-nginx's nginx.tmpl produces for that Ingress:
// the auth location with exactly the headers the template sets (then the
// auth-proxy-set-headers ConfigMap's, as buildAuthProxySetHeaders writes
// them), and the protected location copying auth-response-headers as
// buildAuthResponseHeaders does.
func ingressNginxSite(t *testing.T, portcullisAddr, upstreamAddr string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testkit.Root(), "examples", "ingress-nginx", "ingress.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var annotations, proxySet map[string]string
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			Kind     string
			Metadata struct{ Annotations map[string]string }
			Data     map[string]string
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		switch doc.Kind {
		case "Ingress":
			annotations = doc.Metadata.Annotations
		case "ConfigMap":
			proxySet = doc.Data
		}
	}
	const prefix = "nginx.ingress.kubernetes.io/"
	authURL, err := url.Parse(annotations[prefix+"auth-url"])
	if err != nil || authURL.Host == "" {
		t.Fatalf("auth-url %q", annotations[prefix+"auth-url"])
	}
	if annotations[prefix+"auth-proxy-set-headers"] == "" || proxySet == nil {
		t.Fatal("the Ingress names no auth-proxy-set-headers ConfigMap")
	}
	var set []string
	for name, v := range proxySet {
		set = append(set, fmt.Sprintf("proxy_set_header %q %q;", name, v))
	}
	sort.Strings(set)
	var copyBack []string
	for i, h := range strings.Split(annotations[prefix+"auth-response-headers"], ",") {
		h = strings.TrimSpace(h)
		copyBack = append(copyBack, fmt.Sprintf("auth_request_set $authHeader%d $upstream_http_%s;", i, strings.ReplaceAll(strings.ToLower(h), "-", "_")),
			fmt.Sprintf("proxy_set_header '%s' $authHeader%d;", h, i))
	}
	return `upstream upstream_api { server ` + upstreamAddr + `; }
server {
    listen SOCKET;
    location = /_external-auth-Lw-Prefix {
        internal;
        proxy_intercept_errors      off;
        proxy_pass_request_body     off;
        proxy_set_header            Content-Length          "";
        proxy_set_header            X-Forwarded-Proto       "";
        proxy_set_header            X-Request-ID            $request_id;
        proxy_set_header            Host                    ` + authURL.Host + `;
        proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
        proxy_set_header            X-Original-Method       $request_method;
        proxy_set_header            X-Sent-From             "nginx-ingress-controller";
        proxy_set_header            X-Real-IP               $remote_addr;
        proxy_set_header            X-Forwarded-For         $remote_addr;
        proxy_set_header            X-Auth-Request-Redirect $request_uri;
        proxy_pass_request_headers  on;
        ` + strings.Join(set, "\n        ") + `
        proxy_http_version 1.1;
        proxy_pass http://` + portcullisAddr + authURL.Path + `;
    }
    location / {
        auth_request        /_external-auth-Lw-Prefix;
        auth_request_set    $auth_cookie $upstream_http_set_cookie;
        add_header          Set-Cookie $auth_cookie;
        ` + strings.Join(copyBack, "\n        ") + `
        proxy_pass http://upstream_api;
    }
}
`
}

// servedHTTPAddr returns the forward-auth address from the serving line.
func servedHTTPAddr(t *testing.T, p *proc) string {
	t.Helper()
	for _, l := range strings.Split(p.log(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "portcullis serving" {
			if a, _ := m["http_addr"].(string); a != "" {
				return a
			}
		}
	}
	t.Fatal("no http_addr in the serving line")
	return ""
}

// echoUpstream answers with the request headers it received, as JSON.
func echoUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := map[string]string{}
		for k, v := range r.Header {
			h[strings.ToLower(k)] = strings.Join(v, ",")
		}
		_ = json.NewEncoder(w).Encode(h)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestNginxForwardAuth puts a real nginx in front of an echoing upstream,
// with auth_request to the real portcullis binary: every tier of
// three-tiers, and no client-sent identity, context or credential header
// ever reaching the upstream.
func TestNginxForwardAuth(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	p := startServe(t, "--policy", demo.Policy(), "--http-addr", "127.0.0.1:0", "--http-mode", "nginx")
	up := echoUpstream(t)
	client := startNginx(t, nginxSite(t, servedHTTPAddr(t, p), strings.TrimPrefix(up.URL, "http://")))

	key, root := demo.Key(t, "acme"), demo.Key(t, "root")
	alice := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
	staff := demo.Token(t, "root-access", time.Now(), time.Hour, nil)
	spoof := map[string]string{"X-Tenant-Id": "evil-tenant", "X-Tenant-Kind": "evil-kind", "X-User-Id": "mallory",
		"X-Auth-Tier": "evil-tier", "X-Credential-Id": "evil-cred"}
	for _, tc := range []struct {
		name, method, path string
		h                  map[string]string
		status             int
		reason             string
		want               map[string]string // headers the upstream must see ("" = absent)
	}{
		{"service", "GET", "/images/1", map[string]string{"X-Api-Key": key, "Authorization": "None"}, 200, "",
			map[string]string{"x-tenant-id": "acme", "x-tenant-kind": "organization", "x-auth-tier": "service", "x-credential-id": "acme", "x-user-id": ""}},
		{"service cannot write", "POST", "/images", map[string]string{"X-Api-Key": key}, 403, "tier_too_low", nil},
		{"admin", "POST", "/images", map[string]string{"X-Api-Key": key, "Authorization": "Bearer " + alice}, 200, "",
			map[string]string{"x-tenant-id": "acme", "x-auth-tier": "admin", "x-user-id": "alice@acme.com"}},
		{"superuser for globex", "GET", "/predictors/p", map[string]string{"X-Api-Key": root, "Authorization": "Bearer " + staff, "X-Selected-Customer": "globex"}, 200, "",
			map[string]string{"x-tenant-id": "globex", "x-auth-tier": "superuser", "x-user-id": "root@portcullis.example", "x-credential-id": "root"}},
		{"no key", "GET", "/images", nil, 401, "missing_credential", nil},
		{"another tenant's token", "GET", "/images", map[string]string{"X-Api-Key": demo.Key(t, "globex"), "Authorization": "Bearer " + alice}, 403, "tenant_mismatch", nil},
		{"non-canonical path", "GET", "/images/%2e%2e/predictors", map[string]string{"X-Api-Key": key}, 400, "bad_path", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://nginx"+tc.path, nil)
			for k, v := range spoof {
				req.Header.Set(k, v)
			}
			for k, v := range tc.h {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status != 200 {
				if got := resp.Header.Get("X-Portcullis-Reason"); got != tc.reason {
					t.Errorf("reason %q, want %q", got, tc.reason)
				}
				if (tc.status == 401) != (resp.Header.Get("WWW-Authenticate") != "") {
					t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
				return
			}
			var seen map[string]string
			if err := json.Unmarshal(body, &seen); err != nil {
				t.Fatalf("upstream answer %q: %v", body, err)
			}
			for h, v := range tc.want {
				if seen[h] != v {
					t.Errorf("upstream saw %s = %q, want %q", h, seen[h], v)
				}
			}
			for _, h := range []string{"x-api-key", "authorization", "x-selected-customer"} {
				if _, ok := seen[h]; ok {
					t.Errorf("%s reached the upstream", h)
				}
			}
			for h, v := range spoof {
				if seen[strings.ToLower(h)] == v {
					t.Errorf("the client's %s: %s reached the upstream", h, v)
				}
			}
		})
	}
}

// familyHeaders are every header a forward-auth server might take the
// checked request from, each with a value aiming at the public /healthz
// route (RT-01, RT-02).
var familyHeaders = [][2]string{
	{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/healthz"}, {"X-Forwarded-Host", "evil.example"},
	{"X-Forwarded-Proto", "https"}, {"X-Forwarded-Prefix", "/healthz"},
	{"X-Original-URI", "/healthz"}, {"X-Original-URL", "http://evil.example/healthz"}, {"X-Original-Method", "GET"},
	{"X-Original-Host", "evil.example"}, {"X-Envoy-Original-Path", "/healthz"}, {"Forwarded", "for=1.2.3.4;host=evil.example;proto=https"},
}

// outcome is what a client and the upstream saw of one request.
type outcome struct {
	status             int
	reason, tier, user string
}

func send(t *testing.T, client *http.Client, method, path string, h [][2]string) outcome {
	t.Helper()
	req, _ := http.NewRequest(method, "http://nginx"+path, nil)
	for _, kv := range h {
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return outcome{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	o := outcome{status: resp.StatusCode, reason: resp.Header.Get("X-Portcullis-Reason")}
	if o.status == 200 {
		var seen map[string]string
		if err := json.Unmarshal(body, &seen); err != nil {
			t.Errorf("upstream answer %q: %v", body, err)
		}
		o.tier, o.user = seen["x-auth-tier"]+"/"+seen["x-tenant-id"], seen["x-user-id"]
	}
	return o
}

// TestNginxHeaderFamilies proves RT-01 and RT-02 fixed through real nginx,
// with the shipped nginx configuration and the nginx configuration
// ingress-nginx's template makes of the shipped Ingress, each with its
// pinned mode and with auto: every subset of client-sent X-Forwarded-*,
// X-Original-*, X-Envoy-Original-Path and Forwarded headers, each aiming at
// a public route, leaves the decision exactly what it is without them.
// The requests: a superuser route with a service key (403), an anonymous
// DELETE (401), a service read (200) and an admin write (200).
func TestNginxHeaderFamilies(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	editFile(t, filepath.Join(dir, "policy.yaml"), "routes:\n", "routes:\n  - { path: /healthz, public: true }\n")
	key := [2]string{"X-Api-Key", demo.Key(t, "acme")}
	admin := [2]string{"Authorization", "Bearer " + demo.Token(t, "alice-access", time.Now(), time.Hour, nil)}
	bases := []struct {
		method, path string
		h            [][2]string
		status       int
	}{
		{"POST", "/predictors", [][2]string{key}, 403},
		{"DELETE", "/users/42", nil, 401},
		{"GET", "/images/7?size=2", [][2]string{key}, 200},
		{"PUT", "/images/7", [][2]string{key, admin}, 200},
	}
	for _, cfg := range []struct {
		name, mode string
		site       func(*testing.T, string, string) string
	}{
		{"nginx", "nginx", nginxSite},
		{"nginx with auto", "auto", nginxSite},
		{"ingress-nginx", "ingress-nginx", ingressNginxSite},
		{"ingress-nginx with auto", "auto", ingressNginxSite},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			p := startServe(t, "--policy", filepath.Join(dir, "policy.yaml"), "--http-addr", "127.0.0.1:0", "--http-mode", cfg.mode)
			up := echoUpstream(t)
			client := startNginx(t, cfg.site(t, servedHTTPAddr(t, p), strings.TrimPrefix(up.URL, "http://")))
			for _, b := range bases {
				want := send(t, client, b.method, b.path, b.h)
				if want.status != b.status {
					t.Fatalf("%s %s: %d %s, want %d (honest traffic must work)", b.method, b.path, want.status, want.reason, b.status)
				}
				masks := make(chan int)
				var wg sync.WaitGroup
				for range 6 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for mask := range masks {
							h := append([][2]string(nil), b.h...)
							for i, kv := range familyHeaders {
								if mask&(1<<i) != 0 {
									h = append(h, kv)
								}
							}
							if got := send(t, client, b.method, b.path, h); got != want {
								t.Errorf("%s %s with %v: %+v, want %+v", b.method, b.path, h[len(b.h):], got, want)
							}
						}
					}()
				}
				for mask := 1; mask < 1<<len(familyHeaders) && !t.Failed(); mask++ {
					masks <- mask
				}
				close(masks)
				wg.Wait()
			}
		})
	}
}
