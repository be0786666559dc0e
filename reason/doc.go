// Package reason holds the stable reason codes of authorization decisions
// and the one table mapping each to its HTTP status and its client-safe deny
// text. The same code is the deny body's "reason", the log field and the
// metric label.
//
// It is a leaf: it imports no other package of the project, so every layer
// (authn, policy, extauthz, the server) can share it. It must never hold or
// format anything a client sent.
package reason
