// Package policy owns the authorization logic: the policy model and its
// strict loading and validation (YAML or JSON, errors with file, line and
// field), the immutable Snapshot, credential extraction, API-key and JWT
// verification, and the Engine whose Decide turns a transport-free Request
// into a Decision (allow or deny, tier, tenant, headers to set and remove).
//
// It must not import Envoy, gRPC or HTTP-server types: adapters live in
// extauthz. It never logs a key or a token; a Decision names a key only by
// its id.
package policy
