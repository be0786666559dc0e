package policy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

const basePolicy = `version: 1
credentials:
  api_key: { headers: [x-api-key] }
tiers:
  service: { requires_any: [ { key: any } ] }
routes:
  - { prefix: /, tier: service }
`

func loadString(t testing.TB, y string, files map[string]string) (*policy.Snapshot, error) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		write(t, filepath.Join(dir, name), []byte(body))
	}
	path := filepath.Join(dir, "policy.yaml")
	write(t, path, []byte(y))
	return policy.Load(path, policy.LoadOptions{})
}

// TestValidationErrors: each broken policy is refused with every problem
// named by file, line and field.
func TestValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		yaml  string
		files map[string]string
		want  []string
	}{
		{"unknown field", basePolicy + "colour: red\n", nil,
			[]string{`policy.yaml:8: unknown field "colour"`}},
		{"unknown nested field", strings.Replace(basePolicy, "{ prefix: /, tier: service }", "{ prefix: /, tier: service, teir: x }", 1), nil,
			[]string{`policy.yaml:7: unknown field "teir"`}},
		{"wrong version", strings.Replace(basePolicy, "version: 1", "version: 2", 1), nil,
			[]string{"policy.yaml:1: version: want version: 1"}},
		{"unknown tier in route", basePolicy + "  - { prefix: /admin, tier: admn }\n", nil,
			[]string{`policy.yaml:8: routes[1].tier: unknown tier "admn" (tiers are: service)`}},
		{"unknown issuer in tier", strings.Replace(basePolicy, "{ key: any }", "{ key: any, jwt: staff }", 1), nil,
			[]string{`policy.yaml:5: tiers.service.requires_any[0].jwt: unknown issuer "staff"`}},
		{"bad key kind", strings.Replace(basePolicy, "{ key: any }", "{ key: everyone }", 1), nil,
			[]string{`tiers.service.requires_any[0].key: want customer, superuser or any`}},
		{"bad duration", basePolicy + "key_lifetime: 270days\n", nil,
			[]string{`policy.yaml:8: key_lifetime: invalid duration "270days"`}},
		{"non-canonical route", basePolicy + "  - { prefix: /a/../b, tier: service }\n", nil,
			[]string{`policy.yaml:8: routes[1]: "/a/../b" is not a canonical path`}},
		{"hmac algorithm", basePolicy + `issuers:
  idp:
    issuer: https://idp
    jwks: { keys: [] }
    audiences: [a]
    algorithms: [HS256, none]
`, nil, []string{
			`policy.yaml:13: issuers.idp.algorithms[0]: "HS256" is never allowed`,
			`issuers.idp.algorithms[1]: "none" is never allowed`,
			`policy.yaml:11: issuers.idp.jwks.keys: parsing JWK set: no usable signature key`,
			"issuers are configured but credentials.jwt is not"}},
		{"two jwks sources", basePolicy + `credentials2: x
`, nil, []string{`unknown field "credentials2"`}},
		{"not a jwks file", strings.Replace(basePolicy, "credentials:\n", "credentials:\n  jwt: {}\n", 1) + `issuers:
  idp:
    issuer: https://idp
    jwks: { file: certs.json }
    audiences: [a]
    algorithms: [RS256]
`, map[string]string{"certs.json": `{"abc": "-----BEGIN CERTIFICATE-----"}`},
			[]string{`policy.yaml:12: issuers.idp.jwks.file:`, `no "keys" array`}},
		{"missing jwks file", strings.Replace(basePolicy, "credentials:\n", "credentials:\n  jwt: {}\n", 1) + `issuers:
  idp:
    issuer: https://idp
    jwks: { file: nowhere.json }
    audiences: [a]
    algorithms: [RS256]
`, nil, []string{`issuers.idp.jwks.file: cannot read JWK set`}},
		{"keys file problems", basePolicy + "keys_file: keys.yaml\n", map[string]string{"keys.yaml": `version: 1
keys:
  - { id: a, sha256: ` + strings.Repeat("ab", 32) + `, tier: service, created: 2026-01-01 }
  - { id: a, sha256: ` + strings.Repeat("ab", 32) + `, tier: gold, created: 2026-01-01 }
  - { id: c, sha256: xyz, tier: service }
`}, []string{
			`keys.yaml:4: keys[1].id: duplicate key id "a"`,
			`keys.yaml:4: keys[1].sha256: same key as "a"`,
			`keys.yaml:4: keys[1].tier: unknown tier "gold"`,
			`keys.yaml:5: keys[2].sha256: want the key's SHA-256 as 64 hex digits`,
			`keys.yaml:5: keys[2].created: required`}},
		{"missing keys file", basePolicy + "keys_file: nope.yaml\n", nil,
			[]string{`policy.yaml:8: keys_file: cannot read keys file`}},
		{"context header collides with upstream header", basePolicy + "context: [ { header: x-tenant-id } ]\n", nil,
			[]string{`"x-tenant-id" is also a context or credential header`}},
		{"yaml syntax", "version: 1\nroutes: [\n", nil, []string{"policy.yaml:"}},
		{"empty file", "", nil, []string{"policy.yaml: the file is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, tc.yaml, tc.files)
			if err == nil {
				t.Fatal("invalid policy accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func keysFileWith(n int, created string) string {
	var b strings.Builder
	b.WriteString("version: 1\nkeys:\n")
	for i := range n {
		sum := sha256.Sum256([]byte(fmt.Sprint("key-", i)))
		fmt.Fprintf(&b, "  - { id: k%d, sha256: %s, tenant: ws, tier: service, created: %s }\n", i, hex.EncodeToString(sum[:]), created)
	}
	return b.String()
}

func TestKeyLimit(t *testing.T) {
	y := basePolicy + "keys_file: keys.yaml\nkey_limit: 200\n"
	if _, err := loadString(t, y, map[string]string{"keys.yaml": keysFileWith(200, "2026-01-01")}); err != nil {
		t.Fatalf("200 keys refused: %v", err)
	}
	_, err := loadString(t, y, map[string]string{"keys.yaml": keysFileWith(201, "2026-01-01")})
	if err == nil || !strings.Contains(err.Error(), "201 keys exceed the policy's key_limit of 200") {
		t.Fatalf("201 keys: %v", err)
	}
}

func TestKeyLifetime(t *testing.T) {
	y := basePolicy + "keys_file: keys.yaml\nkey_lifetime: 270d\n"
	created := time.Now().UTC().AddDate(0, 0, -269).Format(time.DateOnly)
	s, err := loadString(t, y, map[string]string{"keys.yaml": keysFileWith(1, created)})
	if err != nil {
		t.Fatal(err)
	}
	eng := policy.NewEngine(s, policy.EngineOptions{})
	req := policy.Request{Method: "GET", Path: "/", Headers: map[string]string{"x-api-key": "key-0"}}
	if d := eng.Decide(context.Background(), req); !d.Allow {
		t.Fatalf("269-day-old key denied: %s", d.Reason)
	}
	later := policy.NewEngine(s, policy.EngineOptions{Now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
	if d := later.Decide(context.Background(), req); d.Reason != reason.KeyExpired || d.Status() != 401 {
		t.Fatalf("271-day-old key: %d %s", d.Status(), d.Reason)
	}
}

// TestJSONPolicy: the same policy written as JSON loads and decides alike.
func TestJSONPolicy(t *testing.T) {
	dir := t.TempDir()
	sum := sha256.Sum256([]byte("secret-key"))
	j := `{"version": 1,
 "credentials": {"api_key": {"headers": ["x-api-key"]}},
 "tiers": {"service": {"requires_any": [{"key": "any"}]}},
 "keys": [{"id": "k", "sha256": "` + hex.EncodeToString(sum[:]) + `", "tenant": "t", "tier": "service", "created": "2026-01-01"}],
 "routes": [{"prefix": "/", "tier": "service"}]}`
	path := filepath.Join(dir, "policy.json")
	write(t, path, []byte(j))
	s, err := policy.Load(path, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := policy.NewEngine(s, policy.EngineOptions{}).Decide(context.Background(),
		policy.Request{Method: "GET", Path: "/x", Headers: map[string]string{"x-api-key": "secret-key"}})
	if !d.Allow || d.Tenant != "t" {
		t.Fatalf("%+v", d)
	}
	write(t, path, []byte(strings.Replace(j, `"version": 1,`, `"version": 1, "extra": true,`, 1)))
	if _, err := policy.Load(path, policy.LoadOptions{}); err == nil || !strings.Contains(err.Error(), `policy.json:1: unknown field "extra"`) {
		t.Fatalf("unknown JSON field: %v", err)
	}
}

func TestTierOrderIsFileOrder(t *testing.T) {
	// Tiers named against alphabetical order: "zeta" is lowest, "alpha" highest.
	y := `version: 1
credentials:
  api_key: { headers: [x-api-key] }
keys_file: keys.yaml
tiers:
  zeta: { requires_any: [ { key: any } ] }
  alpha: { requires_any: [ { key: any } ] }
routes:
  - { prefix: /, tier: zeta }
`
	keys := strings.Replace(keysFileWith(1, "2026-01-01"), "tier: service", "tier: alpha", 1)
	s, err := loadString(t, y, map[string]string{"keys.yaml": keys})
	if err != nil {
		t.Fatal(err)
	}
	d := policy.NewEngine(s, policy.EngineOptions{}).Decide(context.Background(),
		policy.Request{Method: "GET", Path: "/", Headers: map[string]string{"x-api-key": "key-0"}})
	if !d.Allow || d.Tier != "alpha" {
		t.Fatalf("tier = %q (%s), want alpha", d.Tier, d.Reason)
	}
}

func TestExamplesValidate(t *testing.T) {
	for _, ex := range []string{"three-tiers", "ib-context", "requester-uid", "bearer-key", "workspace-token"} {
		if _, err := policy.Load(filepath.Join(testkit.Example(ex), "policy.yaml"), policy.LoadOptions{}); err != nil {
			t.Errorf("%s: %v", ex, err)
		}
	}
	// Every example names the same upstream headers (README, "What the upstream receives").
	for _, ex := range []string{"three-tiers", "ib-context", "requester-uid", "bearer-key", "workspace-token"} {
		b, err := os.ReadFile(filepath.Join(testkit.Example(ex), "policy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"x-tenant-id", "x-tenant-kind", "x-user-id", "x-auth-tier", "x-credential-id", "strip_credentials: true"} {
			if !strings.Contains(string(b), h) {
				t.Errorf("%s does not set %s", ex, h)
			}
		}
	}
}

// TestRotatedKeyOverlap: a rotated key's previous value works until its own
// expiry, then only the current value does; both are the same key id.
func TestRotatedKeyOverlap(t *testing.T) {
	sum := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	until := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	keysYAML := `version: 1
keys:
  - id: app
    sha256: ` + sum("new-value") + `
    tenant: t
    tier: service
    created: 2026-01-01
    previous:
      - { sha256: ` + sum("old-value") + `, expires: "` + until.Format(time.RFC3339) + `" }
`
	s, err := loadString(t, basePolicy+"keys_file: keys.yaml\n", map[string]string{"keys.yaml": keysYAML})
	if err != nil {
		t.Fatal(err)
	}
	if s.Keys().Len() != 1 {
		t.Fatalf("%d keys, want 1 (a rotated key is one key)", s.Keys().Len())
	}
	if entries, err := keys.CheckFile(s.KeysFile()); err != nil || len(entries) != 1 || len(entries[0].Previous) != 1 {
		t.Fatalf("keys file entries %+v, %v", entries, err)
	}
	at := func(now time.Time, key string) policy.Decision {
		e := policy.NewEngine(s, policy.EngineOptions{Now: func() time.Time { return now }})
		return e.Decide(context.Background(), policy.Request{Method: "GET", Path: "/", Headers: map[string]string{"x-api-key": key}})
	}
	before, after := until.Add(-time.Minute), until.Add(time.Minute)
	if d := at(before, "old-value"); !d.Allow || d.Credential != "app" {
		t.Fatalf("old value during the overlap: %+v", d)
	}
	if d := at(after, "old-value"); d.Reason != reason.KeyExpired {
		t.Fatalf("old value after the overlap: %s", d.Reason)
	}
	if d := at(after, "new-value"); !d.Allow {
		t.Fatalf("new value: %s", d.Reason)
	}
	bad := strings.Replace(keysYAML, `, expires: "`+until.Format(time.RFC3339)+`"`, "", 1)
	if _, err := loadString(t, basePolicy+"keys_file: keys.yaml\n", map[string]string{"keys.yaml": bad}); err == nil ||
		!strings.Contains(err.Error(), "keys[0].previous[0].expires: required") {
		t.Fatalf("previous without expiry: %v", err)
	}
}

// TestJSONKeysFile: a *.json keys file is streamed, decides like the YAML
// one, and its problems name file, line and field.
func TestJSONKeysFile(t *testing.T) {
	sum := sha256.Sum256([]byte("json-key"))
	good := `{"version": 1, "keys": [
  {"id": "a", "sha256": "` + hex.EncodeToString(sum[:]) + `", "tenant": "t", "tier": "service", "created": "2026-01-01"}
]}`
	s, err := loadString(t, basePolicy+"keys_file: keys.json\n", map[string]string{"keys.json": good})
	if err != nil {
		t.Fatal(err)
	}
	d := policy.NewEngine(s, policy.EngineOptions{}).Decide(context.Background(),
		policy.Request{Method: "GET", Path: "/", Headers: map[string]string{"x-api-key": "json-key"}})
	if !d.Allow || d.Tenant != "t" || d.Credential != "a" {
		t.Fatalf("%+v", d)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"bad tier":      {strings.Replace(good, `"tier": "service"`, `"tier": "gold"`, 1), `keys.json:2: keys[0].tier: unknown tier "gold"`},
		"unknown field": {strings.Replace(good, `"id": "a"`, `"id": "a", "colour": "red"`, 1), `keys.json:2: keys[0]: unknown field "colour"`},
		"duplicate id":  {strings.Replace(good, "\n]}", ",\n  "+strings.Split(good, "\n")[1]+"\n]}", 1), `keys.json:3: keys[1].id: duplicate key id "a"`},
		"syntax":        {strings.Replace(good, `"id": "a",`, `"id": "a"`, 1), `keys.json:2: keys[0]: invalid JSON`},
		"top-level":     {`{"version": 1, "kees": []}`, `keys.json:1: unknown field "kees"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadString(t, basePolicy+"keys_file: keys.json\n", map[string]string{"keys.json": tc.body})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}
