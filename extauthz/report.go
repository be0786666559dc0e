package extauthz

// This file holds how the adapters report what an operator must hear of:
// recovered panics and misconfigured proxies.

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// recovered reports a panic recovered in where to o, with the goroutine's
// stack; without an observer it logs it on the default logger. Neither the
// stack (argument words only) nor policy.PanicValue holds request data.
func recovered(ctx context.Context, o Observer, where string, v any) {
	stack := debug.Stack()
	if o != nil {
		o.Panicked(ctx, where, v, stack)
		return
	}
	slog.ErrorContext(ctx, "check panicked", "where", where, "panic", policy.PanicValue(v), "stack", string(stack))
}

// warnLimiter logs each distinct warning at most once per interval, so a
// misconfigured proxy sending thousands of bad requests a second costs one
// log line, not thousands. It is safe for concurrent use.
type warnLimiter struct {
	log   *slog.Logger
	every time.Duration

	mu   sync.Mutex
	last map[string]time.Time
}

func newWarnLimiter(log *slog.Logger, every time.Duration) *warnLimiter {
	return &warnLimiter{log: log, every: every, last: map[string]time.Time{}}
}

// warn logs msg unless it was logged less than every ago. msg must never
// hold a value a client sent.
func (l *warnLimiter) warn(ctx context.Context, msg string) {
	if l.log == nil {
		return
	}
	now := time.Now()
	l.mu.Lock()
	if t, ok := l.last[msg]; ok && now.Sub(t) < l.every {
		l.mu.Unlock()
		return
	}
	if len(l.last) > 64 { // messages are constants; bound it anyway
		clear(l.last)
	}
	l.last[msg] = now
	l.mu.Unlock()
	l.log.WarnContext(ctx, "forward-auth request cannot be checked; denied 400", "problem", msg)
}
