package extauthz

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// TestWireDecodesAsEncode holds the wire form to the response it stands
// for: for every reason, allow and deny, with and without an id and an id
// header, ids that JSON and protobuf must escape or length-prefix with more
// than one byte, the cached base followed by the tail decodes to exactly
// what encode builds for the decision, on the first answer (the base is
// made) and the next (the base is reused).
func TestWireDecodesAsEncode(t *testing.T) {
	ids := []string{"", "req-1", `q"<>&\` + "\u00e9\u2028", string(make([]byte, 200))}
	var decisions []policy.Decision
	for _, id := range ids {
		for _, header := range []string{"", "x-decision-id"} {
			decisions = append(decisions, policy.Decision{Allow: true, Reason: reason.Allowed, Tier: "admin", Tenant: "acme",
				TenantKind: policy.KindOrganization, User: "alice", Credential: "k1", PolicyVersion: "v1", ID: id, IDHeader: header,
				SetHeaders:    []policy.Header{{Name: "x-tenant-id", Value: "acme"}, {Name: "x-auth-tier", Value: "admin"}},
				RemoveHeaders: []string{"x-user-id", "x-api-key"}})
		}
		for _, r := range reason.All() {
			if r.Status() == 200 {
				continue
			}
			d := policy.Deny(r)
			d.ID, d.PolicyVersion, d.Tier, d.Credential = id, "v1", "service", "k1"
			decisions = append(decisions, d)
		}
		d := policy.Deny(reason.BadRequest) // not from a snapshot: encoded afresh
		d.ID = id
		decisions = append(decisions, d)
	}
	s := NewServer(nil, nil)
	for _, d := range decisions {
		want := encode(&d)
		for _, attempt := range []string{"first", "cached"} {
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
