package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The types in this file mirror the policy and keys files as written. They
// are decoded strictly (unknown fields are errors) and then compiled into a
// Snapshot by compile.go; nothing else reads them.

type policyFile struct {
	Version         int                   `yaml:"version"`
	Credentials     credentialsFile       `yaml:"credentials"`
	Issuers         map[string]issuerFile `yaml:"issuers"`
	Tenants         map[string]tenantFile `yaml:"tenants"`
	PersonalTenants bool                  `yaml:"personal_tenants"`
	KeysFile        string                `yaml:"keys_file"`
	Keys            []keyFile             `yaml:"keys"`
	KeyLimit        int                   `yaml:"key_limit"`
	KeyLifetime     string                `yaml:"key_lifetime"`
	Tiers           map[string]tierFile   `yaml:"tiers"`
	Context         []contextFile         `yaml:"context"`
	Routes          []routeFile           `yaml:"routes"`
	UpstreamHeaders upstreamFile          `yaml:"upstream_headers"`
	Limits          limitsFile            `yaml:"limits"`
}

type credentialsFile struct {
	APIKey *apiKeyFile `yaml:"api_key"`
	JWT    *jwtFile    `yaml:"jwt"`
}

type apiKeyFile struct {
	Headers []string `yaml:"headers"`
	Bearer  bool     `yaml:"bearer"`
}

type jwtFile struct {
	Headers []string `yaml:"headers"`
	None    []string `yaml:"none"`
}

type issuerFile struct {
	Issuer     string     `yaml:"issuer"`
	JWKS       jwksFile   `yaml:"jwks"`
	Audiences  []string   `yaml:"audiences"`
	Algorithms []string   `yaml:"algorithms"`
	Claims     claimsFile `yaml:"claims"`
	RequireKID *bool      `yaml:"require_kid"`
}

type jwksFile struct {
	URI     string           `yaml:"uri"`
	Refresh string           `yaml:"refresh"`
	File    string           `yaml:"file"`
	Keys    []map[string]any `yaml:"keys"`
}

type claimsFile struct {
	User   StringList `yaml:"user"`
	Tenant StringList `yaml:"tenant"`
	Groups StringList `yaml:"groups"`
}

type tenantFile struct {
	Aliases []string `yaml:"aliases"`
	Members []string `yaml:"members"`
}

type tierFile struct {
	RequiresAny []requirementFile `yaml:"requires_any"`
	AnyTenant   bool              `yaml:"any_tenant"`
}

type requirementFile struct {
	Key      string   `yaml:"key"`
	JWT      string   `yaml:"jwt"`
	Scopes   []string `yaml:"scopes"`
	Groups   []string `yaml:"groups"`
	TokenUse string   `yaml:"token_use"`
}

type contextFile struct {
	Header string   `yaml:"header"`
	Tiers  []string `yaml:"tiers"`
}

type routeFile struct {
	Prefix  string   `yaml:"prefix"`
	Path    string   `yaml:"path"`
	Methods []string `yaml:"methods"`
	Tier    string   `yaml:"tier"`
	Tenant  string   `yaml:"tenant"`
	Public  bool     `yaml:"public"`
}

type upstreamFile struct {
	Tenant           *string `yaml:"tenant"`
	TenantKind       *string `yaml:"tenant_kind"`
	User             *string `yaml:"user"`
	Tier             *string `yaml:"tier"`
	Credential       *string `yaml:"credential"`
	StripCredentials *bool   `yaml:"strip_credentials"`
}

type limitsFile struct {
	MaxTokenBytes int    `yaml:"max_token_bytes"`
	ClockSkew     string `yaml:"clock_skew"`
}

// keysFile is a separate keys file (often a Kubernetes Secret).
type keysFile struct {
	Version int       `yaml:"version"`
	Keys    []keyFile `yaml:"keys"`
}

type keyFile struct {
	ID          string `yaml:"id" json:"id"`
	SHA256      string `yaml:"sha256" json:"sha256"`
	Tenant      string `yaml:"tenant" json:"tenant"`
	User        string `yaml:"user" json:"user"`
	Tier        string `yaml:"tier" json:"tier"`
	Superuser   bool   `yaml:"superuser" json:"superuser"`
	Created     string `yaml:"created" json:"created"`
	Expires     string `yaml:"expires" json:"expires"`
	Disabled    bool   `yaml:"disabled" json:"disabled"`
	Label       string `yaml:"label" json:"label"`
	Description string `yaml:"description" json:"description"`
	Rotated     string `yaml:"rotated" json:"rotated"` // when the value last changed (informational)
	// Previous holds old values of a rotated key, each valid until its
	// expiry (portcullis keys rotate --overlap).
	Previous []previousFile `yaml:"previous" json:"previous"`
}

// previousFile is an old value of a rotated key.
type previousFile struct {
	SHA256  string `yaml:"sha256" json:"sha256"`
	Expires string `yaml:"expires" json:"expires"`
}

// ParseDuration parses a policy duration: Go syntax ("90s", "15m",
// "1h30m") plus a day unit ("270d").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q: want a whole number of days like \"270d\"", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q: want e.g. \"90s\", \"15m\", \"12h\" or \"270d\"", s)
	}
	return d, nil
}

// ParseTimestamp parses a point in time written as RFC 3339
// ("2026-01-02T15:04:05Z") or as a date ("2026-01-02", midnight UTC).
func ParseTimestamp(s string) (time.Time, error) {
	if len(s) == len(time.DateOnly) {
		if t, err := time.Parse(time.DateOnly, s); err == nil {
			return t, nil
		}
	} else if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)", s)
}

// StringList is one string or a list of strings.
type StringList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(StringList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a string", c.Line)
			}
			out = append(out, c.Value)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
}
