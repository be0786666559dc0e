package policy_test

import (
	"strings"
	"testing"
)

const discoveryPolicy = `version: 1
credentials:
  api_key: { headers: [x-api-key] }
  jwt: { headers: [authorization] }
issuers:
  idp:
ISSUER
    audiences: [app]
    algorithms: [RS256]
tiers:
  service: { requires_any: [ { jwt: idp } ] }
routes:
  - { prefix: /, tier: service }
`

// TestDiscoveryInPolicy: discovery: true (or jwks: { discovery: true })
// discovers the set from the issuer's address; cognito derives a user
// pool's issuer; every misuse names its field.
func TestDiscoveryInPolicy(t *testing.T) {
	load := func(issuer string) (string, error) {
		s, err := loadString(t, strings.Replace(discoveryPolicy, "ISSUER", issuer, 1), nil)
		if err != nil {
			return "", err
		}
		if len(s.Remotes()) != 1 {
			t.Fatalf("%d remotes", len(s.Remotes()))
		}
		return s.Remotes()[0].URI(), nil
	}
	for issuer, want := range map[string]string{
		"    issuer: https://login.example.com/tenant-1/\n    discovery: true":                                                                 "https://login.example.com/tenant-1/.well-known/openid-configuration",
		"    issuer: https://login.example.com\n    jwks: { discovery: true, refresh: 5m }":                                                    "https://login.example.com/.well-known/openid-configuration",
		"    cognito: { region: eu-west-1, user_pool_id: eu-west-1_AbC123 }":                                                                   "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/openid-configuration",
		"    issuer: https://cognito-idp.us-east-2.amazonaws.com/us-east-2_x9\n    cognito: { region: us-east-2, user_pool_id: us-east-2_x9 }": "https://cognito-idp.us-east-2.amazonaws.com/us-east-2_x9/.well-known/openid-configuration",
	} {
		got, err := load(issuer)
		if err != nil || got != want {
			t.Errorf("%s:\n got %s %v\nwant %s", issuer, got, err, want)
		}
	}
	for issuer, want := range map[string]string{
		"    issuer: https://login.example.com\n    discovery: true\n    jwks: { uri: https://login.example.com/keys }": "issuers.idp.jwks: discovery finds the key set",
		"    issuer: https://login.example.com\n    discovery: true\n    jwks: { refresh: 10s }":                        "issuers.idp.jwks.refresh: refresh 10s is below the 1m minimum",
		"    issuer: login.example.com\n    discovery: true":                                                            "issuers.idp.issuer: discovery needs the issuer to be an https URL",
		"    issuer: https://login.example.com/?tenant=1\n    discovery: true":                                          "issuers.idp.issuer: discovery needs",
		"    issuer: https://login.example.com\n    jwks: {}":                                                           "issuers.idp.jwks: set exactly one of uri, file and keys",
		"    cognito: { region: Europe, user_pool_id: eu-west-1_AbC }":                                                  "issuers.idp.cognito.region: want an AWS region",
		"    cognito: { region: eu-west-1, user_pool_id: us-east-1_AbC }":                                               "issuers.idp.cognito.user_pool_id: want the pool's id",
		"    issuer: https://other.example\n    cognito: { region: eu-west-1, user_pool_id: eu-west-1_AbC }":            `is not the pool's issuer "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC"`,
	} {
		if _, err := load(issuer); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant %s", issuer, err, want)
		}
	}
}
