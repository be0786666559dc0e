package proxy

// This file holds Envoy configurations as decoded documents, and the
// rewriting of their addresses.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is a decoded Envoy configuration document (YAML or JSON; field
// names in snake_case or lowerCamelCase, as Envoy accepts both).
type Config = map[string]any

// Load reads an Envoy configuration file.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse decodes an Envoy configuration document; name is for errors.
func Parse(name string, b []byte) (Config, error) {
	var c Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if c == nil {
		return nil, fmt.Errorf("%s: empty document", name)
	}
	return c, nil
}

// Marshal encodes c as YAML.
func Marshal(c Config) ([]byte, error) { return yaml.Marshal(c) }

// Field returns m's field named snake (in either spelling Envoy accepts)
// and the key it is stored under (snake when absent).
func Field(m map[string]any, snake string) (any, string) {
	if v, ok := m[snake]; ok {
		return v, snake
	}
	camel := snakeToCamel(snake)
	if v, ok := m[camel]; ok {
		return v, camel
	}
	return nil, snake
}

func snakeToCamel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// Obj returns v as an object, nil when it is not one.
func Obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

// List returns v as a list, nil when it is not one.
func List(v any) []any { l, _ := v.([]any); return l }

// Path walks fields (snake_case names) from m; nil when one is missing.
func Path(m map[string]any, names ...string) any {
	var v any = m
	for _, n := range names {
		o := Obj(v)
		if o == nil {
			return nil
		}
		v, _ = Field(o, n)
	}
	return v
}

// Walk calls f on every object in v, depth first.
func Walk(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(x)
		for _, c := range x {
			Walk(c, f)
		}
	case []any:
		for _, c := range x {
			Walk(c, f)
		}
	}
}

// Copy returns a deep copy of a decoded document or part of one.
func Copy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			out[k] = Copy(c)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = Copy(c)
		}
		return out
	}
	return v
}

// Endpoint is where a rewritten cluster sends its traffic: a loopback
// host:port, or a unix socket path.
type Endpoint struct {
	Addr string // host:port
	Pipe string // unix socket path
	// HealthCheck is where active health checks go instead ("": the
	// endpoint itself), host:port.
	HealthCheck string
}

// TCP returns the endpoints at host:port addresses.
func TCP(addrs ...string) []Endpoint {
	out := make([]Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = Endpoint{Addr: a}
	}
	return out
}

// Unix returns the endpoints at unix socket paths.
func Unix(paths ...string) []Endpoint {
	out := make([]Endpoint, len(paths))
	for i, p := range paths {
		out[i] = Endpoint{Pipe: p}
	}
	return out
}

func (e Endpoint) address() (map[string]any, error) {
	if e.Pipe != "" {
		return map[string]any{"pipe": map[string]any{"path": e.Pipe}}, nil
	}
	return socketAddress(e.Addr)
}

func socketAddress(addr string) (map[string]any, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", addr, err)
	}
	return map[string]any{"socket_address": map[string]any{"address": host, "port_value": n}}, nil
}

// Rewrite points every listener and the admin interface of the bootstrap
// c at 127.0.0.1:0 (Envoy binds a free port; the admin API tells which;
// a bootstrap without an admin interface gets one), every cluster's
// endpoints at to[cluster name] (one lb_endpoint per Endpoint: the
// replicas a DNS name resolves to; a cluster on a unix socket becomes
// STATIC), and every http_service URI at its cluster's first address.
// Nothing else changes. A cluster to does not name is an error: every
// address is accounted for.
func Rewrite(c Config, to map[string][]Endpoint) error {
	loopback0 := func() map[string]any {
		return map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 0}}
	}
	admin := Obj(Path(c, "admin"))
	if admin == nil {
		admin = map[string]any{}
		c["admin"] = admin
	}
	_, k := Field(admin, "address")
	admin[k] = loopback0()
	static := Obj(Path(c, "static_resources"))
	if static == nil {
		return errors.New("not a bootstrap: no static_resources")
	}
	ls, _ := Field(static, "listeners")
	for _, l := range List(ls) {
		_, k := Field(Obj(l), "address")
		Obj(l)[k] = loopback0()
	}
	cs, _ := Field(static, "clusters")
	for _, cl := range List(cs) {
		if err := rewriteCluster(Obj(cl), to); err != nil {
			return err
		}
	}
	Walk(c, func(m map[string]any) {
		su := Obj(Path(m, "server_uri"))
		if su == nil {
			return
		}
		if eps := to[fmt.Sprint(Path(su, "cluster"))]; len(eps) > 0 && eps[0].Addr != "" {
			_, k := Field(su, "uri")
			su[k] = "http://" + eps[0].Addr
		}
	})
	return nil
}

func rewriteCluster(cl map[string]any, to map[string][]Endpoint) error {
	name := fmt.Sprint(Path(cl, "name"))
	eps, ok := to[name]
	if !ok || len(eps) == 0 {
		return fmt.Errorf("cluster %q: no address given for it", name)
	}
	la := Obj(Path(cl, "load_assignment"))
	if la == nil {
		return fmt.Errorf("cluster %q has no load_assignment", name)
	}
	groups, _ := Field(la, "endpoints")
	for _, g := range List(groups) {
		lbs, k := Field(Obj(g), "lb_endpoints")
		var rewritten []any
		for _, lb := range List(lbs) {
			for _, ep := range eps {
				lb := Copy(lb).(map[string]any)
				ed := Obj(Path(lb, "endpoint"))
				addr, err := ep.address()
				if err != nil {
					return err
				}
				_, ak := Field(ed, "address")
				ed[ak] = addr
				if ep.HealthCheck != "" {
					hc, err := socketAddress(ep.HealthCheck)
					if err != nil {
						return err
					}
					_, hk := Field(ed, "health_check_config")
					ed[hk] = map[string]any{"address": hc, "port_value": Obj(hc["socket_address"])["port_value"]}
				}
				rewritten = append(rewritten, lb)
			}
		}
		Obj(g)[k] = rewritten
	}
	if eps[0].Pipe != "" {
		_, k := Field(cl, "type")
		cl[k] = "STATIC" // a unix socket is not a DNS name
	}
	return nil
}
