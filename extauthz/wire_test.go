package extauthz

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// TestWireDecodesAsEncode holds the wire form to the response it stands
// for: for every reason, allow and deny, with and without an id and an id
// header, ids that JSON and protobuf must escape or length-prefix with more
// than one byte, the cached base followed by the tail decodes to exactly
// what encode builds for the decision, on the first answer and the second
// (the base is made) and the next (the base is reused).
func TestWireDecodesAsEncode(t *testing.T) {
	ids := []string{"", "req-1", `q"<>&\` + "\u00e9\u2028", string(make([]byte, 200))}
	var decisions []policy.Decision
	for _, id := range ids {
		for _, header := range []string{"", "x-decision-id"} {
			decisions = append(decisions, policy.Decision{Allow: true, Reason: reason.Allowed, Tier: "admin", Tenant: "acme",
				TenantKind: policy.KindOrganization, User: "alice", Credential: "k1", PolicyVersion: "v1", ID: id, IDHeader: header,
				SetHeaders:    []policy.Header{{Name: "x-tenant-id", Value: "acme"}, {Name: "x-auth-tier", Value: "admin"}},
				RemoveHeaders: []string{"x-user-id", "x-api-key"}})
			// With a rate limit: the plan's, and a key's own.
			for _, lim := range []policy.Limit{{Plan: "pro", Key: policy.AnyKey, RateLimit: keys.RateLimit{PerUnit: 6000, Unit: keys.Minute}},
				{Plan: "free", Key: "k1", RateLimit: keys.RateLimit{PerUnit: 4294967295, Unit: keys.Year}}} {
				d := decisions[len(decisions)-1]
				d.Limit, d.Role = lim, "developer"
				decisions = append(decisions, d)
			}
		}
		for _, r := range reason.All() {
			if r.Status() == 200 {
				continue
			}
			d := policy.Deny(r)
			d.ID, d.PolicyVersion, d.Tier, d.Credential = id, "v1", "service", "k1"
			decisions = append(decisions, d)
			if r == reason.CreditsExhausted {
				d.Cost, d.Wallet, d.RetryAfter = 10, "org-acme", 3600
				decisions = append(decisions, d)
			}
		}
		d := policy.Deny(reason.BadRequest) // not from a snapshot: encoded afresh
		d.ID = id
		decisions = append(decisions, d)
	}
	s := NewServer(nil, nil)
	for _, d := range decisions {
		want := encode(&d)
		for _, attempt := range []string{"first", "second", "cached"} {
			got, err := s.response(&d).response()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s %q id %q header %q, %s: the wire form decodes differently (-encode +wire):\n%s",
					map[bool]string{true: "allow", false: "deny"}[d.Allow], d.Reason, d.ID, d.IDHeader, attempt, diff)
			}
		}
	}
}

// decided is a Decider that answers d, whatever is asked.
type decided policy.Decision

func (d decided) Decide(context.Context, policy.Request) policy.Decision { return policy.Decision(d) }

// TestWireRefusesInvalidUTF8: a decision value that is not UTF-8 (which
// protobuf strings must be, and Envoy's parser checks) is never written:
// the check is denied 503 instead.
func TestWireRefusesInvalidUTF8(t *testing.T) {
	for _, d := range []policy.Decision{
		{Allow: true, Reason: reason.Allowed, Tenant: "acme\xff", PolicyVersion: "v1", SetHeaders: []policy.Header{{Name: "x-tenant-id", Value: "acme\xff"}}},
		{Allow: true, Reason: reason.Allowed, User: "\xc3", PolicyVersion: "v1"},
		{Reason: reason.TierTooLow, Credential: "k\xfe", PolicyVersion: "v1"},
	} {
		s := NewServer(decided(d), nil)
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: map[string]string{}}}}}
		resp, err := s.check(context.Background(), req).response()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDeniedResponse().GetStatus().GetCode() != 503 || resp.GetStatus().GetMessage() != string(reason.Internal) {
			t.Errorf("decision %+v: answered %v, want a 503 internal_error deny", d, resp)
		}
	}
}

// encode is the reference the wire form is held to: a Decision as Envoy's
// CheckResponse messages, built field by field: on allow, the headers
// to set (overwrite, never append) and to remove, and the identity as
// dynamic metadata; on deny, the HTTP status, the JSON body and
// WWW-Authenticate on a 401, with the matching gRPC code.
func encode(d *policy.Decision) *authv3.CheckResponse {
	if d.Allow {
		ok := &authv3.OkHttpResponse{HeadersToRemove: d.RemoveHeaders}
		ok.Headers = make([]*corev3.HeaderValueOption, len(d.SetHeaders), len(d.SetHeaders)+1)
		for i, h := range d.SetHeaders {
			ok.Headers[i] = overwrite(h.Name, h.Value)
		}
		if d.IDHeader != "" && d.ID != "" {
			ok.Headers = append(ok.Headers, overwrite(d.IDHeader, d.ID))
		}
		return &authv3.CheckResponse{
			Status:          &status.Status{Code: int32(codes.OK)},
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
			DynamicMetadata: metadata(d),
		}
	}
	headers := []*corev3.HeaderValueOption{overwrite("content-type", "application/json")}
	if c := d.Challenge(); c != "" {
		headers = append(headers, overwrite("www-authenticate", c))
	}
	if d.RetryAfter > 0 {
		headers = append(headers, overwrite("retry-after", strconv.Itoa(d.RetryAfter)))
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(grpcCode(d.Status())), Message: string(d.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status())},
			Headers: headers,
			Body:    string(d.Body()),
		}},
		DynamicMetadata: metadata(d),
	}
}

func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		//lint:ignore SA1019 deprecated in Envoy's API, still read by Envoy releases before append_action
		Append: wrapperspb.Bool(false),
	}
}

// metadata is the identity as dynamic metadata. Envoy files it under the
// filter's namespace, so access logs read it as
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:tenant)%.
func metadata(d *policy.Decision) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 6)
	d.EachMetadata(func(k, v string) { fields[k] = structpb.NewStringValue(v) })
	if d.Limit.PerUnit > 0 {
		fields["ratelimit_limit"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"requests_per_unit": structpb.NewNumberValue(float64(d.Limit.PerUnit)),
			"unit":              structpb.NewStringValue(d.Limit.Unit.String()),
		}})
	}
	return &structpb.Struct{Fields: fields}
}

// TestResponseCachedOnSecondMiss: an identity's answer is cached when it
// misses the cache the second time, so that a stream of identities seen
// once (tokens at first sight, each naming a new user) inserts nothing and
// leaves the answers of identities in use where they are.
func TestResponseCachedOnSecondMiss(t *testing.T) {
	s := NewServer(nil, nil)
	answer := func(user string) policy.Decision {
		return policy.Decision{Allow: true, Reason: reason.Allowed, Tier: "admin", Tenant: "acme", User: user,
			Credential: "k1", PolicyVersion: "v1", ID: "req-1", SetHeaders: []policy.Header{{Name: "x-user-id", Value: user}}}
	}
	cached := func(d policy.Decision) bool {
		_, ok := s.responses.Get(respKey{d.PolicyVersion, d.Tier, d.Tenant, d.TenantKind, d.User, d.Role, d.Credential, d.Reason,
			d.Limit, d.Cost, d.Wallet, d.RetryAfter})
		return ok
	}
	alice := answer("alice")
	s.response(&alice)
	if cached(alice) {
		t.Fatal("alice's answer is cached after her first check; want it on her second")
	}
	s.response(&alice)
	if !cached(alice) {
		t.Fatal("alice's answer is not cached after her second check")
	}
	for i := range 10 * responseCacheSize {
		d := answer(fmt.Sprintf("u-%d", i))
		s.response(&d)
	}
	if n := s.responses.Len(); n != 1 || !cached(alice) {
		t.Errorf("after %d identities seen once: %d answers cached, alice's cached %v; want alice's alone",
			10*responseCacheSize, n, cached(alice))
	}
}
