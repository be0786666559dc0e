// Package proxy runs the real Envoy for the tests under envoy/ and the
// benchmark through the proxy (go run ./bench -envoy): it finds the binary
// scripts/install-deps.sh installs, rewrites a configuration's addresses
// to loopback (and nothing else), starts Envoy and waits until it is
// ready, and reads its admin API (bound ports, stats, host health) and its
// access log.
//
// It is a harness, not part of the server: nothing in the binary imports
// it. Its functions return errors; the tests turn them into failures. An
// Envoy is safe for concurrent use.
package proxy
