// Package server runs Portcullis: it loads the policy, opens the listeners
// (ext_authz gRPC with health and optional reflection, forward-auth HTTP,
// the admin HTTP listener with /healthz, /readyz, /metrics and
// /keys/usage), reloads the policy when its files change or on request,
// re-reads TLS files when they rotate, and drains in-flight checks on
// shutdown.
//
// It wires the libraries together and holds the process's lifecycle; it
// decides nothing itself. Libraries must never import it. Reloads run on
// one goroutine, fed by a channel, so a slow load never blocks a signal.
package server
