package authn

import (
	"slices"
	"strconv"
	"testing"
)

// TestReadObject: a token's header and claims are read in one pass,
// keeping the members asked for as written and refusing what is not one
// well-formed JSON object: names written twice (however escaped), invalid
// UTF-8, data after the object. Names match exactly; values Portcullis does
// not read are skipped whatever they hold.
func TestReadObject(t *testing.T) {
	names := map[string]int{"iss": 0, "aud": 1, "exp": 2, "groups": 3, "kid": 4}
	for _, c := range []struct {
		name, json string
		ok         bool
		check      func(o *object) bool
	}{
		{"plain", `{"iss":"https://a","exp":1800000000.5,"aud":"x"}`, true, func(o *object) bool {
			return o.get("iss").str == "https://a" && o.get("exp").numOK && o.get("exp").num == 1800000000.5 && o.get("aud").kind == '"'
		}},
		{"escaped name", `{"\u0069ss":"https://a"}`, true, func(o *object) bool { return o.get("iss").str == "https://a" }},
		{"escaped value", `{"iss":"a\"b\u00e9"}`, true, func(o *object) bool { return o.get("iss").str == "a\"bé" }},
		{"array of strings and others", `{"aud":["x",1,{"y":2},"z",null]}`, true, func(o *object) bool {
			return slices.Equal(o.get("aud").list, []string{"x", "z"})
		}},
		{"empty array", `{"groups":[]}`, true, func(o *object) bool { return o.get("groups").list != nil && len(o.get("groups").list) == 0 }},
		{"null", `{"kid":null}`, true, func(o *object) bool { return o.get("kid").kind == 'n' }},
		{"absent", `{"other":{"deep":[1,2,{"x":"y"}]}}`, true, func(o *object) bool { return o.get("iss").kind == 0 && o.get("kid").kind == 0 }},
		{"not asked for", `{"iss":"a","nope":"b"}`, true, func(o *object) bool { return o.get("nope").kind == 0 }},
		{"case differs", `{"ISS":"a"}`, true, func(o *object) bool { return o.get("iss").kind == 0 }},
		{"too large a number", `{"exp":1e400}`, true, func(o *object) bool { return o.get("exp").kind == '0' && !o.get("exp").numOK }},
		{"duplicate", `{"iss":"a","iss":"b"}`, false, nil},
		{"duplicate escaped", `{"iss":"a","\u0069ss":"b"}`, false, nil},
		{"duplicate of a member not read", `{"x":1,"x":2}`, false, nil},
		{"invalid UTF-8", "{\"iss\":\"a\xff\"}", false, nil},
		{"trailing data", `{"iss":"a"} {}`, false, nil},
		{"trailing garbage", `{"iss":"a"}x`, false, nil},
		{"array", `["iss"]`, false, nil},
		{"unterminated", `{"iss":"a"`, false, nil},
		{"unterminated array", `{"aud":["x"`, false, nil},
		{"bad value skipped", `{"x":[1,}`, false, nil},
		{"empty", ``, false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := &object{names: names, vals: make([]claim, len(names))}
			if got := readObject([]byte(c.json), o); got != c.ok {
				t.Fatalf("readObject(%s) = %v, want %v", c.json, got, c.ok)
			}
			if c.check != nil && !c.check(o) {
				t.Fatalf("readObject(%s): got %+v", c.json, o.vals)
			}
		})
	}
}

// TestParseNumberAsParseFloat: a number read through the integer path is
// the float64 strconv.ParseFloat reads, for every JSON number shape a
// token's times take and the ones around it.
func TestParseNumberAsParseFloat(t *testing.T) {
	for _, n := range []string{"0", "-0", "1", "-1", "1800000000", "-1800000000", "99999999999", "100000000000",
		"999999999999999999", "-999999999999999999", "9007199254740993", "1234567890123456789", "12345678901234567890",
		"1.5", "1e9", "1E9", "1.8e9", "-2.5e-3", "1e400", "0.1"} {
		want, err := strconv.ParseFloat(n, 64)
		got, ok := parseNumber([]byte(n))
		if ok != (err == nil) || ok && got != want {
			t.Errorf("%s: %v %v, ParseFloat %v %v", n, got, ok, want, err)
		}
	}
}
