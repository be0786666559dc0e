package main

import (
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/portcullis/portcullis/cache"
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

// reloader loads a new policy snapshot and publishes it, keeping the last
// good one when the new files do not validate. Reloads are serialized; the
// request path never waits for one.
type reloader struct {
	path  string
	eng   *policy.Engine
	jwks  *cache.Registry
	m     *metrics
	log   *slog.Logger
	usage *usage

	reloading  sync.Mutex // serializes reloads (file I/O happens under it)
	generation int64      // guarded by reloading
	watcher    *fsnotify.Watcher

	mu      sync.Mutex // guards what follows; never held during I/O
	dirs    map[string]bool
	names   map[string]bool
	timer   *time.Timer
	inPlace string // a watched file written in place since the last reload
}

// reload loads the policy and, if valid, swaps it in. It reports success.
func (r *reloader) reload(trigger string) bool {
	r.reloading.Lock()
	defer r.reloading.Unlock()
	start := time.Now()
	snap, err := loadPolicy(r.path, r.jwks)
	if err != nil {
		r.m.reloads.WithLabelValues(trigger, "failure").Inc()
		r.log.Error("policy reload failed",
			"trigger", trigger, "policy", r.path, "error", err.Error(),
			"serving_generation", r.generation, "action", "fix the file; the last good policy keeps serving")
		return false
	}
	r.eng.Swap(snap)
	r.jwks.Commit(snap.Remotes())
	releaseLoadGarbage()
	if r.usage != nil {
		r.usage.track(snap)
	}
	r.generation++
	r.m.reloads.WithLabelValues(trigger, "success").Inc()
	r.m.generation.Set(float64(r.generation))
	r.m.keys.Set(float64(len(snap.Keys())))
	r.watchFiles(snap.Files())
	r.log.Info("policy reloaded", "trigger", trigger, "policy", r.path, "generation", r.generation,
		"version", snap.Version(), "keys", len(snap.Keys()), "took_ms", time.Since(start).Milliseconds())
	return true
}

// start publishes the first snapshot (generation 1) and begins watching
// its files.
func (r *reloader) start(snap *policy.Snapshot) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	r.watcher = w
	r.dirs, r.names = map[string]bool{}, map[string]bool{}
	r.generation = 1
	r.m.generation.Set(1)
	r.m.keys.Set(float64(len(snap.Keys())))
	r.watchFiles(snap.Files())
	go r.loop(w)
	return nil
}

// watchFiles watches the folders of files. Folders, not files: an editor's
// atomic rename and a Kubernetes ConfigMap update (a "..data" symlink swap)
// both replace the file, which a watch on the file itself would lose.
func (r *reloader) watchFiles(files []string) {
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
			r.log.Warn("cannot watch policy folder; reload with SIGHUP", "dir", dir, "error", err.Error())
		}
	}
}

func (r *reloader) loop(w *fsnotify.Watcher) {
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
			r.log.Warn("file watch error", "error", err.Error())
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
		if name != "" {
			r.log.Warn("policy file written in place: a write that pauses can be read half-done; "+
				"replace files atomically instead (write a temporary file, then rename it over this one), "+
				"as portcullis keys and Kubernetes volume mounts do", "file", name)
		}
		r.reload("file")
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
