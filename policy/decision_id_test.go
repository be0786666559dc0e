package policy_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// TestDecisionIDs: every decision has an id: the request's x-request-id
// when it is an id, else a fresh one (never what the client sent when that
// is not an id). It is in the deny body and the metadata; on allow, the
// policy's decision_id header carries it, and it is in neither header list.
func TestDecisionIDs(t *testing.T) {
	y := strings.NewReplacer("SVC", sha("svc-key"), "ADM", sha("adm-key")).Replace(hostsPolicy) +
		"upstream_headers: { decision_id: x-decision-id }\n"
	s, err := loadString(t, y, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(s, policy.EngineOptions{})
	decide := func(rid string, key string) policy.Decision {
		h := map[string]string{"x-api-key": key}
		if rid != "" {
			h["x-request-id"] = rid
		}
		return decideWith(eng, "GET", "/v1/x", h)
	}
	body := func(d policy.Decision) map[string]string {
		var b map[string]string
		if err := json.Unmarshal(d.Body(), &b); err != nil {
			t.Fatalf("deny body %s: %v", d.Body(), err)
		}
		return b
	}
	meta := func(d policy.Decision) map[string]string {
		m := map[string]string{}
		d.EachMetadata(func(k, v string) { m[k] = v })
		return m
	}
	for _, rid := range []string{"7c2d7d2e-9b1f-4a3e-8f0a-1d2e3f4a5b6c", "1", "abc_DEF.123:x+y/z=@w", strings.Repeat("a", 128)} {
		d := decide(rid, "nope")
		if d.ID != rid || body(d)["id"] != rid || meta(d)["decision_id"] != rid {
			t.Errorf("x-request-id %q: id %q, body %s, metadata %v", rid, d.ID, d.Body(), meta(d))
		}
	}
	fresh := map[string]bool{}
	for _, rid := range []string{"", strings.Repeat("a", 129), "a b", `a"b`, "a\nb", "a\x00b", "ä", "a,b", "<script>", "a;b", "pk_live_" + strings.Repeat("x", 200)} {
		d := decide(rid, "nope")
		if d.ID == rid || !strings.HasPrefix(d.ID, "pc-") || body(d)["id"] != d.ID || fresh[d.ID] {
			t.Errorf("x-request-id %q: id %q (want a fresh one, unlike any other)", rid, d.ID)
		}
		fresh[d.ID] = true
		if strings.Contains(string(d.Body()), rid) && rid != "" {
			t.Errorf("x-request-id %q reached the deny body %s", rid, d.Body())
		}
	}
	d := eng.Decide(t.Context(), policy.Request{Method: "GET", Path: "/v1/x", Host: "api.example.com",
		Headers: map[string]string{"x-api-key": "svc-key", "x-request-id": "r-1", "x-decision-id": "forged"}})
	if !d.Allow || d.ID != "r-1" || d.IDHeader != "x-decision-id" {
		t.Fatalf("allow: %v id %q header %q", d.Allow, d.ID, d.IDHeader)
	}
	if slices.ContainsFunc(d.SetHeaders, func(h policy.Header) bool { return h.Name == "x-decision-id" }) || slices.Contains(d.RemoveHeaders, "x-decision-id") {
		t.Errorf("the id header is in a header list: set %v remove %v", d.SetHeaders, d.RemoveHeaders)
	}
	if d.Body() != nil {
		t.Errorf("an allow has a body: %s", d.Body())
	}
	// A request's own id, given by the adapter, wins over the header.
	if d := eng.Decide(t.Context(), policy.Request{Method: "GET", Path: "/v1/x", ID: "given", Headers: map[string]string{"x-request-id": "header"}}); d.ID != "given" {
		t.Errorf("Request.ID: %q", d.ID)
	}
	// The header must not clash with another upstream, context or credential header.
	for _, clash := range []string{"x-tenant-id", "x-api-key"} {
		y := strings.NewReplacer("SVC", sha("svc-key"), "ADM", sha("adm-key")).Replace(hostsPolicy) +
			"upstream_headers: { decision_id: " + clash + " }\n"
		if _, err := loadString(t, y, nil); err == nil || !strings.Contains(err.Error(), clash) {
			t.Errorf("decision_id %s: %v", clash, err)
		}
	}
}

// TestDenyBody: the deny body is what encoding/json writes for
// {"error", "reason", "id"}, byte for byte, for every reason and ids plain
// and needing escapes (the body is built without json.Marshal when the id
// needs none).
func TestDenyBody(t *testing.T) {
	for _, r := range reason.All() {
		for _, id := range []string{"", "req-1", "a:b/c=d+e@f.g_h", `q"`, `b\s`, "<>&", "\u00e9", "\x7f", "tab\t", "\u2028"} {
			d := policy.Deny(r)
			d.ID = id
			want, _ := json.Marshal(struct {
				Error  string      `json:"error"`
				Reason reason.Code `json:"reason"`
				ID     string      `json:"id,omitempty"`
			}{r.Message(), r, id})
			if got := d.Body(); string(got) != string(want) {
				t.Errorf("reason %s, id %q: body %s, want %s", r, id, got, want)
			}
		}
	}
}
