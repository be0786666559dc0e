package policy

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The path rule is checked against normalizers written here independently
// of routePath: whatever a proxy or an upstream in front of or behind
// Portcullis does to a path (RFC 3986 decoding of unreserved characters,
// full percent-decoding, backslash as slash, overlong UTF-8, IIS's %u
// escapes, Unicode compatibility folding of fullwidth dots and slashes), a
// path routePath accepts must mean the same segments afterwards.

// decodeAll percent-decodes every %XX (a normalizer that decodes
// everything); ok is false for a malformed escape.
func decodeAll(p string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		var v byte
		if _, err := fmt.Sscanf(p[i+1:i+3], "%02x", &v); err != nil {
			return "", false
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), true
}

// decodeUnreserved decodes only escapes of unreserved characters, as RFC
// 3986 §6.2.2.2 normalization does.
func decodeUnreserved(p string) string {
	d, ok := decodeAll(p)
	if !ok {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			if c, ok := decodeAll(p[i : i+3]); ok && len(c) == 1 && isUnreservedIndependent(c[0]) {
				b.WriteString(c)
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	_ = d
	return b.String()
}

func isUnreservedIndependent(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0
}

// decodeIIS decodes IIS-style escapes: %u and four hex digits (%u002e is ".").
func decodeIIS(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+5 < len(p)+0 && (p[i+1] == 'u' || p[i+1] == 'U') && i+6 <= len(p) {
			var v rune
			if _, err := fmt.Sscanf(p[i+2:i+6], "%04x", &v); err == nil {
				b.WriteRune(v)
				i += 5
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// decodeOverlong maps overlong UTF-8 encodings of ASCII (after full
// decoding) to the ASCII byte, as broken decoders do.
func decodeOverlong(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c&0xe0 == 0xc0 && i+1 < len(s) && s[i+1]&0xc0 == 0x80:
			b.WriteByte(byte((uint16(c&0x1f)<<6 | uint16(s[i+1]&0x3f)) & 0x7f))
			i++
		case c&0xf0 == 0xe0 && i+2 < len(s) && s[i+1]&0xc0 == 0x80 && s[i+2]&0xc0 == 0x80:
			r := rune(c&0x0f)<<12 | rune(s[i+1]&0x3f)<<6 | rune(s[i+2]&0x3f)
			b.WriteRune(r)
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// segments splits a decoded path the way a router would, with "\" as a
// separator too.
func segments(p string) []string { return strings.Split(strings.ReplaceAll(p, "\\", "/"), "/") }

// stable reports why an accepted path p is not normalizer-stable, or "".
func stable(p string) string {
	if decodeUnreserved(p) != p {
		return "RFC 3986 normalization changes it"
	}
	if decodeIIS(p) != p {
		return "%u decoding changes it"
	}
	full, ok := decodeAll(p)
	if !ok {
		return "a malformed escape"
	}
	for _, variant := range []string{full, decodeOverlong(full), norm.NFKC.String(full)} {
		segs := segments(variant)
		if len(segs) != strings.Count(p, "/")+1 {
			return fmt.Sprintf("decoded as %q, its segments change", variant)
		}
		for _, s := range segs {
			if s == "." || s == ".." {
				return fmt.Sprintf("decoded as %q, it holds a dot-segment", variant)
			}
		}
		for i := 0; i < len(variant); i++ {
			if c := variant[i]; c < 0x20 || c >= 0x7f || c == ';' || c == '#' || c == '?' {
				return fmt.Sprintf("decoded as %q, it holds byte %#x", variant, c)
			}
		}
	}
	if strings.Contains(p, "//") {
		return "an empty segment"
	}
	return ""
}

// corpus generates paths: every byte raw and escaped (both hex cases) in
// three positions, every two-byte escape sequence of non-ASCII bytes
// (overlong and other UTF-8), the %u forms, and every string of up to four
// characters over an alphabet of path-confusing pieces.
func corpus() []string {
	var out []string
	for b := 0; b < 256; b++ {
		for _, enc := range []string{string(rune(0)), fmt.Sprintf("%%%02X", b), fmt.Sprintf("%%%02x", b)} {
			if enc == string(rune(0)) {
				enc = string([]byte{byte(b)})
			}
			out = append(out, "/images/"+enc, "/images/a"+enc+"b/c", "/"+enc+"/images", "/images/"+enc+enc)
		}
	}
	for a := 0x80; a < 0x100; a++ {
		for b := 0x80; b < 0x100; b += 3 {
			out = append(out, fmt.Sprintf("/images/%%%02x%%%02x/predictors", a, b))
		}
	}
	for _, u := range []string{"002e", "002f", "005c", "0041", "ff0e", "2215", "0000"} {
		out = append(out, "/images/%u"+u+"%u"+u+"/predictors", "/images/%U"+u)
	}
	pieces := []string{".", "/", "%2e", "%2f", "%5c", "\\", "%25", "%", "a", "%c0%ae", "%ef%bc%8e", ";", "%3f", "%20"}
	var grow func(prefix string, n int)
	grow = func(prefix string, n int) {
		out = append(out, "/images/"+prefix, "/"+prefix)
		if n == 0 {
			return
		}
		for _, p := range pieces {
			grow(prefix+p, n-1)
		}
	}
	grow("", 4)
	return out
}

// TestRoutePathCorpus: no path routePath accepts can be read as another
// path by any of the normalizers above; RT-08's reported paths are refused;
// ordinary paths (with escaped spaces, ":" and "@") are accepted.
func TestRoutePathCorpus(t *testing.T) {
	accepted, refused := 0, 0
	for _, raw := range corpus() {
		p, ok := routePath(raw)
		if !ok {
			refused++
			continue
		}
		accepted++
		if why := stable(p); why != "" {
			t.Errorf("routePath accepted %q: %s", raw, why)
		}
		if !utf8.ValidString(p) || !strings.HasPrefix(p, "/") {
			t.Errorf("routePath(%q) = %q", raw, p)
		}
	}
	t.Logf("corpus: %d accepted, %d refused", accepted, refused)
	for _, bad := range []string{
		"/images/%c0%ae%c0%ae/predictors", "/images/..%c0%af..%c0%afpredictors", "/images/%e0%80%ae%e0%80%ae/predictors",
		"/images/%u002e%u002e/predictors", "/images/%ef%bc%8e%ef%bc%8e%ef%bc%8fpredictors",
		"/images/%0a", "/images/%0d", "/images/%09", "/images/%7f", "/images/%1b", "/images/%00",
		"/images/%2e%2e/predictors", "/images/%2F", "/images/%5C", "/images/%25", "/images/%3f", "/images/%23",
		"/images/%61dmin", "/images/%7Euser", "/images/\u00e9", "/images/a b", "/images/a\"b", "/images/<x>", "/images/a|b",
		"/images/%", "/images/%2", "/images/%zz", "/images/.", "/images/..", "//images", "/images//x",
	} {
		if p, ok := routePath(bad); ok {
			t.Errorf("routePath accepted %q as %q", bad, p)
		}
	}
	for raw, want := range map[string]string{
		"/images/my%20photo.png":      "/images/my%20photo.png",
		"/images/a:b@c/~u/f_1-2.png":  "/images/a:b@c/~u/f_1-2.png",
		"/images/%3cx%3e?q=%2e%2e/..": "/images/%3Cx%3E",
		"/images/!$&'()*+,=":          "/images/!$&'()*+,=",
		"/.well-known/openid":         "/.well-known/openid",
		"/images/a..b/...":            "/images/a..b/...",
	} {
		if got, ok := routePath(raw); !ok || got != want {
			t.Errorf("routePath(%q) = %q, %v; want %q", raw, got, ok, want)
		}
	}
}
