package policy

import (
	"slices"
	"strings"
)

// route is one compiled entry of the route table.
type route struct {
	prefix  string // segment-aware prefix; "" when exact is set
	exact   string
	methods []string // upper-case; empty = any
	tier    *tier    // nil only for public routes
	tenant  tenantNeed
	public  bool
}

type tenantNeed int

const (
	tenantRequired tenantNeed = iota
	tenantOptional
)

// routePath returns the path to route on: p without its query string, and
// whether p is canonical. A non-canonical path (dot-segments, encoded dots,
// slashes or backslashes, ";", "//", "#", NUL, control or non-ASCII bytes)
// must be denied, never normalized into another route.
func routePath(p string) (string, bool) {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if len(p) == 0 || p[0] != '/' {
		return "", false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c >= 0x7f, c == '\\', c == ';', c == '#':
			return "", false
		case c == '%':
			if i+2 >= len(p) {
				return "", false
			}
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2e", "2f", "5c", "00", "3b", "23", "25":
				return "", false
			}
		case c == '/':
			if i+1 < len(p) && p[i+1] == '/' {
				return "", false
			}
		case c == '.':
			// A segment of "." or "..".
			start := i == 0 || p[i-1] == '/'
			j := i + 1
			if j < len(p) && p[j] == '.' {
				j++
			}
			if start && (j == len(p) || p[j] == '/') {
				return "", false
			}
		}
	}
	return p, true
}

// matches reports whether r applies to method and path (already canonical,
// query removed).
func (r *route) matches(method, path string) bool {
	if len(r.methods) > 0 && !slices.Contains(r.methods, method) {
		return false
	}
	if r.exact != "" {
		return path == r.exact
	}
	if !strings.HasPrefix(path, r.prefix) {
		return false
	}
	// "/images" matches "/images" and "/images/x", not "/imagesx".
	return len(path) == len(r.prefix) || strings.HasSuffix(r.prefix, "/") || path[len(r.prefix)] == '/'
}

// match returns the first route that applies, or nil.
func (s *Snapshot) match(method, path string) *route {
	for i := range s.routes {
		if s.routes[i].matches(method, path) {
			return &s.routes[i]
		}
	}
	return nil
}
