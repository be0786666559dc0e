package policy

// This file holds the question a check asks and the answer it gets.

import (
	"encoding/json"
	"fmt"
	"runtime"

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
	Allow         bool
	Reason        reason.Code
	Tier          string
	Tenant        string
	TenantKind    string
	User          string
	Credential    string // the API key's id, never the key
	FromStore     bool   // the key is one of the key store's (not the policy's)
	Issuer        string // the id of the issuer whose token was verified
	PolicyVersion string // Version of the snapshot that decided; "" when none did

	SetHeaders    []Header // on allow: normalized headers to set (overwrite)
	RemoveHeaders []string // on allow: headers the proxy must delete; never also in SetHeaders
}

// Status returns the HTTP status of the decision: 200 on allow, else the
// deny's (400, 401, 403, 503).
func (d *Decision) Status() int { return d.Reason.Status() }

// Challenge returns the WWW-Authenticate value for a 401, else "".
func (d *Decision) Challenge() string {
	if d.Status() != 401 {
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
func Deny(r reason.Code) Decision { return Decision{Reason: r} }

// PanicValue describes a recovered panic value for a log line without
// risking a secret: a runtime error's own message (index out of range, nil
// dereference: never data), else only the value's type, since a panic
// raised with a formatted value might carry a request's key or token.
func PanicValue(v any) string {
	if err, ok := v.(runtime.Error); ok {
		return err.Error()
	}
	return fmt.Sprintf("panic value of type %T (not shown: it may hold request data)", v)
}
