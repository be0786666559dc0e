package extauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
)

var update = flag.Bool("update", false, "rewrite the golden CheckResponses under testdata/")

// serve starts a real gRPC server with the example's policy on a loopback
// port and returns go-control-plane's ext_authz client for it.
func serve(t *testing.T, example string) (authv3.AuthorizationClient, *testkit.Demo) {
	t.Helper()
	demo := testkit.Load(t, example)
	snap, err := policy.Load(demo.Policy(), policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return serveSnapshot(t, snap), demo
}

// serveSnapshot starts a real gRPC server deciding with snap.
func serveSnapshot(t *testing.T, snap *policy.Snapshot) authv3.AuthorizationClient {
	t.Helper()
	srv := extauthz.NewServer(policy.NewEngine(snap, policy.EngineOptions{}), nil).NewGRPCServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func httpReq(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Id: "1", Method: method, Path: path, Host: "api.example", Headers: headers},
	}}}
}

func check(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check returned an error (it must always answer): %v", err)
	}
	return resp
}

// freshID matches the ids Portcullis makes for a request without one.
var freshID = regexp.MustCompile(`pc-[0-9a-f]{16}-[0-9a-f]+`)

// golden compares resp with testdata/<name>.json, or rewrites it with -update.
// A fresh decision id (different in every run) is compared as "pc-fresh".
func golden(t *testing.T, name string, resp *authv3.CheckResponse) {
	t.Helper()
	if b, err := protojson.Marshal(resp); err == nil && freshID.Match(b) {
		resp = &authv3.CheckResponse{}
		if err := protojson.Unmarshal(freshID.ReplaceAll(b, []byte("pc-fresh")), resp); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join("testdata", name+".json")
	if *update {
		// protojson varies its spacing on purpose: indent it anew, so the
		// file only changes when the response does.
		raw, _ := protojson.Marshal(resp)
		var b bytes.Buffer
		_ = json.Indent(&b, raw, "", "  ")
		if err := os.WriteFile(path, append(b.Bytes(), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./extauthz -update to create it)", err)
	}
	want := &authv3.CheckResponse{}
	if err := protojson.Unmarshal(b, want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
		t.Errorf("response differs from %s (-want +got; go test ./extauthz -update rewrites it):\n%s", path, diff)
	}
}

func TestCheckThreeTiers(t *testing.T) {
	c, demo := serve(t, "three-tiers")
	key := demo.Key(t, "acme")

	t.Run("service allow", func(t *testing.T) {
		resp := check(t, c, httpReq("GET", "/images/1?x=1", map[string]string{
			"x-api-key": key, "authorization": "None", "x-tenant-id": "globex", "x-user-id": "root", ":path": "/images/1?x=1"}))
		golden(t, "allow-service", resp)
		ok := resp.GetOkResponse()
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || ok == nil {
			t.Fatalf("not allowed: %v", resp)
		}
		set := map[string]string{}
		for _, h := range ok.GetHeaders() {
			//lint:ignore SA1019 append is checked on purpose: Envoy releases before append_action read it
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend() == nil || h.GetAppend().GetValue() {
				t.Errorf("%s is not set with overwrite: %v", h.GetHeader().GetKey(), h)
			}
			set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if set["x-tenant-id"] != "acme" || set["x-auth-tier"] != "service" || set["x-credential-id"] != "acme" {
			t.Errorf("set headers %v", set)
		}
		removed := strings.Join(ok.GetHeadersToRemove(), " ")
		for _, h := range []string{"x-user-id", "x-selected-customer", "x-api-key", "authorization"} {
			if !strings.Contains(removed, h) {
				t.Errorf("%s not removed: %s", h, removed)
			}
		}
		md := resp.GetDynamicMetadata().GetFields()
		if md["tenant"].GetStringValue() != "acme" || md["tier"].GetStringValue() != "service" {
			t.Errorf("dynamic metadata %v", md)
		}
	})
	t.Run("admin allow", func(t *testing.T) {
		tok := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
		resp := check(t, c, httpReq("POST", "/images", map[string]string{"x-api-key": key, "authorization": "Bearer " + tok}))
		if resp.GetOkResponse() == nil {
			t.Fatalf("denied: %v", resp)
		}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "x-user-id" && h.GetHeader().GetValue() != "alice@acme.com" {
				t.Errorf("x-user-id = %q", h.GetHeader().GetValue())
			}
		}
	})
	t.Run("superuser selects a customer", func(t *testing.T) {
		tok := demo.Token(t, "root-access", time.Now(), time.Hour, nil)
		resp := check(t, c, httpReq("GET", "/predictors", map[string]string{
			"x-api-key": demo.Key(t, "root"), "authorization": "Bearer " + tok, "x-selected-customer": "acme"}))
		ok := resp.GetOkResponse()
		if ok == nil || !strings.Contains(strings.Join(ok.GetHeadersToRemove(), " "), "x-selected-customer") {
			t.Fatalf("%v", resp)
		}
	})
	t.Run("tier too low", func(t *testing.T) {
		resp := check(t, c, httpReq("POST", "/images", map[string]string{"x-api-key": key, "authorization": "None"}))
		golden(t, "deny-tier-too-low", resp)
	})
	t.Run("no credential", func(t *testing.T) {
		resp := check(t, c, httpReq("GET", "/images", nil))
		golden(t, "deny-missing-credential", resp)
	})
	t.Run("bad path", func(t *testing.T) {
		golden(t, "deny-bad-path", check(t, c, httpReq("GET", "/images/%2e%2e/predictors", map[string]string{"x-api-key": key})))
	})
	t.Run("no http attributes", func(t *testing.T) {
		golden(t, "deny-no-http", check(t, c, &authv3.CheckRequest{}))
	})
	t.Run("header_map", func(t *testing.T) {
		req := httpReq("GET", "/images", nil)
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "X-Api-Key", RawValue: []byte(key)}, {Key: "authorization", Value: "None"}}}
		if resp := check(t, c, req); resp.GetOkResponse() == nil {
			t.Fatalf("header_map request denied: %v", resp)
		}
		// A repeated header is joined with "," as Envoy does: one invalid key.
		req.Attributes.Request.Http.HeaderMap.Headers = append(req.Attributes.Request.Http.HeaderMap.Headers,
			&corev3.HeaderValue{Key: "x-api-key", Value: key})
		if resp := check(t, c, req); resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Fatalf("repeated key: %v", resp)
		}
	})
	t.Run("every normalized header spoofed", func(t *testing.T) {
		spoof := map[string]string{"x-api-key": key, "x-tenant-id": "evil-tenant", "x-tenant-kind": "evil-kind",
			"x-user-id": "evil-user", "x-auth-tier": "evil-tier", "x-credential-id": "evil-cred"}
		for _, tok := range []string{"None", "Bearer " + demo.Token(t, "alice-access", time.Now(), time.Hour, nil)} {
			spoof["authorization"] = tok
			ok := check(t, c, httpReq("GET", "/images", spoof)).GetOkResponse()
			if ok == nil {
				t.Fatal("denied")
			}
			set := map[string]string{}
			for _, h := range ok.GetHeaders() {
				set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			for name := range spoof {
				if !strings.HasPrefix(name, "x-") || name == "x-api-key" {
					continue
				}
				v, isSet := set[name]
				removed := strings.Contains(" "+strings.Join(ok.GetHeadersToRemove(), " ")+" ", " "+name+" ")
				if isSet == removed || strings.HasPrefix(v, "evil-") {
					t.Errorf("%s: set=%q removed=%v — the client value could reach the upstream", name, v, removed)
				}
			}
		}
	})
	t.Run("mixed-case header names", func(t *testing.T) {
		resp := check(t, c, httpReq("GET", "/images", map[string]string{"X-API-Key": key}))
		if resp.GetOkResponse() == nil {
			t.Fatalf("denied: %v", resp)
		}
	})
}

