package server

// This file holds the shadow policy: every check decided by a second
// policy beside the live one, compared, and never changing the answer.

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// shadowLogsPerSecond bounds the disagreement lines: a shadow policy that
// differs on every check must not flood the log (the metric counts all).
const shadowLogsPerSecond = 20

// shadowed decides with the live engine and, beside it, the shadow engine
// (same request, same decision id). Its answer is always the live one.
type shadowed struct {
	live, shadow *policy.Engine
	s            *Server

	mu         sync.Mutex
	window     time.Time // the second the lines below were logged in
	logged     int
	suppressed int
}

func (d *shadowed) Decide(ctx context.Context, req policy.Request) policy.Decision {
	if req.ID == "" {
		req.ID = policy.DecisionID(req.Headers["x-request-id"])
	}
	live := d.live.Decide(ctx, req)
	shadow := d.shadow.Decide(ctx, req) // never fails: a panic there is its own deny
	same := live.Allow == shadow.Allow && live.Reason == shadow.Reason && live.Tier == shadow.Tier &&
		live.Tenant == shadow.Tenant && live.User == shadow.User
	d.s.metrics.Shadowed(same, live.Reason, shadow.Reason)
	if !same {
		d.disagreed(ctx, req, &live, &shadow)
	}
	return live
}

// disagreed logs one disagreement, unless this second's lines are spent;
// the next line logged says how many were not.
func (d *shadowed) disagreed(ctx context.Context, req policy.Request, live, shadow *policy.Decision) {
	now := time.Now()
	d.mu.Lock()
	if now.Sub(d.window) >= time.Second {
		d.window, d.logged = now, 0
	}
	if d.logged >= shadowLogsPerSecond {
		d.suppressed++
		d.mu.Unlock()
		return
	}
	d.logged++
	suppressed := d.suppressed
	d.suppressed = 0
	d.mu.Unlock()
	path := req.Path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i] // a query string may hold secrets
	}
	d.s.log.LogAttrs(ctx, slog.LevelInfo, "shadow disagreement",
		slog.String("request_id", live.ID), slog.String("method", req.Method), slog.String("path", path),
		slog.Bool("live_allow", live.Allow), slog.String("live_reason", string(live.Reason)),
		slog.String("live_tier", live.Tier), slog.String("live_tenant", live.Tenant),
		slog.Bool("shadow_allow", shadow.Allow), slog.String("shadow_reason", string(shadow.Reason)),
		slog.String("shadow_tier", shadow.Tier), slog.String("shadow_tenant", shadow.Tenant),
		slog.String("shadow_policy_version", shadow.PolicyVersion), slog.Int("not_logged_before", suppressed))
}
