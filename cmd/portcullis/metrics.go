package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/policy"
)

// metrics are the server's Prometheus metrics, all prefixed portcullis_.
// Label values are bounded: results, the policy's tier names, reason codes,
// configured JWKS addresses. No label ever holds a client value.
type metrics struct {
	reg        *prometheus.Registry
	checks     *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	jwks       *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	generation prometheus.Gauge
	keys       prometheus.Gauge
	panics     *prometheus.CounterVec
}

func newMetrics(eng func() *policy.Engine) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_checks_total", Help: "Authorization checks by transport, result, earned tier and reason.",
		}, []string{"transport", "result", "tier", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_check_duration_seconds",
			Help:    "Time to decide one check, from request decoded to response encoded.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1},
		}, []string{"transport"}),
		jwks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_jwks_fetches_total", Help: "JWK set fetches by address and result.",
		}, []string{"uri", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_policy_reloads_total", Help: "Policy reloads by trigger and result.",
		}, []string{"trigger", "result"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_policy_generation", Help: "Generation of the policy serving now; 1 at start, +1 per successful reload.",
		}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_policy_keys", Help: "API keys in the policy serving now.",
		}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_panics_total", Help: "Panics recovered during checks (each check was denied 503), by where: engine, grpc, forward-auth.",
		}, []string{"where"}),
	}
	for _, where := range []string{"engine", "grpc", "forward-auth"} {
		m.panics.WithLabelValues(where) // exported at 0, so an alert can watch it
	}
	hits := func() float64 { h, _ := eng().TokenCacheStats(); return float64(h) }
	misses := func() float64 { _, mi := eng().TokenCacheStats(); return float64(mi) }
	m.reg.MustRegister(m.checks, m.latency, m.jwks, m.reloads, m.generation, m.keys, m.panics,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "portcullis_token_cache_hits_total", Help: "Verified-token cache hits."}, hits),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "portcullis_token_cache_misses_total", Help: "Verified-token cache misses."}, misses),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "portcullis_token_cache_entries", Help: "Verified tokens cached."},
			func() float64 { return float64(eng().CachedTokens()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) jwksFetched(uri string, err error) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.jwks.WithLabelValues(uri, result).Inc()
}

// observer counts every decision and logs it at debug level.
type observer struct {
	m     *metrics
	log   *slog.Logger
	usage *usage
}

var _ extauthz.Observer = (*observer)(nil)

func (o *observer) Observe(ctx context.Context, c extauthz.Check, d *policy.Decision, elapsed time.Duration) {
	result := "deny"
	if d.Allow {
		result = "allow"
	}
	o.m.checks.WithLabelValues(c.Transport, result, d.Tier, string(d.Reason)).Inc()
	o.m.latency.WithLabelValues(c.Transport).Observe(elapsed.Seconds())
	if o.usage != nil {
		o.usage.record(d.Credential, d.Allow, time.Now())
	}
	if o.log.Enabled(ctx, slog.LevelDebug) {
		o.log.LogAttrs(ctx, slog.LevelDebug, "decision",
			slog.String("request_id", c.RequestID), slog.String("method", c.Method), slog.String("path", c.Path),
			slog.Bool("allow", d.Allow), slog.Int("status", d.Status), slog.String("reason", string(d.Reason)),
			slog.String("tier", d.Tier), slog.String("tenant", d.Tenant), slog.String("user", d.User),
			slog.String("credential", d.Credential), slog.Int64("latency_us", elapsed.Microseconds()))
	}
}

// Panicked counts a recovered panic and logs it with its stack. The value is
// described by policy.PanicValue, which never prints request data.
func (o *observer) Panicked(ctx context.Context, where string, value any, stack []byte) {
	o.m.panics.WithLabelValues(where).Inc()
	o.log.ErrorContext(ctx, "check panicked; denied 503", "where", where, "panic", policy.PanicValue(value), "stack", string(stack))
}
