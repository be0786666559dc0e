package telemetry

// This file holds the observer every check reports to.

import (
	"context"
	"log/slog"
	"time"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
)

// Observer counts every decision, logs it at debug level and records its
// key's usage. It is safe for concurrent use and never blocks.
type Observer struct {
	m       *Metrics
	log     *slog.Logger
	usage   *keys.Usage
	store   Recorder
	tracing *Tracing // nil: no spans
}

// Trace makes o start a span for every check (t may be nil: none).
func (o *Observer) Trace(t *Tracing) { o.tracing = t }

// Begin starts the check's span, when tracing.
func (o *Observer) Begin(ctx context.Context, headers map[string]string) context.Context {
	return o.tracing.begin(ctx, headers)
}

// Recorder counts the checks of the key store's keys (across replicas),
// and every identified check by tenant, user and key with the units it
// cost (GET /v1/usage).
type Recorder interface {
	Record(id string, allowed bool, now time.Time)
	RecordDetail(tenant, user, key string, allowed bool, units int64, now time.Time)
}

// CountStoreKeys makes o count the checks of the key store's keys in r.
func (o *Observer) CountStoreKeys(r Recorder) { o.store = r }

var _ extauthz.Observer = (*Observer)(nil)

// NewObserver returns an Observer reporting to m, log and usage (which may
// be nil).
func NewObserver(m *Metrics, log *slog.Logger, usage *keys.Usage) *Observer {
	return &Observer{m: m, log: log, usage: usage}
}

// Observe counts d and, at debug level, logs it: request id, method, path
// without query, outcome, identity by id, latency. Never a credential.
func (o *Observer) Observe(ctx context.Context, c extauthz.CheckInfo, d policy.Decision, elapsed time.Duration) {
	result := "deny"
	if d.Allow {
		result = "allow"
	}
	o.tracing.end(ctx, c, &d)
	series := o.m.check(checkLabels{c.Transport, result, d.Tier, string(d.Reason)})
	series.checks.Inc()
	series.latency.Observe(elapsed.Seconds())
	now := c.Done
	if now.IsZero() {
		now = time.Now()
	}
	switch {
	case d.Credential == "":
	case d.FromStore && o.store != nil:
		o.store.Record(d.Credential, d.Allow, now)
	case !d.FromStore && o.usage != nil:
		o.usage.Record(d.Credential, d.Allow, now)
	}
	if o.store != nil && (d.User != "" || d.Tenant != "" || d.Wallet != "") {
		tenant, units := d.Tenant, int64(0)
		if tenant == "" { // credits_exhausted: the wallet's tenant
			tenant = d.Wallet
		}
		if d.Allow && d.Wallet != "" { // charged (an unmetered tenant's cost is not)
			units = d.Cost
		}
		o.store.RecordDetail(tenant, d.User, d.Credential, d.Allow, units, now)
	}
	if o.log.Enabled(ctx, slog.LevelDebug) {
		o.log.LogAttrs(ctx, slog.LevelDebug, "decision",
			slog.String("request_id", c.RequestID), slog.String("method", c.Method), slog.String("path", c.Path),
			slog.Bool("allow", d.Allow), slog.Int("status", d.Status()), slog.String("reason", string(d.Reason)),
			slog.String("tier", d.Tier), slog.String("tenant", d.Tenant), slog.String("user", d.User),
			slog.String("credential", d.Credential), slog.Int64("latency_us", elapsed.Microseconds()))
	}
}

// Panicked counts a recovered panic and logs it with its stack. The value is
// described by policy.PanicValue, which never prints request data.
func (o *Observer) Panicked(ctx context.Context, where string, value any, stack []byte) {
	o.m.panics.WithLabelValues(where).Inc()
	o.log.ErrorContext(ctx, "check panicked; denied 503", "where", where, "panic", policy.PanicValue(value), "stack", string(stack))
}
