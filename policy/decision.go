package policy

// This file holds the question a check asks and the answer it gets.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/portcullis/portcullis/keys"
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
	// ID is the decision's id (from DecisionID); "" makes Decide take the
	// request's x-request-id or a fresh one.
	ID string
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
	Role          string // the caller's role in the tenant it acts for (directory roles); "" for none
	Credential    string // the API key's id, never the key
	FromStore     bool   // the key is one of the key store's (not the policy's)
	Issuer        string // the id of the issuer whose token was verified
	PolicyVersion string // Version of the snapshot that decided; "" when none did
	// ID names this decision in the deny body, the decision log, dynamic
	// metadata and, on allow, the IDHeader upstream: the request's
	// x-request-id when it is one (DecisionID), else a fresh id.
	ID string
	// IDHeader is the upstream header that carries ID on allow
	// (upstream_headers.decision_id), "" for none. It is not among
	// SetHeaders (whose values depend only on who is calling): adapters set
	// it themselves.
	IDHeader string

	// Limit is the rate limit the proxy's rate limit service applies to
	// this allow (zero when the policy has no plans).
	Limit Limit

	// Cost is what the request cost (or would have: credits_exhausted),
	// charged to Wallet (the tenant's; "" when unmetered); CreditsRemaining
	// the units the answering replica sees left after the charge.
	Cost             int64
	Wallet           string
	CreditsRemaining int64
	// RetryAfter is, on credits_exhausted, the seconds until the wallet's
	// next refill (0: none due).
	RetryAfter int
	// Volatile marks an answer that differs per request beyond its id (the
	// credits_remaining header): adapters must not reuse its encoding.
	Volatile bool

	SetHeaders    []Header // on allow: normalized headers to set (overwrite)
	RemoveHeaders []string // on allow: headers the proxy must delete; never also in SetHeaders. Shared between decisions: never modify it in place
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

// Body returns the JSON deny body {"error", "reason", "id"}; nil on allow.
func (d *Decision) Body() []byte {
	if d.Allow {
		return nil
	}
	return d.AppendBody(nil)
}

// AppendBody appends the deny body (see Body) to b; on allow it appends
// nothing.
func (d *Decision) AppendBody(b []byte) []byte {
	if d.Allow {
		return b
	}
	prefix := bodyPrefixes()[d.Reason]
	if d.ID == "" || !plainJSON(d.ID) || prefix == nil {
		return append(b, bodyOf(d)...)
	}
	// What json.Marshal writes, without its reflection: the id needs no
	// escaping.
	b = append(b, prefix...)
	b = append(b, d.ID...)
	return append(b, `"}`...)
}

func bodyOf(d *Decision) []byte {
	b, _ := json.Marshal(struct {
		Error  string      `json:"error"`
		Reason reason.Code `json:"reason"`
		ID     string      `json:"id,omitempty"`
	}{d.Reason.Message(), d.Reason, d.ID})
	return b
}

// bodyPrefixes holds each reason's deny body up to the id's value.
var bodyPrefixes = sync.OnceValue(func() map[reason.Code][]byte {
	m := map[reason.Code][]byte{}
	for _, r := range reason.All() {
		b := bodyOf(&Decision{Reason: r, ID: "-"})
		m[r] = b[:len(b)-len(`-"}`)]
	}
	return m
})

// plainJSON reports whether json.Marshal writes s as it is, in quotes:
// printable ASCII but for the characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// AnyKey is Limit.Key when the plan's limit applies: every caller acting
// for the tenant shares it.
const AnyKey = "*"

// Limit is the rate limit an allow hands the proxy (CONTRACT §12): the
// tenant's plan, and the key whose own limit applies (AnyKey when the
// plan's does), with the limit itself.
type Limit struct {
	Plan string
	Key  string
	keys.RateLimit
}

// EachMetadata calls f with each non-empty string field of the dynamic
// metadata, for proxy access logs and rate limit descriptors: never a
// secret. The rate limit's own value (a struct) is Limit's.
func (d *Decision) EachMetadata(f func(key, value string)) {
	var rlTenant string
	if d.Limit.PerUnit > 0 {
		rlTenant = d.Tenant
	}
	for _, kv := range [...][2]string{
		{"reason", string(d.Reason)}, {"tier", d.Tier}, {"tenant", d.Tenant},
		{"tenant_kind", d.TenantKind}, {"user", d.User}, {"role", d.Role}, {"credential", d.Credential}, {"decision_id", d.ID},
		{"ratelimit_tenant", rlTenant}, {"ratelimit_plan", d.Limit.Plan}, {"ratelimit_key", d.Limit.Key},
		{"cost", costString(d.Cost)}, {"wallet", d.Wallet},
	} {
		if kv[1] != "" {
			f(kv[0], kv[1])
		}
	}
}

func costString(c int64) string {
	if c == 0 {
		return ""
	}
	return strconv.FormatInt(c, 10)
}

// Deny returns the deny Decision for r, for adapters that refuse a request
// before it reaches an Engine (e.g. a CheckRequest without HTTP attributes).
func Deny(r reason.Code) Decision { return Decision{Reason: r} }

// DecisionID returns the id of a decision on a request whose id is
// requestID (its x-request-id, or Envoy's stream id): requestID itself
// when it is 1 to 128 bytes of letters, digits and "-_.:+/=@" (a UUID, as
// Envoy makes them), else a fresh id, so nothing a client sent that is not
// an id reaches a log line or a deny body.
func DecisionID(requestID string) string {
	if len(requestID) > 0 && len(requestID) <= 128 {
		ok := true
		for i := 0; i < len(requestID) && ok; i++ {
			ok = idByte[requestID[i]]
		}
		if ok {
			return requestID
		}
	}
	return freshID()
}

var idByte = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:+/=@" {
		t[c] = true
	}
	return t
}()

// Fresh ids are this process's random prefix and a counter: unique across
// replicas and restarts without a random read per request.
var (
	idPrefix = func() string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return "pc-" + hex.EncodeToString(b[:]) + "-"
	}()
	idCounter atomic.Uint64
)

func freshID() string {
	b := make([]byte, 0, len(idPrefix)+16)
	b = append(b, idPrefix...)
	return string(strconv.AppendUint(b, idCounter.Add(1), 16))
}

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
