package k8s_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/portcullis/portcullis/reason"
)

// exportedMetrics is the list of series names the server exports, kept
// current by cmd/portcullis.TestExportedMetricsListed against the real
// binary.
func exportedMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "exported-metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// metricsIn returns the metric names an expression selects, or the parse
// error. A matcher on the reason label must name only reason codes the
// server gives (a misspelt one would match nothing, silently).
func metricsIn(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	var bad []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
			for _, m := range vs.LabelMatchers {
				if m.Name != "reason" {
					continue
				}
				for _, v := range strings.Split(m.Value, "|") {
					if !reason.Code(v).Known() {
						bad = append(bad, v)
					}
				}
			}
		}
		return nil
	})
	if len(bad) > 0 {
		return out, fmt.Errorf("reason %q is not a reason code", bad)
	}
	return out, nil
}

// grafanaVars replaces the dashboard's variables with values PromQL parses.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "${job}", "portcullis", "$job", "portcullis")

// TestDashboard: the Grafana dashboard is valid JSON whose every panel has
// queries; each query parses as PromQL and names only metrics the server
// exports; the chart ships it unchanged in a ConfigMap the sidecar finds.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("helm", "portcullis", "dashboards", "portcullis.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	exported := exportedMetrics(t)
	covered := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names, err := metricsIn(grafanaVars.Replace(tg.Expr))
			if err != nil {
				t.Errorf("panel %q: %s: %v", p.Title, tg.Expr, err)
			}
			for _, n := range names {
				covered[n] = true
				if !slices.Contains(exported, n) {
					t.Errorf("panel %q names %s, which the server does not export", p.Title, n)
				}
			}
		}
	}
	// The decisions, latency, cache, JWKS, reloads and key store are all on it.
	for _, want := range []string{"portcullis_checks_total", "portcullis_check_duration_seconds_bucket", "portcullis_token_cache_hits_total",
		"portcullis_jwks_fetches_total", "portcullis_policy_reloads_total", "portcullis_keystore_lag_seconds"} {
		if !covered[want] {
			t.Errorf("the dashboard shows no %s", want)
		}
	}
	out := runHelm(t, "template", "portcullis", filepath.Join("helm", "portcullis"), "-f", filepath.Join("test", "values-all.yaml"))
	var cm *corev1.ConfigMap
	for _, o := range decodeDocs(t, "helm template", out) {
		if c, ok := o.v.(*corev1.ConfigMap); ok && strings.HasSuffix(c.Name, "-dashboard") {
			cm = c
		}
	}
	if cm == nil || cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Platform" {
		t.Fatalf("no dashboard ConfigMap for Grafana's sidecar: %+v", cm)
	}
	if strings.TrimSpace(cm.Data["portcullis.json"]) != strings.TrimSpace(string(raw)) {
		t.Error("the ConfigMap's dashboard differs from dashboards/portcullis.json")
	}
}

// TestAlerts: the chart's PrometheusRule parses with Prometheus's own rule
// parser (every expression, duration and template), names only exported
// metrics, and holds the alerts operators rely on.
func TestAlerts(t *testing.T) {
	out := runHelm(t, "template", "portcullis", filepath.Join("helm", "portcullis"), "-f", filepath.Join("test", "values-all.yaml"))
	var pr *prometheusRule
	for _, o := range decodeDocs(t, "helm template", out) {
		if r, ok := o.v.(*prometheusRule); ok {
			pr = r
		}
	}
	if pr == nil {
		t.Fatal("no PrometheusRule rendered")
	}
	groups, err := yaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, errs := rulefmt.Parse(groups, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler)); len(errs) > 0 {
		t.Fatalf("the rules do not parse: %v\n%s", errs, groups)
	}
	exported := exportedMetrics(t)
	var alerts []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			names, err := metricsIn(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
			}
			for _, n := range names {
				if !slices.Contains(exported, n) {
					t.Errorf("%s names %s, which the server does not export", r.Alert, n)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s has no severity or summary", r.Alert)
			}
		}
	}
	for _, want := range []string{"PortcullisJWKSFetchFailing", "PortcullisPolicyReloadFailing", "PortcullisDenySpike", "PortcullisUnavailable",
		"PortcullisLatencyHigh", "PortcullisPanics", "PortcullisKeyStoreLagging", "PortcullisKeyStoreFeedDown"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no %s alert (have %v)", want, alerts)
		}
	}
	if !strings.Contains(string(groups), "> 0.005") {
		t.Error("alerts.latencyP99Seconds does not reach the latency alert")
	}
}
