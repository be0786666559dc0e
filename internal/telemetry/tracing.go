package telemetry

// This file holds tracing: one OpenTelemetry span per check, joined to the
// trace the proxy propagates (W3C traceparent, B3), and one per JWK set
// fetch, exported over OTLP when the standard OTEL_* variables ask for it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// Span names and attributes (CONTRACT.md §9).
const (
	CheckSpan = "portcullis.check"
	FetchSpan = "portcullis.jwks_fetch"

	AttrReason        = "portcullis.reason"
	AttrTier          = "portcullis.tier"
	AttrTenantKind    = "portcullis.tenant_kind"
	AttrPolicyVersion = "portcullis.policy_version"
	AttrDecisionID    = "portcullis.decision_id"
	AttrTransport     = "portcullis.transport"
)

// Tracing makes the spans. Its zero value (and a nil *Tracing) traces
// nothing at no cost. It never records a key, a token, a tenant or a user.
type Tracing struct {
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	shutdown func(context.Context) error
}

// propagator reads W3C trace context and both B3 encodings (single "b3"
// header and the X-B3-* headers), which Envoy and Istio send.
func propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{},
		b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader|b3.B3SingleHeader)))
}

// TracingFromEnv returns the tracing the environment asks for: off (nil)
// unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is set and OTEL_TRACES_EXPORTER is not "none"; then an OTLP exporter over
// gRPC or HTTP (OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL: grpc, http/protobuf,
// the default), configured by the exporter's own OTEL_* variables, with
// the sampler of OTEL_TRACES_SAMPLER (default: parent-based, always on).
func TracingFromEnv(ctx context.Context) (*Tracing, error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" ||
		os.Getenv("OTEL_TRACES_EXPORTER") == "none" || os.Getenv("OTEL_SDK_DISABLED") == "true" {
		return nil, nil
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(serviceName())))
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := NewTracing(tp)
	t.shutdown = tp.Shutdown
	return t, nil
}

// serviceName is OTEL_SERVICE_NAME, else "portcullis".
func serviceName() string {
	if n := os.Getenv("OTEL_SERVICE_NAME"); n != "" {
		return n
	}
	return "portcullis"
}

// NewTracing returns tracing with spans from tp (tests give one recording
// in memory).
func NewTracing(tp trace.TracerProvider) *Tracing {
	return &Tracing{tracer: tp.Tracer("github.com/portcullis/portcullis"), prop: propagator()}
}

// Shutdown exports the spans still buffered and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// begin starts a check's span, a child of the trace context in headers
// (lower-case names, as Envoy sends them).
func (t *Tracing) begin(ctx context.Context, headers map[string]string) context.Context {
	if t == nil {
		return ctx
	}
	ctx = t.prop.Extract(ctx, propagation.MapCarrier(headers))
	ctx, _ = t.tracer.Start(ctx, CheckSpan, trace.WithSpanKind(trace.SpanKindServer))
	return ctx
}

// end ends the check's span in ctx with what was decided.
func (t *Tracing) end(ctx context.Context, c extauthz.CheckInfo, d *policy.Decision) {
	if t == nil {
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(
		attribute.String(AttrReason, string(d.Reason)), attribute.String(AttrTier, d.Tier),
		attribute.String(AttrTenantKind, d.TenantKind), attribute.String(AttrPolicyVersion, d.PolicyVersion),
		attribute.String(AttrDecisionID, d.ID), attribute.String(AttrTransport, c.Transport),
		attribute.Int("http.response.status_code", d.Status()))
	if d.Status() == 503 || d.Reason == reason.Internal {
		span.SetStatus(codes.Error, string(d.Reason))
	}
	span.End()
}

// Fetch starts the span of one JWK set fetch from uri (password
// redacted), a child of the check that needed it, if any; the returned
// function ends it with the fetch's error.
func (t *Tracing) Fetch(ctx context.Context, uri string) (context.Context, func(error)) {
	if t == nil {
		return ctx, func(error) {}
	}
	ctx, span := t.tracer.Start(ctx, FetchSpan, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("url.full", uri)), trace.WithTimestamp(time.Now()))
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, strings.SplitN(err.Error(), "\n", 2)[0])
		}
		span.End()
	}
}
