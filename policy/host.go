package policy

// This file holds per-route hosts: the patterns a route may name, and the
// request host they are matched against.

import (
	"strings"
)

// hostPattern is one entry of a route's hosts: an exact name, or a suffix
// (".example.com" for "*.example.com", matching any name below it, not
// the name itself). Both lower-case, without a trailing dot.
type hostPattern struct {
	exact, suffix string
}

func (p hostPattern) matches(host string) bool {
	if p.suffix != "" {
		return len(host) > len(p.suffix) && strings.HasSuffix(host, p.suffix)
	}
	return host == p.exact
}

// parseHostPattern reads a route's host: a DNS name or an IP literal, or
// "*." and a DNS name; case-insensitive, no port.
func parseHostPattern(s string) (hostPattern, bool) {
	name := strings.ToLower(s)
	wild := strings.HasPrefix(name, "*.")
	if wild {
		name = name[2:]
	}
	name = strings.TrimSuffix(name, ".")
	if !hostName(name) || wild && strings.HasPrefix(name, "[") {
		return hostPattern{}, false
	}
	if wild {
		return hostPattern{suffix: "." + name}, true
	}
	return hostPattern{exact: name}, true
}

// requestHost returns the host a request is routed on: h (a Host header or
// :authority) lower-cased, without its port and a trailing dot, and
// whether h is well formed. "" is well formed (no host: only routes
// without hosts match). Spaces, a second port, an empty or non-numeric
// port, userinfo, non-ASCII and any other byte a host name cannot hold
// make it malformed: such a request is refused, never matched loosely.
func requestHost(h string) (string, bool) {
	if h == "" {
		return "", true
	}
	host := h
	if strings.HasPrefix(h, "[") { // an IPv6 literal, maybe with a port
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", false
		}
		host = h[:end+1]
		if rest := h[end+1:]; rest != "" && !port(strings.TrimPrefix(rest, ":"), rest) {
			return "", false
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		if !port(h[i+1:], h[i:]) {
			return "", false
		}
		host = h[:i]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if !hostName(host) {
		return "", false
	}
	return host, true
}

// port reports whether p is 1 to 5 digits, following a ":" in withColon.
func port(p, withColon string) bool {
	if withColon == "" || withColon[0] != ':' || len(p) == 0 || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// hostName reports whether h (lower-case, no port) is a DNS name of
// labels of letters, digits, "-" and "_" (1 to 63 bytes each, 253 in
// all), or an IPv6 literal in brackets.
func hostName(h string) bool {
	if strings.HasPrefix(h, "[") {
		if len(h) < 4 || h[len(h)-1] != ']' {
			return false
		}
		for _, c := range []byte(h[1 : len(h)-1]) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == ':' || c == '.') {
				return false
			}
		}
		return true
	}
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			label++
			if label > 63 {
				return false
			}
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		default:
			return false
		}
	}
	return label > 0
}
