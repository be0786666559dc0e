package policy

import (
	"strings"
	"testing"
)

// Run one target longer with: go test -run '^$' -fuzz '^FuzzRoutePath$' -fuzztime 10m ./policy/

// FuzzRoutePath: routePath never panics, and a path it accepts is the raw
// path up to its query (escapes in upper-case hex) and reads the same to
// every normalizer in path_internal_test.go: full and RFC 3986 decoding,
// backslash as slash, overlong UTF-8, %u escapes, Unicode folding.
func FuzzRoutePath(f *testing.F) {
	for _, p := range []string{"/images", "/images/1?x=/../y", "/images/../predictors", "/%2e%2E/x", "/a%2fb", "//x",
		"/a\\b", "/a;b", "/a#b", "/a\x00", "/.", "/..", "/a/.", "/a/..", "/.well-known/x", "/a..b", "/...", "", "images",
		"/%", "/%2", "/%252e", "/é", "/a/./b", "/a?", "/%c0%ae%c0%ae/x", "/%u002e", "/%ef%bc%8e", "/a%20b", "/%3c%3E", "/%61"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, ok := routePath(raw)
		if !ok {
			return
		}
		if strings.Contains(p, "?") || !strings.HasPrefix(p, "/") || !strings.HasPrefix(strings.ToUpper(raw), strings.ToUpper(p)) {
			t.Fatalf("routePath(%q) = %q", raw, p)
		}
		if why := stable(p); why != "" {
			t.Fatalf("routePath accepted %q: %s", raw, why)
		}
	})
}
