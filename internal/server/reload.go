package server

// This file holds reloading: one goroutine takes reload requests from a
// channel (file changes, SIGHUP), loads the policy off to the side and
// publishes it only if it validates.

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/portcullis/portcullis/policy"
)

// reloadDebounce collapses the burst of events one edit makes (truncate +
// write, or a ConfigMap's symlink swap) into one reload.
const reloadDebounce = 150 * time.Millisecond

// inPlaceSettle is how long a file written in place must stay unchanged
// before it is read. An in-place write (truncate, then write) can be seen
// half-done; only atomic replacement is safe, and such a write is warned
// about, but a writer pausing for less than this is never read half-done.
const inPlaceSettle = 2 * time.Second

type reloadRequest struct {
	trigger string
	inPlace string // a watched file written in place, to warn about
}

// reloader reloads the policy on its own goroutine; the request path never
// waits for it, and neither does a signal.
type reloader struct {
	s          *Server
	requests   chan reloadRequest
	generation int64 // owned by the run goroutine
	watcher    *fsnotify.Watcher

	mu      sync.Mutex // guards what follows; never held during I/O
	dirs    map[string]bool
	names   map[string]bool
	timer   *time.Timer
	inPlace string
}

func newReloader(s *Server, snap *policy.Snapshot) *reloader {
	r := &reloader{s: s, requests: make(chan reloadRequest, 1), generation: 1, dirs: map[string]bool{}, names: map[string]bool{}}
	s.metrics.Serving(1, snap.Keys().Len())
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("file watching unavailable; reload with SIGHUP", "error", err.Error())
		return r
	}
	r.watcher = w
	r.watch(snap.Files())
	if s.shadow != nil {
		r.watch(s.shadow.Snapshot().Files())
	}
	go r.events(w)
	return r
}

// request queues a reload unless one is waiting already (which will read
// the files as they are then, so this one is covered).
func (r *reloader) request(req reloadRequest) {
	select {
	case r.requests <- req:
	default:
	}
}

// run serves reload requests until ctx ends.
func (r *reloader) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-r.requests:
			if req.inPlace != "" {
				r.s.log.Warn("policy file written in place: a write that pauses can be read half-done; "+
					"replace files atomically instead (write a temporary file, then rename it over this one), "+
					"as portcullis keys and Kubernetes volume mounts do", "file", req.inPlace)
			}
			r.reload(req.trigger)
		}
	}
}

// reload loads the policy and, if valid, publishes it; then the shadow
// policy, if any, the same way.
func (r *reloader) reload(trigger string) {
	r.reloadLive(trigger)
	if r.s.shadow != nil {
		r.reloadShadow(trigger)
	}
}

func (r *reloader) reloadShadow(trigger string) {
	s := r.s
	snap, err := s.loadShadow()
	if err != nil {
		s.metrics.ShadowReloaded(trigger, false)
		s.log.Error("shadow policy reload failed", "trigger", trigger, "policy", s.cfg.ShadowPolicy, "error", err.Error(),
			"action", "fix the file; the last good shadow policy keeps deciding beside the live one")
		return
	}
	s.metrics.ShadowReloaded(trigger, true)
	changed := snap.Version() != s.shadow.Snapshot().Version()
	if changed { // else only the live policy's files changed
		s.publishShadow(snap)
		r.watch(snap.Files())
	}
	s.log.Info("shadow policy reloaded", "trigger", trigger, "policy", s.cfg.ShadowPolicy, "policy_version", snap.Version(), "changed", changed)
}

func (r *reloader) reloadLive(trigger string) {
	s, start := r.s, time.Now()
	snap, err := policy.Load(s.cfg.Policy, policy.LoadOptions{JWKS: s.jwks})
	if err != nil {
		s.metrics.Reloaded(trigger, false)
		s.log.Error("policy reload failed",
			"trigger", trigger, "policy", s.cfg.Policy, "error", err.Error(),
			"serving_generation", r.generation, "action", "fix the file; the last good policy keeps serving")
		return
	}
	s.publish(snap)
	releaseLoadGarbage()
	r.generation++
	s.metrics.Reloaded(trigger, true)
	s.metrics.Serving(r.generation, snap.Keys().Len())
	r.watch(snap.Files())
	s.log.Info("policy reloaded", "trigger", trigger, "policy", s.cfg.Policy, "generation", r.generation,
		"policy_version", snap.Version(), "keys", snap.Keys().Len(), "took_ms", time.Since(start).Milliseconds())
	s.warn(snap)
}

// warn logs what the policy holds that loads but will not work as its
// author meant (policy.Snapshot.Warnings), one line each.
func (s *Server) warn(snap *policy.Snapshot) {
	for _, w := range snap.Warnings() {
		s.log.Warn("policy warning", "policy", s.cfg.Policy, "warning", w)
	}
}

// watch watches the folders of files. Folders, not files: an editor's
// atomic rename and a Kubernetes ConfigMap update (a "..data" symlink swap)
// both replace the file, which a watch on the file itself would lose.
func (r *reloader) watch(files []string) {
	if r.watcher == nil {
		return
	}
	var add []string
	r.mu.Lock()
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			continue
		}
		r.names[abs] = true
		if dir := filepath.Dir(abs); !r.dirs[dir] {
			r.dirs[dir] = true
			add = append(add, dir)
		}
	}
	r.mu.Unlock()
	for _, dir := range add {
		if err := r.watcher.Add(dir); err != nil {
			r.s.log.Warn("cannot watch policy folder; reload with SIGHUP", "dir", dir, "error", err.Error())
		}
	}
}

func (r *reloader) events(w *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if r.relevant(ev.Name) {
				r.schedule(ev)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			r.s.log.Warn("file watch error", "error", err.Error())
		}
	}
}

// relevant reports whether an event on name may change the policy: one of
// its files, or a Kubernetes "..data"-style entry beside them.
func (r *reloader) relevant(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[name] || strings.HasPrefix(filepath.Base(name), "..")
}

// schedule (re)starts the timer of the reload ev calls for: the file must
// have been quiet for reloadDebounce, or for inPlaceSettle once it was
// written in place rather than replaced.
func (r *reloader) schedule(ev fsnotify.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Has(fsnotify.Write) && r.names[ev.Name] {
		r.inPlace = ev.Name
	}
	wait := reloadDebounce
	if r.inPlace != "" {
		wait = inPlaceSettle
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	r.timer = time.AfterFunc(wait, func() {
		r.mu.Lock()
		name := r.inPlace
		r.inPlace = ""
		r.mu.Unlock()
		r.request(reloadRequest{trigger: "file", inPlace: name})
	})
}

func (r *reloader) close() {
	r.mu.Lock()
	if r.timer != nil {
		r.timer.Stop()
	}
	r.mu.Unlock()
	if r.watcher != nil {
		_ = r.watcher.Close()
	}
}
