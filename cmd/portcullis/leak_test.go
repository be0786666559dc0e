package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
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

// TestNoSecretsLeakKeyStore: the key-management API and the checks of
// keys kept in PostgreSQL, at debug log level, through every call (create,
// list, get, patch, refresh with overlap, usage, status, delete, revoke
// all) and the mistakes a user makes (an API key sent as the API's
// credential, a key pasted as an id, a key in a query string). A key's
// value appears only in the answer that made it; no key digest appears
// anywhere; no key, token or management token is in the log, the metrics
// or another answer. Each change has one audit line naming who and which
// key.
func TestNoSecretsLeakKeyStore(t *testing.T) {
	pg := testkit.SharedPostgreSQL(t)
	r := startReplica(t, selfService(t), pg.Database(t))
	r.waitFor(t, msgIs("key store loaded"))
	alice := r.demo.Token(t, "alice", time.Now(), time.Hour, nil)
	console := r.demo.ManagementTokens["console"]

	var others strings.Builder  // every answer except the one that made a key
	made := map[string]string{} // key → the answer that made it
	call := func(auth, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+r.keysAPIAddr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var k struct {
			Key string `json:"key"`
		}
		if json.Unmarshal(raw, &k) == nil && k.Key != "" {
			made[k.Key] = string(raw)
		} else {
			others.Write(raw)
		}
		return resp.StatusCode, string(raw)
	}
	id := func(answer string) string {
		var k struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(answer), &k)
		return k.ID
	}
	_, a1 := call(alice, "POST", "/v1/keys", `{"label":"laptop","tier":"admin","tenant":"org-acme"}`)
	_, a2 := call(alice, "POST", "/v1/keys", `{"label":"ci","description":"pipeline","tier":"service"}`)
	_, c1 := call(console, "POST", "/v1/keys", `{"label":"backend","tier":"service","tenant":"org-globex"}`)
	id1, id2, idc := id(a1), id(a2), id(c1)
	call(alice, "GET", "/v1/keys", "")
	call(alice, "GET", "/v1/keys/"+id1, "")
	call(alice, "PATCH", "/v1/keys/"+id1, `{"label":"old laptop"}`)
	_, refreshed := call(alice, "POST", "/v1/keys/"+id1+"/refresh", `{"overlap":"1h"}`)
	call(console, "GET", "/v1/keys?tenant=org-globex", "")
	if len(made) != 4 {
		t.Fatalf("made %d keys, want 4: %s", len(made), others.String())
	}
	var plain []string
	for k := range made {
		plain = append(plain, k)
	}
	// A user's mistakes, each carrying a key where it does not belong.
	for _, k := range plain {
		for _, m := range [][3]string{{k, "GET", "/v1/keys"}, {alice, "GET", "/v1/keys/" + k}, {alice, "GET", "/v1/keys?user=" + k},
			{alice, "POST", "/v1/keys/revoke"}, {alice, "PATCH", "/v1/keys/" + id1}} {
			call(m[0], m[1], m[2], `{"label":"`+k+`x", "user": 7}`)
		}
	}
	c := authv3.NewAuthorizationClient(dial(t, r.grpcAddr))
	var responses strings.Builder
	for _, k := range plain {
		for _, v := range []string{k, k + "x", k[:len(k)-1], "pk_live_" + strings.Repeat("A", 49)} {
			resp, err := c.Check(context.Background(), checkReq("GET", "/v1/models?api_key="+v, map[string]string{"authorization": "Bearer " + v}))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := protojson.Marshal(resp)
			responses.Write(b)
		}
	}
	// The directory's calls, and keys sent where ids belong.
	call(console, "PUT", "/v1/tenants/org-leak", `{"display_name":"Leak","aliases":["leak"]}`)
	call(console, "PUT", "/v1/tenants/org-leak/members/u-alice", `{"role":"admin"}`)
	call(console, "PUT", "/v1/tenants/org-leak/members", `{"members":[{"user":"u-alice"},{"user":"u-bob","role":"member"}]}`)
	call(console, "GET", "/v1/tenants/org-leak", "")
	call(console, "GET", "/v1/tenants", "")
	call(console, "GET", "/v1/tenants/org-leak/members", "")
	call(console, "GET", "/v1/users/u-alice", "")
	call(console, "PUT", "/v1/users/u-bob", `{"disabled":true}`)
	call(console, "DELETE", "/v1/tenants/org-leak/members/u-bob", "")
	for _, k := range plain {
		call(alice, "GET", "/v1/users/"+k, "")
		call(alice, "GET", "/v1/tenants/"+k+"/members", "")
		call(console, "PUT", "/v1/tenants/org-leak/members", `{"members":[{"user":"u-alice","role":"`+k+`"}]}`)
	}
	call(console, "DELETE", "/v1/tenants/org-leak", "")
	// The wallets' calls, checks charged to them, and keys sent where
	// tenants, idempotency keys, notes and usage filters belong.
	call(console, "PUT", "/v1/wallets/org-acme", `{"refill":{"amount":100,"every":"day"}}`)
	call(console, "POST", "/v1/wallets/org-acme/grants", `{"units":50,"idempotency_key":"leak-1","note":"top up"}`)
	call(console, "PUT", "/v1/wallets/u-alice", "")
	for _, k := range plain {
		call(console, "PUT", "/v1/wallets/"+k, "")
		call(console, "POST", "/v1/wallets/org-acme/grants", `{"units":1,"idempotency_key":"`+k+`","note":"`+k+`"}`)
		call(alice, "GET", "/v1/wallets/"+k, "")
		call(alice, "GET", "/v1/usage?key="+k, "")
		call(alice, "GET", "/v1/usage?tenant="+k+"&user="+k, "")
		resp, err := c.Check(context.Background(), checkReq("POST", "/v1/models", map[string]string{"authorization": "Bearer " + k, "ib-context": "org-acme"}))
		if err != nil {
			t.Fatal(err)
		}
		responses.WriteString(resp.String())
	}
	call(alice, "GET", "/v1/wallets/u-alice", "")
	call(alice, "GET", "/v1/usage?group_by=date,tenant,user,key", "")
	call(console, "DELETE", "/v1/wallets/u-alice", "")
	r.waitFor(t, msgIs("key usage flushed"))
	call(alice, "GET", "/v1/keys/"+id1+"/usage", "")
	call(alice, "GET", "/v1/status", "")
	call(alice, "DELETE", "/v1/keys/"+id2, "")
	call(console, "POST", "/v1/keys/revoke", `{"user":"u-alice"}`)
	call(console, "DELETE", "/v1/keys/"+idc, "")
	_, metrics := r.get(t, "/metrics")
	r.signal(t, syscall.SIGTERM)
	r.waitExit(t)

	var digests []string
	for _, k := range plain {
		d := keys.DigestOf(k).Bytes()
		digests = append(digests, hex.EncodeToString(d), base64.StdEncoding.EncodeToString(d), base64.RawURLEncoding.EncodeToString(d))
	}
	secrets := []string{console, alice, strings.Split(alice, ".")[2]}
	for _, k := range plain {
		secrets = append(secrets, k, k[len(k)-20:])
	}
	texts := map[string]string{"log": r.log(), "metrics": metrics, "check answers": responses.String(), "other API answers": others.String()}
	for where, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("a secret (%.6s…) appears in the %s", s, where)
			}
		}
	}
	for k, answer := range made {
		texts["answer that made "+k[:12]] = answer
		for other := range made {
			if other != k && strings.Contains(answer, other) {
				t.Errorf("the answer that made one key holds another's value")
			}
		}
	}
	for where, text := range texts {
		for _, d := range digests {
			if strings.Contains(text, d) {
				t.Errorf("a key digest (%.8s…) appears in the %s", d, where)
			}
		}
	}
	// One audit line per change: 3 creates, patch, refresh, delete,
	// revoke all (alice's remaining key), delete.
	var audit []map[string]any
	for _, l := range strings.Split(r.log(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "key changed" {
			audit = append(audit, m)
		}
	}
	ops := map[string]int{}
	for _, m := range audit {
		ops[m["op"].(string)]++
		if m["by"] == nil || m["by"] == "" || m["key_id"] == nil || m["key_id"] == "" {
			t.Errorf("an audit line without who or which key: %v", m)
		}
	}
	if want := map[string]int{"create": 3, "update": 1, "refresh": 1, "delete": 3}; !maps.Equal(ops, want) {
		t.Errorf("audit lines %v, want %v\n%s", ops, want, refreshed)
	}
}
