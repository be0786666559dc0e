package policy

// This file holds the policy file as written: the types it is decoded into,
// strictly (unknown fields are errors), before load.go compiles them into a
// Snapshot. Nothing else reads them.

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
)

type policyFile struct {
	Version         int                   `yaml:"version"`
	Credentials     credentialsFile       `yaml:"credentials"`
	Issuers         map[string]issuerFile `yaml:"issuers"`
	Tenants         map[string]tenantFile `yaml:"tenants"`
	PersonalTenants bool                  `yaml:"personal_tenants"`
	KeysFile        string                `yaml:"keys_file"`
	Keys            []keys.FileEntry      `yaml:"keys"`
	KeyLimit        int                   `yaml:"key_limit"`
	KeyLifetime     string                `yaml:"key_lifetime"`
	Tiers           map[string]tierFile   `yaml:"tiers"`
	Context         []contextFile         `yaml:"context"`
	Routes          []routeFile           `yaml:"routes"`
	UpstreamHeaders upstreamFile          `yaml:"upstream_headers"`
	Limits          limitsFile            `yaml:"limits"`
	KeysStore       *keysStoreFile        `yaml:"keys_store"`
	KeysAPI         *keysAPIFile          `yaml:"keys_api"`
	Directory       *directoryFile        `yaml:"directory"`
	Plans           map[string]limitFile  `yaml:"plans"`
	DefaultPlan     string                `yaml:"default_plan"`
	Credits         *creditsFile          `yaml:"credits"`
}

// creditsFile meters routes against the tenant's wallet (CONTRACT §11).
type creditsFile struct {
	Costs     []costFile `yaml:"costs"`
	Unmetered string     `yaml:"unmetered"` // allow (default) or deny
	OnOutage  string     `yaml:"on_outage"` // deny (default) or allow
}

// costFile is one cost rule: route matchers and what a request costs.
type costFile struct {
	Prefix  string   `yaml:"prefix"`
	Path    string   `yaml:"path"`
	Methods []string `yaml:"methods"`
	Hosts   []string `yaml:"hosts"`
	Cost    int64    `yaml:"cost"`
}

// limitFile is a rate limit: requests per unit of time, as Envoy's rate
// limit service counts them.
type limitFile struct {
	RequestsPerUnit int64  `yaml:"requests_per_unit"`
	Unit            string `yaml:"unit"`
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
	Issuer     string       `yaml:"issuer"`
	Discovery  bool         `yaml:"discovery"`
	Cognito    *cognitoFile `yaml:"cognito"`
	JWKS       jwksFile     `yaml:"jwks"`
	Audiences  []string     `yaml:"audiences"`
	Algorithms []string     `yaml:"algorithms"`
	Claims     claimsFile   `yaml:"claims"`
	RequireKID *bool        `yaml:"require_kid"`
}

type cognitoFile struct {
	Region     string `yaml:"region"`
	UserPoolID string `yaml:"user_pool_id"`
}

type jwksFile struct {
	Discovery bool             `yaml:"discovery"`
	URI       string           `yaml:"uri"`
	Refresh   string           `yaml:"refresh"`
	File      string           `yaml:"file"`
	Keys      []map[string]any `yaml:"keys"`
}

type claimsFile struct {
	User   source.StringList `yaml:"user"`
	Tenant source.StringList `yaml:"tenant"`
	Groups source.StringList `yaml:"groups"`
}

type tenantFile struct {
	Aliases []string     `yaml:"aliases"`
	Members []memberFile `yaml:"members"`
	Plan    string       `yaml:"plan"`
}

// memberFile is one member of a policy tenant: a bare user id (the
// directory's default_role), or {user, role}.
type memberFile struct {
	User, Role string
	Line       int
}

// UnmarshalYAML reads a bare id or a {user, role} mapping, strictly.
func (m *memberFile) UnmarshalYAML(n *yaml.Node) error {
	m.Line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		m.User = n.Value
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: %s: want a string", v.Line, k.Value)
			}
			switch k.Value {
			case "user":
				m.User = v.Value
			case "role":
				m.Role = v.Value
			default:
				return fmt.Errorf("line %d: unknown field %q in a member (want user and role)", k.Line, k.Value)
			}
		}
		if m.User == "" {
			return fmt.Errorf("line %d: a member needs its user", n.Line)
		}
		return nil
	}
	return fmt.Errorf("line %d: a member is a user id or {user, role}", n.Line)
}

// directoryFile turns on the directory in the store and defines roles.
type directoryFile struct {
	Store       bool                `yaml:"store"`
	Roles       map[string]roleFile `yaml:"roles"`
	DefaultRole string              `yaml:"default_role"`
}

type roleFile struct {
	MaxTier    string `yaml:"max_tier"`
	ManageKeys bool   `yaml:"manage_keys"`
}

type tierFile struct {
	RequiresAny []requirementFile `yaml:"requires_any"`
	AnyTenant   bool              `yaml:"any_tenant"`
	Description string            `yaml:"description"` // one line, for the token page
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
	Hosts   []string `yaml:"hosts"`
}

type upstreamFile struct {
	Tenant           *string `yaml:"tenant"`
	TenantKind       *string `yaml:"tenant_kind"`
	User             *string `yaml:"user"`
	Tier             *string `yaml:"tier"`
	Credential       *string `yaml:"credential"`
	DecisionID       *string `yaml:"decision_id"`
	Role             *string `yaml:"role"`
	CreditsRemaining *string `yaml:"credits_remaining"`
	StripCredentials *bool   `yaml:"strip_credentials"`
}

type limitsFile struct {
	MaxTokenBytes int    `yaml:"max_token_bytes"`
	ClockSkew     string `yaml:"clock_skew"`
}

type keysStoreFile struct {
	Postgres *struct {
		DSNEnv string `yaml:"dsn_env"`
	} `yaml:"postgres"`
}

type keysAPIFile struct {
	ManagementTokensFile string           `yaml:"management_tokens_file"`
	SelfService          *selfServiceFile `yaml:"self_service"`
	PerUserLimit         int              `yaml:"per_user_limit"`
}

type selfServiceFile struct {
	Issuers     []string `yaml:"issuers"`
	Tiers       []string `yaml:"tiers"`
	AdminGroups []string `yaml:"admin_groups"`
}

// tokensFile is a management tokens file: the digests of the tokens the
// platform's backend calls the key-management API with.
type tokensFile struct {
	Version int `yaml:"version"`
	Tokens  []struct {
		ID     string `yaml:"id"`
		SHA256 string `yaml:"sha256"`
	} `yaml:"tokens"`
}
