// Package extauthz adapts Envoy's ext_authz protocol (envoy.service.auth.v3,
// gRPC) to the policy engine and back: it decodes a CheckRequest into a
// transport-free policy.Request, asks the Engine, and encodes the Decision as
// an OkHttpResponse or a DeniedHttpResponse. The gRPC service
// (NewGRPCServer) writes each answer from a cached encoding, made with
// protowire once per identity and snapshot, followed by the few bytes that
// carry the decision's id, through its own codec: no message is built or
// marshalled per check.
//
// It holds no authorization logic of its own. Check never returns an error:
// a request it cannot decode, or a failure anywhere below it, is a deny,
// never an allow. It never logs a credential.
package extauthz
