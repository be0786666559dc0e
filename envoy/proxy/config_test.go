package proxy

import (
	"fmt"
	"strings"
	"testing"
)

const sample = `
static_resources:
  listeners:
    - name: in
      address: { socket_address: { address: 0.0.0.0, port_value: 8000 } }
  clusters:
    - name: authz
      type: STRICT_DNS
      loadAssignment:
        clusterName: authz
        endpoints:
          - lbEndpoints:
              - endpoint: { address: { socketAddress: { address: authz, portValue: 9001 } } }
    - name: app
      type: STRICT_DNS
      load_assignment:
        cluster_name: app
        endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: app, port_value: 80 } } } } ] } ]
  http:
    server_uri: { uri: "http://authz:9002", cluster: authz, timeout: 1s }
`

// TestRewrite: listeners and admin on 127.0.0.1:0, each cluster at its
// endpoints in either field spelling (one lb_endpoint per replica, a unix
// socket making the cluster STATIC), http_service URIs at their cluster.
func TestRewrite(t *testing.T) {
	c, err := Parse("sample", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if err := Rewrite(c, map[string][]Endpoint{"authz": TCP("127.0.0.1:1", "127.0.0.1:2"), "app": Unix("/tmp/app.sock")}); err != nil {
		t.Fatal(err)
	}
	b, _ := Marshal(c)
	got := string(b)
	for _, want := range []string{"port_value: 0", "address: 127.0.0.1", "path: /tmp/app.sock", "type: STATIC", "uri: http://127.0.0.1:1"} {
		if !strings.Contains(got, want) {
			t.Errorf("rewritten document lacks %q:\n%s", want, got)
		}
	}
	lbs := List(Path(Obj(List(Path(Obj(List(Path(c, "static_resources", "clusters"))[0]), "load_assignment", "endpoints"))[0]), "lb_endpoints"))
	if len(lbs) != 2 {
		t.Errorf("authz has %d lb_endpoints, want one per replica (2)", len(lbs))
	}
	if fmt.Sprint(Path(c, "admin", "address", "socket_address", "port_value")) != "0" {
		t.Errorf("no admin interface on a free port: %v", Path(c, "admin"))
	}
	if err := Rewrite(c, map[string][]Endpoint{"authz": TCP("127.0.0.1:1")}); err == nil || !strings.Contains(err.Error(), `"app"`) {
		t.Errorf("a cluster without an address: %v, want an error naming it", err)
	}
}
