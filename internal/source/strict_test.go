package source_test

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/source"
)

type entry struct {
	ID   string `json:"id" yaml:"id"`
	User string `json:"user" yaml:"user"`
}

type doc struct {
	Version int     `json:"version" yaml:"version"`
	Keys    []entry `json:"keys" yaml:"keys"`
	Owner   *entry  `json:"owner" yaml:"owner"`
}

// TestStrictJSON (RT2-04, RT2-05): every JSON body and file goes through
// DecodeJSON, which matches names exactly and refuses a repeated name at
// every depth, an unknown name, a wrong type, data after the value and
// invalid UTF-8, naming the field and never quoting a value.
func TestStrictJSON(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"upper-case name", `{"VERSION":1}`, `unknown field "VERSION"`},
		{"title-case name", `{"Version":1}`, `unknown field "Version"`},
		{"name beside its other case", `{"version":1,"Version":2}`, `unknown field "Version"`},
		{"repeated name", `{"version":1,"version":2}`, `field "version" appears twice`},
		{"repeated equal value", `{"version":1,"version":1}`, `field "version" appears twice`},
		{"repeated in a list entry", `{"keys":[{"id":"a","user":"u-alice","user":"u-bob"}]}`, `keys[0]: field "user" appears twice`},
		{"other case in a list entry", `{"keys":[{"id":"a","user":"u-alice","USER":"u-bob"}]}`, `keys[0]: unknown field "USER"`},
		{"repeated in a nested object", `{"owner":{"id":"a","id":"b"}}`, `owner: field "id" appears twice`},
		{"other case in a nested object", `{"owner":{"Id":"a"}}`, `owner: unknown field "Id"`},
		{"repeated escaped", `{"version":1,"vers\u0069on":2}`, `field "version" appears twice`},
		{"unknown", `{"colour":"red"}`, `unknown field "colour"`},
		{"wrong type", `{"version":"one"}`, `version: want a number, not a string`},
		{"wrong type in an entry", `{"keys":[{"id":7}]}`, `keys[0].id: want a string, not a number`},
		{"not an object", `["version"]`, `want an object, not a list`},
		{"data after", `{"version":1} {"version":2}`, `data after the value`},
		{"truncated", `{"version":1`, `ends too early`},
		{"invalid UTF-8", "{\"keys\":[{\"id\":\"a\xff\"}]}", `invalid JSON`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			err := source.DecodeJSON([]byte(tc.in), &d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: %v, want an error saying %q", tc.in, err, tc.want)
			}
			for _, secret := range []string{"u-alice", "u-bob", "red", "one"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error quotes a value: %v", err)
				}
			}
		})
	}
	var d doc
	if err := source.DecodeJSON([]byte(`{"version":1,"keys":[{"id":"a","user":"u"}],"owner":null}`), &d); err != nil || d.Keys[0].User != "u" {
		t.Fatalf("a valid document: %v %+v", err, d)
	}
}

// TestStrictYAML: policy, keys, tokens and test files (YAML, or JSON read
// as YAML) refuse the same variants, and a second document.
func TestStrictYAML(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"upper-case name", "VERSION: 1\n", `unknown field "VERSION"`},
		{"repeated name", "version: 1\nversion: 2\n", `"version" already defined`},
		{"repeated in an entry", "keys:\n  - { id: a, user: u-alice, user: u-bob }\n", `"user" already defined`},
		{"other case in an entry", "keys:\n  - { id: a, User: u-bob }\n", `unknown field "User"`},
		{"JSON form, repeated", `{"version":1,"version":1}`, `"version" already defined`},
		{"JSON form, other case", `{"version":1,"Version":2}`, `unknown field "Version"`},
		{"JSON form, nested other case", `{"owner":{"ID":"a"}}`, `unknown field "ID"`},
		{"a second document", "version: 1\n---\nversion: 2\n", `more than one YAML document`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			_, err := source.Decode("f.yaml", []byte(tc.in), &d)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "f.yaml:") {
				t.Fatalf("%q: %v, want a located error saying %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestTimestampsAreRangeChecked (RT2-02): a time in a policy or keys file
// that no answer could write (past year 9999 in UTC, before year 1) is
// refused, however it is written.
func TestTimestampsAreRangeChecked(t *testing.T) {
	for _, s := range []string{"9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00", "0000-01-01", "10000-01-01"} {
		if _, err := source.ParseTimestamp(s); err == nil {
			t.Errorf("%s: accepted", s)
		}
	}
	for _, s := range []string{"9999-12-31T23:59:59Z", "9999-12-31", "2026-01-02T15:04:05+02:00"} {
		if _, err := source.ParseTimestamp(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}

// TestDurationsDoNotOverflow: a day count past what a duration holds is
// refused, not wrapped into a shorter one.
func TestDurationsDoNotOverflow(t *testing.T) {
	for _, s := range []string{"3650000d", "106752d", "9223372036854775807d"} {
		if d, err := source.ParseDuration(s); err == nil {
			t.Errorf("%s: accepted as %s", s, d)
		}
	}
	if d, err := source.ParseDuration("106751d"); err != nil || d <= 0 {
		t.Errorf("106751d: %s %v", d, err)
	}
}
