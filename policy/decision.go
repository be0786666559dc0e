package policy

import (
	"encoding/json"

	"github.com/portcullis/portcullis/reason"
)

// Request is one transport-free authorization question. Header names must be
// lower-case; a header sent several times is one value joined with ",", as
// Envoy sends it. Path is the raw request path, query string included.
type Request struct {
	Method  string
	Path    string
	Host    string
	Headers map[string]string
}

// Header is one header the proxy must set on the upstream request.
type Header struct {
	Name  string
	Value string
}

// Tenant kinds, as the upstream sees them in the tenant-kind header.
const (
	KindOrganization = "organization"
	KindPersonal     = "personal"
)

// Decision is the answer to a Request. A deny never carries SetHeaders or
// RemoveHeaders. Tier, User and Credential describe what the credentials
// earned even on a deny (e.g. tier_too_low), for logs and the check CLI.
type Decision struct {
	Allow      bool
	Status     int // 200, or the deny status (400, 401, 403, 503)
	Reason     reason.Code
	Tier       string
	Tenant     string
	TenantKind string
	User       string
	Credential string // the API key's id, never the key
	Issuer     string // the id of the issuer whose token was verified
	Policy     string // Version of the snapshot that decided

	SetHeaders    []Header // on allow: normalized headers to set (overwrite)
	RemoveHeaders []string // on allow: headers the proxy must delete; never also in SetHeaders
}

// Challenge returns the WWW-Authenticate value for a 401, else "".
func (d *Decision) Challenge() string {
	if d.Status != 401 {
		return ""
	}
	if d.Reason == reason.MissingCredential {
		return `Bearer realm="portcullis"`
	}
	return `Bearer realm="portcullis", error="invalid_token"`
}

// Body returns the JSON deny body {"error", "reason"}; nil on allow.
func (d *Decision) Body() []byte {
	if d.Allow {
		return nil
	}
	b, _ := json.Marshal(struct {
		Error  string      `json:"error"`
		Reason reason.Code `json:"reason"`
	}{d.Reason.Message(), d.Reason})
	return b
}

// EachMetadata calls f with each non-empty identity field, for proxy access
// logs (Envoy dynamic metadata): never a secret.
func (d *Decision) EachMetadata(f func(key, value string)) {
	for _, kv := range [...][2]string{
		{"reason", string(d.Reason)}, {"tier", d.Tier}, {"tenant", d.Tenant},
		{"tenant_kind", d.TenantKind}, {"user", d.User}, {"credential", d.Credential},
	} {
		if kv[1] != "" {
			f(kv[0], kv[1])
		}
	}
}

// Deny returns the deny Decision for r, for adapters that refuse a request
// before it reaches an Engine (e.g. a CheckRequest without HTTP attributes).
func Deny(r reason.Code) Decision { return deny(r) }

func deny(r reason.Code) Decision {
	return Decision{Status: r.Status(), Reason: r}
}
