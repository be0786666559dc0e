package policy

// This file holds the route step: the method and path rules, and the route
// table (first match wins; no match is a deny).

import (
	"slices"
	"strings"

	"github.com/portcullis/portcullis/reason"
)

// route is one compiled entry of the route table.
type route struct {
	prefix  string // segment-aware prefix; "" when exact is set
	exact   string
	methods []string // upper-case; empty = any
	tier    *tier    // nil only for public routes
	tenant  tenantNeed
	public  bool
	hosts   []hostPattern // empty = any host
}

type tenantNeed int

const (
	tenantRequired tenantNeed = iota
	tenantOptional
)

// routePath returns the path to route on: p without its query string, and
// whether p is canonical. A path that some component in front of or behind
// Portcullis could read as another path is refused (the caller denies it
// 400), never normalized into another route. The rule is general, not a
// list of known tricks: every byte must be one RFC 3986 allows in a path
// segment (unreserved, sub-delims other than ";", ":", "@", "/"); a "%"
// must start a two-hex-digit escape ("%u002e" and "%zz" are refused); an
// escape may only stand for a printable ASCII character that is neither
// unreserved (a normalizer would decode "%61" to "a") nor one of
// / \ % ; # ? . (decoding those changes the segments); so encoded control
// bytes, encoded non-ASCII (overlong UTF-8 "%c0%ae", fullwidth dots
// "%ef%bc%8e") and raw non-ASCII or control bytes are all refused.
// Dot-segments and "//" are refused too. Escapes are returned with upper-case
// hex digits, so "%3c" and "%3C" route alike, as an upstream decodes them.
func routePath(p string) (string, bool) {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if len(p) == 0 || p[0] != '/' {
		return "", false
	}
	lowerHex := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch pathByte[c] {
		case pathBad:
			return "", false
		case pathSlash:
			if i+1 < len(p) && p[i+1] == '/' {
				return "", false
			}
		case pathDot:
			// A segment of "." or "..".
			start := i == 0 || p[i-1] == '/'
			j := i + 1
			if j < len(p) && p[j] == '.' {
				j++
			}
			if start && (j == len(p) || p[j] == '/') {
				return "", false
			}
		case pathPercent:
			if i+2 >= len(p) {
				return "", false
			}
			hi, lo := unhex(p[i+1]), unhex(p[i+2])
			if hi < 0 || lo < 0 || !escapable[hi<<4|lo] {
				return "", false
			}
			lowerHex = lowerHex || p[i+1] >= 'a' || p[i+2] >= 'a'
			i += 2
		}
	}
	if lowerHex {
		return upperEscapes(p), true
	}
	return p, true
}

// Classes of raw path bytes.
const (
	pathBad = iota
	pathOK
	pathSlash
	pathDot
	pathPercent
)

// pathByte classifies every byte a raw path may hold (a table: this runs
// over every byte of every request's path).
var pathByte = func() (t [256]uint8) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~!$&'()*+,=:@" {
		t[c] = pathOK
	}
	t['/'], t['.'], t['%'] = pathSlash, pathDot, pathPercent
	return t
}()

// escapable holds the bytes a path may carry percent-encoded: printable
// ASCII that is not unreserved and whose decoding cannot change segments.
var escapable = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/\\%;#?" {
		t[c] = false
	}
	return t
}()

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// upperEscapes returns p with the hex digits of its escapes upper-cased.
func upperEscapes(p string) string {
	b := []byte(p)
	for i := 0; i < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = upperHex(b[i+1]), upperHex(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func upperHex(c byte) byte {
	if c >= 'a' && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// matches reports whether r applies to method, path (already canonical,
// query removed) and host (from requestHost).
func (r *route) matches(method, path, host string) bool {
	if len(r.methods) > 0 && !slices.Contains(r.methods, method) {
		return false
	}
	if len(r.hosts) > 0 && !slices.ContainsFunc(r.hosts, func(p hostPattern) bool { return p.matches(host) }) {
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

// route returns the first route that applies to method, the raw path and
// the host, or why the request is refused before any route: a method that
// is not an upper-case token or a malformed host (400 bad_request), a path
// that is not canonical (400 bad_path), no route at all.
func (s *Snapshot) route(method, rawPath, rawHost string) (*route, reason.Code) {
	if !methodToken(method) {
		return nil, reason.BadRequest
	}
	path, ok := routePath(rawPath)
	if !ok {
		return nil, reason.BadPath
	}
	host, okHost := requestHost(rawHost)
	if !okHost {
		return nil, reason.BadRequest
	}
	for i := range s.routes {
		if s.routes[i].matches(method, path, host) {
			return &s.routes[i], ""
		}
	}
	return nil, reason.NoRoute
}

// methodToken reports whether m is a method Portcullis routes on: 1 to 32
// upper-case letters, "-" or "_". Methods are case-sensitive (RFC 9110
// §9.1), and many upstreams upper-case them before dispatch, so "delete"
// would pass a route table written for DELETE: such a method is refused
// (400), never matched case-insensitively or passed on.
func methodToken(m string) bool {
	if len(m) == 0 || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; !(c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