// TestMalformedRequests: whatever arrives, Check answers with a deny.
func TestMalformedRequests(t *testing.T) {
	c, demo := serve(t, "three-tiers")
	key := demo.Key(t, "acme")
	for name, tc := range map[string]struct {
		req    *authv3.CheckRequest
		status int32
	}{
		"empty request":               {&authv3.CheckRequest{}, 400},
		"no http":                     {&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, 400},
		"empty path":                  {httpReq("GET", "", map[string]string{"x-api-key": key}), 400},
		"relative path":               {httpReq("GET", "images", map[string]string{"x-api-key": key}), 400},
		"giant key":                   {httpReq("GET", "/images", map[string]string{"x-api-key": strings.Repeat("k", 1<<20)}), 401},
		"giant token":                 {httpReq("GET", "/images", map[string]string{"x-api-key": key, "authorization": "Bearer eyJ" + strings.Repeat("a", 1<<20) + ".b.c"}), 401},
		"many headers":                {httpReq("GET", "/images", manyHeaders(key)), 200},
		"non-utf8 header":             {nonUTF8(key), 401},
		"empty method":                {httpReq("", "/images", map[string]string{"x-api-key": key}), 400},
		"lower-case method (RT-04)":   {httpReq("delete", "/images/1", map[string]string{"x-api-key": key}), 400},
		"mixed-case method (RT-04)":   {httpReq("Post", "/images", map[string]string{"x-api-key": key}), 400},
		"overlong UTF-8 dots (RT-08)": {httpReq("GET", "/images/%c0%ae%c0%ae/predictors", map[string]string{"x-api-key": key}), 400},
	} {
		t.Run(name, func(t *testing.T) {
			resp := check(t, c, tc.req)
			got := int32(200)
			if d := resp.GetDeniedResponse(); d != nil {
				got = int32(d.GetStatus().GetCode())
			} else if resp.GetOkResponse() == nil {
				t.Fatalf("neither allowed nor denied: %v", resp)
			}
			if got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
		})
	}
}

