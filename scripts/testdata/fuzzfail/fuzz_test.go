// Package fuzzfail holds fuzz targets for scripts/fuzz.sh's own test: one
// the engine breaks at its first mutation, one it never breaks. It lives
// under testdata, so ./... (make test, make fuzz) never runs it.
package fuzzfail

import "testing"

// FuzzFail fails on any input but its seed.
func FuzzFail(f *testing.F) {
	f.Add("seed")
	f.Fuzz(func(t *testing.T, s string) {
		if s != "seed" {
			t.Fatalf("the engine found %q", s)
		}
	})
}

// FuzzPass never fails.
func FuzzPass(f *testing.F) {
	f.Add("seed")
	f.Fuzz(func(t *testing.T, s string) {})
}
