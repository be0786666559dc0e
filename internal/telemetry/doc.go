// Package telemetry holds what the server tells operators: the Prometheus
// metrics (all named portcullis_*), the observer that counts every decision
// and logs it at debug level, and the per-key usage it records.
//
// Label values are bounded: results, tier names, reason codes, configured
// (redacted) addresses. No label, log field or metric ever holds a value a
// client sent as a secret; a key is named by its id only. It must not
// decide anything or import the server's lifecycle.
package telemetry
