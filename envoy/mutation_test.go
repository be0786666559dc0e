package envoy_test

// This file proves that the assertions of the other tests catch a broken
// shipped configuration: each mutation (fail open, no status on error,
// Portcullis's header mutations refused, a header left out of the list Envoy
// copies, the forward-auth families no longer cleared) is applied to a copy
// of a shipped file, and the assertion that guards against it must pass on
// the file as shipped and report the copy.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testkit"
)

// mutation is one way to break a shipped configuration, and the assertion
// that must notice.
type mutation struct {
	file, name string
	edit       func(t *testing.T, d doc)
	// catch runs the guarding assertion against a stack running d,
	// reporting to r.
	catch func(t *testing.T, r reporter, s shipped, d doc)
}

// onlyExtAuthz returns the one ext_authz filter's typed_config of d.
func onlyExtAuthz(t *testing.T, d doc) map[string]any {
	t.Helper()
	cfgs := extAuthzConfigs(d)
	if len(cfgs) != 1 {
		t.Fatalf("%d ext_authz filters, want 1", len(cfgs))
	}
	return cfgs[0]
}

// removeFilter drops the HTTP filter named name from every HTTP connection
// manager of d.
func removeFilter(t *testing.T, d doc, name string) {
	t.Helper()
	removed := 0
	walk(d, func(m map[string]any) {
		fs, k := field(m, "http_filters")
		if fs == nil {
			return
		}
		var keep []any
		for _, f := range list(fs) {
			if fmt.Sprint(path(obj(f), "name")) == name {
				removed++
				continue
			}
			keep = append(keep, f)
		}
		m[k] = keep
	})
	if removed == 0 {
		t.Fatalf("no %s filter to remove", name)
	}
}

// failsClosedWhenStopped is the stopped-Portcullis assertion of
// TestEnvoyFailsClosed.
func failsClosedWhenStopped(t *testing.T, r reporter, s shipped, d doc) {
	demo := testkit.Load(t, "three-tiers")
	p := serveExample(t, demo.Policy())
	st := startStack(t, s, d, p, newUpstream(t))
	st.assertAllowed(t, demo.Key(t, "acme"))
	p.stop(t)
	st.assertDenied(t, r, demo.Key(t, "acme"), 3, 503)
}

// adminWrite is an exchange of TestEnvoyConventions: every normalized
// header set, forged ones overwritten, context and credentials removed,
// the forward-auth families cleared.
func adminWrite(t *testing.T, r reporter, s shipped, d doc) {
	demo := testkit.Load(t, "three-tiers")
	st := startStack(t, s, d, serveExample(t, demo.Policy()), newUpstream(t))
	c := conventions[0]
	for _, x := range c.cases {
		if x.name == "admin write with an access token" {
			st.exchange(t, r, demo, c, x)
			return
		}
	}
	t.Fatal("no admin write among three-tiers' exchanges")
}

var mutations = []mutation{
	{"envoy.yaml", "fail open", func(t *testing.T, d doc) { onlyExtAuthz(t, d)["failure_mode_allow"] = true }, failsClosedWhenStopped},
	{"envoy.yaml", "no status_on_error", func(t *testing.T, d doc) { delete(onlyExtAuthz(t, d), "status_on_error") }, failsClosedWhenStopped},
	{"envoy.yaml", "Portcullis's header mutations refused", func(t *testing.T, d doc) {
		onlyExtAuthz(t, d)["decoder_header_mutation_rules"] = map[string]any{"disallow_all": true}
	}, adminWrite},
	{"envoy.yaml", "forward-auth families not cleared", func(t *testing.T, d doc) {
		removeFilter(t, d, "envoy.filters.http.header_mutation")
	}, adminWrite},
	{"http-service.yaml", "fail open", func(t *testing.T, d doc) { onlyExtAuthz(t, d)["failure_mode_allow"] = true }, failsClosedWhenStopped},
	{"http-service.yaml", "x-user-id not copied to the request", func(t *testing.T, d doc) {
		l := obj(path(onlyExtAuthz(t, d), "http_service", "authorization_response", "allowed_upstream_headers"))
		var keep []any
		for _, p := range list(l["patterns"]) {
			if path(obj(p), "exact") != "x-user-id" {
				keep = append(keep, p)
			}
		}
		if len(keep) == len(list(l["patterns"])) {
			t.Fatal("allowed_upstream_headers lists no x-user-id")
		}
		l["patterns"] = keep
	}, adminWrite},
	{"http-service.yaml", "forward-auth families not cleared", func(t *testing.T, d doc) {
		removeFilter(t, d, "envoy.filters.http.header_mutation")
	}, adminWrite},
}

// TestShippedConfigMutationsAreCaught: each assertion passes on the
// shipped file and reports the broken copy.
func TestShippedConfigMutationsAreCaught(t *testing.T) {
	envoyBinary(t)
	for _, m := range mutations {
		t.Run(m.file+"/"+m.name, func(t *testing.T) {
			s := shipped{file: m.file, transport: "grpc"}
			if strings.Contains(m.file, "http") {
				s.transport = "http"
			}
			m.catch(t, t, s, shippedDoc(t, m.file))
			broken := shippedDoc(t, m.file)
			m.edit(t, broken)
			rec := &recorder{}
			m.catch(t, rec, s, broken)
			if len(rec.errs) == 0 {
				t.Errorf("the assertion passed on %s with %s: it cannot catch that", m.file, m.name)
			} else {
				t.Logf("caught: %s", rec.errs[0])
			}
		})
	}
}
