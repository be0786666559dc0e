package extauthz_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/policy"
)

// FuzzCheck feeds arbitrary CheckRequest bytes to the ext_authz service:
// it never panics, always answers, keeps the allow/deny shapes apart, and
// allows only a request that carries a demo key.
//
// Longer: go test -run '^$' -fuzz '^FuzzCheck$' -fuzztime 10m ./extauthz/
func FuzzCheck(f *testing.F) {
	demo := testkit.Load(f, "three-tiers")
	snap, err := policy.Load(demo.Policy(), policy.LoadOptions{})
	if err != nil {
		f.Fatal(err)
	}
	srv := extauthz.NewServer(policy.NewEngine(snap, policy.EngineOptions{}), nil)
	seed := func(req *authv3.CheckRequest) {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(httpReq("GET", "/images", map[string]string{"x-api-key": demo.Keys["acme"], "authorization": "None"}))
	seed(httpReq("POST", "/images/../x", map[string]string{"x-api-key": demo.Keys["root"], "x-selected-customer": "acme"}))
	seed(&authv3.CheckRequest{})
	if files, _ := filepath.Glob(filepath.Join(testkit.Realworld(f, "envoy-checkrequests"), "*.json")); len(files) > 0 {
		for _, p := range files {
			b, _ := os.ReadFile(p)
			req := &authv3.CheckRequest{}
			if (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, req) == nil {
				seed(req)
			}
		}
	}
	keys := []string{demo.Keys["acme"], demo.Keys["globex"], demo.Keys["root"]}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &authv3.CheckRequest{}
		if proto.Unmarshal(b, req) != nil {
			return
		}
		resp, err := srv.Check(context.Background(), req)
		if err != nil || resp == nil {
			t.Fatalf("Check returned %v, %v", resp, err)
		}
		ok, denied := resp.GetOkResponse(), resp.GetDeniedResponse()
		if (ok == nil) == (denied == nil) {
			t.Fatalf("response is neither or both allow and deny: %v", resp)
		}
		if (codes.Code(resp.GetStatus().GetCode()) == codes.OK) != (ok != nil) {
			t.Fatalf("status %d with ok=%v", resp.GetStatus().GetCode(), ok != nil)
		}
		if ok == nil {
			return
		}
		r, _ := extauthz.Decode(req)
		sent := strings.TrimSpace(r.Headers["x-api-key"])
		valid := false
		for _, k := range keys {
			valid = valid || sent == k
		}
		if !valid {
			t.Fatalf("allowed without a demo key: %v", req)
		}
	})
}