func manyHeaders(key string) map[string]string {
	h := map[string]string{"x-api-key": key}
	for i := range 2000 {
		h["x-filler-"+strings.Repeat("a", i%50)+string(rune('a'+i%26))+strings.Repeat("b", i/26)] = "v"
	}
	return h
}

func nonUTF8(key string) *authv3.CheckRequest {
	req := httpReq("GET", "/images", nil)
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-api-key", RawValue: append([]byte(key), 0xff, 0xfe)}}}
	return req
}

// TestRealWorldCheckRequests: every CheckRequest captured from real Envoy,
// Istio, OPA and Authorino deployments decodes and, with every example
// policy, ends in a clean deny.
func TestRealWorldCheckRequests(t *testing.T) {
	dir := testkit.Realworld(t, "envoy-checkrequests")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Fatal("no CheckRequests")
	}
	for _, ex := range []string{"three-tiers", "ib-context", "requester-uid", "bearer-key", "workspace-token"} {
		c, _ := serve(t, ex)
		for _, f := range files {
			t.Run(ex+"/"+filepath.Base(f), func(t *testing.T) {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				req := &authv3.CheckRequest{}
				if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, req); err != nil {
					t.Fatalf("decoding: %v", err)
				}
				if _, ok := extauthz.Decode(req); !ok {
					t.Fatal("no HTTP attributes decoded")
				}
				resp := check(t, c, req)
				d := resp.GetDeniedResponse()
				if d == nil {
					t.Fatalf("allowed a request without valid credentials: %v", resp)
				}
				switch code := d.GetStatus().GetCode(); code {
				case 400, 401, 403:
				default:
					t.Fatalf("status %d, want a clean 400/401/403", code)
				}
				if !strings.Contains(d.GetBody(), `"reason"`) {
					t.Errorf("body %q", d.GetBody())
				}
			})
		}
	}
}

// TestDecisionIDsOverGRPC: each check's answer carries its own decision id
// (the x-request-id, or Envoy's request id, or a fresh one) in the deny
// body, the dynamic metadata and the policy's decision_id header, even
// when its response is built from the encoded-response cache: concurrent
// checks by one caller never see each other's ids.
func TestDecisionIDsOverGRPC(t *testing.T) {
	dir := t.TempDir()
	demo := testkit.Load(t, "three-tiers")
	if err := os.CopyFS(dir, os.DirFS(demo.Dir)); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	raw, _ := os.ReadFile(pol)
	if err := os.WriteFile(pol, []byte(strings.Replace(string(raw), "upstream_headers:\n", "upstream_headers:\n  decision_id: x-decision-id\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(pol, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := serveSnapshot(t, snap)
	key := demo.Key(t, "acme")
	idOf := func(resp *authv3.CheckResponse) (header, meta, body string) {
		meta = resp.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue()
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "x-decision-id" {
				header = h.GetHeader().GetValue()
			}
		}
		if b := resp.GetDeniedResponse().GetBody(); b != "" {
			var v struct{ ID string }
			if err := json.Unmarshal([]byte(b), &v); err != nil {
				t.Errorf("deny body %s: %v", b, err)
			}
			body = v.ID
		}
		return header, meta, body
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			rid := fmt.Sprintf("req-%d", i)
			allowReq := httpReq("GET", "/images", map[string]string{"x-api-key": key, "x-request-id": rid, "x-decision-id": "forged"})
			denyReq := httpReq("POST", "/images", map[string]string{"x-api-key": key, "x-request-id": rid})
			if h, m, _ := idOf(check(t, c, allowReq)); h != rid || m != rid {
				t.Errorf("allow %s: header %q metadata %q", rid, h, m)
			}
			if _, m, b := idOf(check(t, c, denyReq)); b != rid || m != rid {
				t.Errorf("deny %s: body %q metadata %q", rid, b, m)
			}
		})
	}
	wg.Wait()
	// Without x-request-id: Envoy's request id, else a fresh one each time.
	noHeader := httpReq("GET", "/images", map[string]string{"x-api-key": key})
	noHeader.Attributes.Request.Http.Id = "envoy-7"
	if h, m, _ := idOf(check(t, c, noHeader)); h != "envoy-7" || m != "envoy-7" {
		t.Errorf("Envoy's id: header %q metadata %q", h, m)
	}
	noHeader.Attributes.Request.Http.Id = ""
	h1, _, _ := idOf(check(t, c, noHeader))
	h2, _, _ := idOf(check(t, c, noHeader))
	if !strings.HasPrefix(h1, "pc-") || h1 == h2 {
		t.Errorf("fresh ids %q and %q", h1, h2)
	}
	if _, m, b := idOf(check(t, c, &authv3.CheckRequest{})); !strings.HasPrefix(b, "pc-") || m != b {
		t.Errorf("a request without HTTP attributes: body id %q metadata %q", b, m)
	}
}
