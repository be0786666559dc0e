package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

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

// startNginx runs nginx with examples/nginx/portcullis.conf, pointed at
// portcullisAddr and upstreamAddr, and returns an HTTP client that talks to
// it over a unix socket. nginx writes its pid file after it has bound its
// listeners; the test waits for that file event, never for a fixed time.
func startNginx(t *testing.T, portcullisAddr, upstreamAddr string) *http.Client {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "nginx.sock")
	site, err := os.ReadFile(filepath.Join(testkit.Root(), "examples", "nginx", "portcullis.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("127.0.0.1:9002", portcullisAddr, "127.0.0.1:8080", upstreamAddr,
		"listen 127.0.0.1:8000;", "listen unix:"+sock+";").Replace(string(site))
	if err := os.WriteFile(filepath.Join(dir, "portcullis.conf"), []byte(conf), 0o644); err != nil {
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
  include ` + dir + `/portcullis.conf;
}
`
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "logs", "error.log")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
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
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
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
	p := startServe(t, "--policy", demo.Policy(), "--http-addr", "127.0.0.1:0")
	httpAddr := ""
	for _, l := range strings.Split(p.log(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "portcullis serving" {
			httpAddr, _ = m["http_addr"].(string)
		}
	}
	if httpAddr == "" {
		t.Fatal("no http_addr in the serving line")
	}
	up := echoUpstream(t)
	client := startNginx(t, httpAddr, strings.TrimPrefix(up.URL, "http://"))

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
