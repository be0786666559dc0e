package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/testkit"
)

// leakExamples says how each example's clients send a key, and where.
var leakExamples = map[string]struct {
	path string
	send func(key string) map[string]string
}{
	"three-tiers": {"/images", func(k string) map[string]string { return map[string]string{"x-api-key": k, "authorization": "None"} }},
	"ib-context": {"/v1/models", func(k string) map[string]string {
		return map[string]string{"authorization": "Bearer " + k, "ib-context": "org-acme"}
	}},
	"requester-uid":   {"/v1/models", func(k string) map[string]string { return map[string]string{"authorization": "Bearer " + k} }},
	"bearer-key":      {"/api/chat", func(k string) map[string]string { return map[string]string{"authorization": "bearer " + k} }},
	"workspace-token": {"/v1/x", func(k string) map[string]string { return map[string]string{"rime-api-key": k} }},
}

// TestNoSecretsLeak runs every example's scenarios — valid, altered and
// expired keys and tokens, secrets in the query string — against the real
// server at debug log level, then asserts that no key, token or signature
// appears in its logs, its metrics or any response.
func TestNoSecretsLeak(t *testing.T) {
	for name, ex := range leakExamples {
		t.Run(name, func(t *testing.T) {
			demo := testkit.Load(t, name)
			p := startServe(t, "--policy", demo.Policy(), "--log-level", "debug")
			c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
			var secrets []string
			var reqs []*authv3.CheckRequest
			add := func(path string, h map[string]string) {
				for _, m := range []string{"GET", "POST"} {
					reqs = append(reqs, checkReq(m, path, h))
				}
			}
			for _, key := range demo.Keys {
				secrets = append(secrets, key, key[:len(key)-3])
				for _, k := range []string{key, key + "x", key[:len(key)-3], key + "," + key} {
					add(ex.path, ex.send(k))
				}
				add(ex.path+"?api_key="+key, ex.send(key))
			}
			acme := demo.Keys["acme"]
			for tokName := range demo.Tokens {
				for _, at := range []time.Time{time.Now(), time.Now().Add(-3 * time.Hour)} {
					tok := demo.Token(t, tokName, at, time.Hour, nil)
					parts := strings.Split(tok, ".")
					secrets = append(secrets, tok, parts[2])
					for _, v := range []string{"Bearer " + tok, tok, "Bearer " + parts[0] + "." + parts[1] + ".AAAA" + parts[2][4:],
						"Bearer " + tok + "x"} {
						add(ex.path, map[string]string{"x-api-key": acme, "authorization": v})
					}
				}
			}
			var responses strings.Builder
			for _, r := range reqs {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				resp, err := c.Check(ctx, r)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				b, _ := protojson.Marshal(resp)
				responses.Write(b)
			}
			p.waitLog(t, func(m map[string]any) bool { return m["msg"] == "decision" })
			_, metrics := p.get(t, "/metrics")
			p.signal(t, syscall.SIGTERM)
			p.waitExit(t)
			for where, text := range map[string]string{"log": p.log(), "metrics": metrics, "responses": responses.String()} {
				for _, s := range secrets {
					if strings.Contains(text, s) {
						t.Errorf("a secret (%.6s…) appears in the %s", s, where)
					}
				}
			}
			if got := strings.Count(p.log(), `"msg":"decision"`); got != len(reqs) {
				t.Errorf("%d decision lines for %d checks", got, len(reqs))
			}
		})
	}
}

// TestJWKSPasswordNeverShown (RT-07): a JWKS address carrying basic-auth
// credentials never shows its password: not in the fetch-failure log
// lines, the portcullis_jwks_fetches_total label, a check's answer, or
// validate's error for an address it refuses.
func TestJWKSPasswordNeverShown(t *testing.T) {
	const password = "s3cret-jwks-pass"
	down := testkit.NewIdP(t, nil)
	down.Set(nil, true)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	pol := filepath.Join(dir, "policy.yaml")
	editFile(t, pol, "jwks: { file: customers-jwks.json }",
		"jwks: { uri: \""+strings.Replace(down.URL(), "http://", "http://jwks-user:"+password+"@", 1)+"\" }")
	editFile(t, pol, "jwks: { file: staff-jwks.json }", "jwks: { uri: \"http://jwks-user:"+password+"@"+closedAddr+"/jwks.json\" }")
	p := startServe(t, "--policy", pol, "--log-level", "debug")
	p.waitCount(t, `"msg":"JWK set fetch failed`, 2) // one per address
	demo := testkit.Load(t, "three-tiers")
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr))
	resp, err := c.Check(context.Background(), checkReq("POST", "/images", map[string]string{
		"x-api-key": demo.Key(t, "acme"), "authorization": "Bearer " + demo.Token(t, "alice-access", time.Now(), time.Hour, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := protojson.Marshal(resp)
	if !strings.Contains(string(answer), "jwks_unavailable") {
		t.Errorf("a token of an issuer whose set never loaded: %s", answer)
	}
	_, metrics := p.get(t, "/metrics")
	if !strings.Contains(metrics, `uri="http://jwks-user:xxxxx@`) {
		t.Errorf("/metrics has no redacted JWKS label:\n%s", metrics)
	}
	editFile(t, pol, "http://jwks-user:"+password+"@"+closedAddr, "ftp://jwks-user:"+password+"@"+closedAddr)
	_, _, validateErr := runCLI(t, "", "validate", pol)
	if !strings.Contains(validateErr, "want an absolute http(s) URL") {
		t.Errorf("validate did not refuse the ftp address: %s", validateErr)
	}
	for where, text := range map[string]string{"log": p.log(), "metrics": metrics, "answer": string(answer), "validate": validateErr} {
		if strings.Contains(text, password) {
			t.Errorf("the JWKS password appears in the %s", where)
		}
	}
}
