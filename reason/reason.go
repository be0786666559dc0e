package reason

import "slices"

// Code is the stable code of a decision. The same value is the deny body's
// "reason", the log field and the metric label; it never holds anything a
// client sent.
type Code string

// The reasons. Their statuses are in the reasons table below.
const (
	Allowed Code = "allowed"
	Public  Code = "public_route"

	BadRequest Code = "bad_request" // no HTTP attributes, a method that is not an upper-case token, an incomplete forwarded request
	BadPath    Code = "bad_path"    // dot-segments, encoded slashes, control bytes, …

	MissingCredential   Code = "missing_credential"
	AmbiguousCredential Code = "ambiguous_credential"
	InvalidAPIKey       Code = "invalid_api_key"
	KeyDisabled         Code = "key_disabled"
	KeyExpired          Code = "key_expired"
	InvalidToken        Code = "invalid_token"
	TokenTooLarge       Code = "token_too_large"
	TokenExpired        Code = "token_expired"
	TokenNotYetValid    Code = "token_not_yet_valid"
	TokenSignature      Code = "token_signature_invalid"
	TokenUnknownKey     Code = "token_key_unknown"
	TokenUnknownIssuer  Code = "token_issuer_unknown"
	TokenAlgorithm      Code = "token_algorithm_not_allowed"
	TokenAudience       Code = "token_audience_mismatch"

	NoRoute           Code = "no_route"
	TierTooLow        Code = "tier_too_low"
	TenantMismatch    Code = "tenant_mismatch"
	TenantNotAllowed  Code = "tenant_not_allowed"
	ContextNotAllowed Code = "context_not_allowed"
	ContextConflict   Code = "context_conflict"
	TenantRequired    Code = "tenant_required"
	TenantDisabled    Code = "tenant_disabled"   // the directory holds the tenant acted for disabled
	UserDisabled      Code = "user_disabled"     // the directory holds the key's user or the token's subject disabled
	CreditsExhausted  Code = "credits_exhausted" // the wallet of the tenant acted for cannot cover the route's cost
	UntrustedProxy    Code = "untrusted_proxy"   // forward-auth from a peer not in the trusted proxies

	JWKSUnavailable  Code = "jwks_unavailable"
	StoreUnavailable Code = "store_unavailable" // a key the store may hold, before its keys were ever loaded
	Internal         Code = "internal_error"
)

type info struct {
	status  int
	message string // the deny body's "error"
}

// reasons is the one table from reason to HTTP status and deny text.
var reasons = map[Code]info{
	Allowed: {200, ""},
	Public:  {200, ""},

	BadRequest: {400, "malformed request"},
	BadPath:    {400, "request path is not in canonical form"},

	MissingCredential:   {401, "credentials required"},
	AmbiguousCredential: {401, "conflicting credentials"},
	InvalidAPIKey:       {401, "invalid API key"},
	KeyDisabled:         {401, "API key revoked"},
	KeyExpired:          {401, "API key expired"},
	InvalidToken:        {401, "malformed token"},
	TokenTooLarge:       {401, "token too large"},
	TokenExpired:        {401, "token expired"},
	TokenNotYetValid:    {401, "token not yet valid"},
	TokenSignature:      {401, "token signature invalid"},
	TokenUnknownKey:     {401, "token signing key unknown"},
	TokenUnknownIssuer:  {401, "token issuer not trusted"},
	TokenAlgorithm:      {401, "token algorithm not allowed"},
	TokenAudience:       {401, "token audience not accepted"},

	NoRoute:           {403, "no route allows this request"},
	TierTooLow:        {403, "credentials do not grant access to this route"},
	TenantMismatch:    {403, "API key and token belong to different tenants"},
	TenantNotAllowed:  {403, "caller may not act for the requested tenant"},
	ContextNotAllowed: {403, "caller may not select a tenant with this header"},
	ContextConflict:   {403, "context headers name different tenants"},
	TenantRequired:    {403, "this route needs a tenant"},
	TenantDisabled:    {403, "the tenant is disabled"},
	UserDisabled:      {403, "the user is disabled"},
	CreditsExhausted:  {429, "credits exhausted"},
	UntrustedProxy:    {403, "request did not come through a trusted proxy"},

	JWKSUnavailable:  {503, "token issuer keys unavailable"},
	StoreUnavailable: {503, "API keys not loaded yet"},
	Internal:         {503, "authorization check failed"},
}

// Known reports whether r is one of the reason codes.
func (r Code) Known() bool { _, ok := reasons[r]; return ok }

// All returns every reason code, sorted.
func All() []Code {
	out := make([]Code, 0, len(reasons))
	for r := range reasons {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// Status returns the HTTP status for r: 200, 400, 401, 403, 429 or 503. An
// unknown reason maps to 503, so a mistake can only deny.
func (r Code) Status() int {
	if i, ok := reasons[r]; ok {
		return i.status
	}
	return 503
}

// Message returns the short, client-safe text for r's deny body.
func (r Code) Message() string {
	if i, ok := reasons[r]; ok {
		return i.message
	}
	return reasons[Internal].message
}
