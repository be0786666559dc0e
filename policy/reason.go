package policy

import (
	"fmt"
	"runtime"
)

// Reason is the stable code of a decision. The same value is the deny body's
// "reason", the log field and the metric label; it never holds anything a
// client sent.
type Reason string

// The reasons. Their statuses are in the reasons table below.
const (
	ReasonAllowed Reason = "allowed"
	ReasonPublic  Reason = "public_route"

	ReasonBadRequest Reason = "bad_request" // no HTTP attributes
	ReasonBadPath    Reason = "bad_path"    // dot-segments, encoded slashes, control bytes, …

	ReasonMissingCredential   Reason = "missing_credential"
	ReasonAmbiguousCredential Reason = "ambiguous_credential"
	ReasonInvalidAPIKey       Reason = "invalid_api_key"
	ReasonKeyDisabled         Reason = "key_disabled"
	ReasonKeyExpired          Reason = "key_expired"
	ReasonInvalidToken        Reason = "invalid_token"
	ReasonTokenTooLarge       Reason = "token_too_large"
	ReasonTokenExpired        Reason = "token_expired"
	ReasonTokenNotYetValid    Reason = "token_not_yet_valid"
	ReasonTokenSignature      Reason = "token_signature_invalid"
	ReasonTokenUnknownKey     Reason = "token_key_unknown"
	ReasonTokenUnknownIssuer  Reason = "token_issuer_unknown"
	ReasonTokenAlgorithm      Reason = "token_algorithm_not_allowed"
	ReasonTokenAudience       Reason = "token_audience_mismatch"

	ReasonNoRoute           Reason = "no_route"
	ReasonTierTooLow        Reason = "tier_too_low"
	ReasonTenantMismatch    Reason = "tenant_mismatch"
	ReasonTenantNotAllowed  Reason = "tenant_not_allowed"
	ReasonContextNotAllowed Reason = "context_not_allowed"
	ReasonContextConflict   Reason = "context_conflict"
	ReasonTenantRequired    Reason = "tenant_required"
	ReasonUntrustedProxy    Reason = "untrusted_proxy" // forward-auth from a peer not in the trusted proxies

	ReasonJWKSUnavailable Reason = "jwks_unavailable"
	ReasonInternal        Reason = "internal_error"
)

type reasonInfo struct {
	status  int
	message string // the deny body's "error"
}

// reasons is the one table from reason to HTTP status and deny text.
var reasons = map[Reason]reasonInfo{
	ReasonAllowed: {200, ""},
	ReasonPublic:  {200, ""},

	ReasonBadRequest: {400, "malformed request"},
	ReasonBadPath:    {400, "request path is not in canonical form"},

	ReasonMissingCredential:   {401, "credentials required"},
	ReasonAmbiguousCredential: {401, "conflicting credentials"},
	ReasonInvalidAPIKey:       {401, "invalid API key"},
	ReasonKeyDisabled:         {401, "API key revoked"},
	ReasonKeyExpired:          {401, "API key expired"},
	ReasonInvalidToken:        {401, "malformed token"},
	ReasonTokenTooLarge:       {401, "token too large"},
	ReasonTokenExpired:        {401, "token expired"},
	ReasonTokenNotYetValid:    {401, "token not yet valid"},
	ReasonTokenSignature:      {401, "token signature invalid"},
	ReasonTokenUnknownKey:     {401, "token signing key unknown"},
	ReasonTokenUnknownIssuer:  {401, "token issuer not trusted"},
	ReasonTokenAlgorithm:      {401, "token algorithm not allowed"},
	ReasonTokenAudience:       {401, "token audience not accepted"},

	ReasonNoRoute:           {403, "no route allows this request"},
	ReasonTierTooLow:        {403, "credentials do not grant access to this route"},
	ReasonTenantMismatch:    {403, "API key and token belong to different tenants"},
	ReasonTenantNotAllowed:  {403, "caller may not act for the requested tenant"},
	ReasonContextNotAllowed: {403, "caller may not select a tenant with this header"},
	ReasonContextConflict:   {403, "context headers name different tenants"},
	ReasonTenantRequired:    {403, "this route needs a tenant"},
	ReasonUntrustedProxy:    {403, "request did not come through a trusted proxy"},

	ReasonJWKSUnavailable: {503, "token issuer keys unavailable"},
	ReasonInternal:        {503, "authorization check failed"},
}

// Status returns the HTTP status for r: 200, 400, 401, 403 or 503. An
// unknown reason maps to 503, so a mistake can only deny.
func (r Reason) Status() int {
	if i, ok := reasons[r]; ok {
		return i.status
	}
	return 503
}

// Message returns the short, client-safe text for r's deny body.
func (r Reason) Message() string {
	if i, ok := reasons[r]; ok {
		return i.message
	}
	return reasons[ReasonInternal].message
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
