package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/internal/testkit"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopSharedPostgreSQL()
	os.Exit(code)
}

// env is a migrated database with a store and a running mirror.
type env struct {
	dsn    string
	store  *store.Store
	mirror *store.Mirror
}

func newEnv(t *testing.T, pg *testkit.PostgreSQL, opts store.MirrorOptions) *env {
	t.Helper()
	return newEnvOn(t, pg.Database(t), opts)
}

// newEnvOn is newEnv on an existing database.
func newEnvOn(t *testing.T, dsn string, opts ...store.MirrorOptions) *env {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var o store.MirrorOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	m := store.NewMirror(cfg, o)
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(mctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &env{dsn: dsn, store: store.New(pool), mirror: m}
}

func (e *env) wait(t *testing.T, version int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.mirror.Wait(ctx, version); err != nil {
		t.Fatalf("mirror at version %d, waiting for %d: %v", e.mirror.Version(), version, err)
	}
}

func (e *env) create(t *testing.T, id, user, plain string) store.Key {
	t.Helper()
	k, err := e.store.Create(context.Background(), store.NewKey{ID: id, User: user, Tier: "service", Label: id,
		CreatedBy: "test", Digest: keys.DigestOf(plain), Start: plain[:4], CreatedAt: time.Now()}, store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (e *env) found(plain string) bool {
	_, ok := e.mirror.Keys().Lookup(keys.DigestOf(plain))
	return ok
}

func all(store.Key) bool { return true }

// TestMigrateIsIdempotent: migrating twice, or from two replicas at once,
// leaves one schema.
func TestMigrateIsIdempotent(t *testing.T) {
	pg := testkit.SharedPostgreSQL(t)
	pool, err := pgxpool.New(context.Background(), pg.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := store.Migrate(context.Background(), pool)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if v, err := store.Migrate(context.Background(), pool); err != nil || v != 6 {
		t.Fatalf("schema %d, %v", v, err)
	}
}

// TestMirrorFollowsChanges: creates, refreshes with and without overlap,
// disables and deletes reach the mirror in version order; between merges
// and after them, every lookup answers as the store does.
func TestMirrorFollowsChanges(t *testing.T) {
	e := newEnv(t, testkit.SharedPostgreSQL(t), store.MirrorOptions{MergeAt: 3})
	ctx := context.Background()
	for i := range 10 {
		k := e.create(t, fmt.Sprint("k", i), "u", fmt.Sprint("value-", i))
		e.wait(t, k.Version)
	}
	for i := range 10 {
		if !e.found(fmt.Sprint("value-", i)) {
			t.Fatalf("key %d not mirrored", i)
		}
	}
	k, err := e.store.Refresh(ctx, "k1", store.Refresh{Digest: keys.DigestOf("value-1b"), Start: "valu", Overlap: time.Hour, Now: time.Now()}, "test", all)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(t, k.Version)
	if !e.found("value-1") || !e.found("value-1b") {
		t.Fatal("during the overlap both values must be found")
	}
	if old, _ := e.mirror.Keys().Lookup(keys.DigestOf("value-1")); !old.Rotated {
		t.Error("the old value is not marked as old")
	}
	k, _ = e.store.Refresh(ctx, "k1", store.Refresh{Digest: keys.DigestOf("value-1c"), Start: "valu", Now: time.Now()}, "test", all)
	e.wait(t, k.Version)
	if e.found("value-1") || e.found("value-1b") || !e.found("value-1c") {
		t.Fatal("a refresh without overlap must drop every old value")
	}
	off := true
	k, _ = e.store.Update(ctx, "k2", store.Patch{Disabled: &off}, "test", all)
	e.wait(t, k.Version)
	if got, _ := e.mirror.Keys().Lookup(keys.DigestOf("value-2")); !got.Disabled {
		t.Fatal("disable not mirrored")
	}
	v, err := e.store.Delete(ctx, "k3", "test", all)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(t, v)
	if e.found("value-3") {
		t.Fatal("a deleted key is still found")
	}
	ids, v, err := e.store.DeleteAll(ctx, store.Scope{All: true}, store.Filter{User: "u"}, "test")
	if err != nil || len(ids) != 9 {
		t.Fatalf("deleted %v, %v", ids, err)
	}
	e.wait(t, v)
	for i := range 10 {
		if e.found(fmt.Sprint("value-", i)) || e.found("value-1c") {
			t.Fatalf("key %d found after deleting all", i)
		}
	}
	if _, err := e.store.Get(ctx, "k4"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get of a deleted key: %v", err)
	}
	if _, err := e.store.Delete(ctx, "k4", "test", all); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

// TestLimitsUnderConcurrency: 20 concurrent creates against a limit of 5
// leave exactly 5 keys, and the refused ones change nothing.
func TestLimitsUnderConcurrency(t *testing.T) {
	e := newEnv(t, testkit.SharedPostgreSQL(t), store.MirrorOptions{})
	ctx := context.Background()
	before, _ := e.store.Version(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, limited, made := 0, 0, ""
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			plain := fmt.Sprint("concurrent-", i)
			_, err := e.store.Create(ctx, store.NewKey{ID: fmt.Sprint("c", i), User: "u", Tier: "service", Label: "c",
				CreatedBy: "test", Digest: keys.DigestOf(plain), Start: "conc", CreatedAt: time.Now()}, store.Limits{PerUser: 5})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok, made = ok+1, fmt.Sprint("c", i)
			case errors.Is(err, store.ErrLimit):
				limited++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 5 || limited != 15 {
		t.Fatalf("%d created, %d refused; want 5 and 15", ok, limited)
	}
	after, _ := e.store.Version(ctx)
	if after-before != 5 {
		t.Fatalf("version moved by %d: a refused create changed something", after-before)
	}
	if _, err := e.store.Create(ctx, store.NewKey{ID: made, User: "other", Tier: "service", Label: "c", CreatedBy: "test",
		Digest: keys.DigestOf("another"), Start: "anot", CreatedAt: time.Now()}, store.Limits{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a taken id: %v", err)
	}
}

// TestLostNotificationsArePolled: changes that send no notification reach
// the mirror through its poll.
func TestLostNotificationsArePolled(t *testing.T) {
	e := newEnv(t, testkit.SharedPostgreSQL(t), store.MirrorOptions{Poll: 200 * time.Millisecond})
	quiet := &env{store: e.store.WithoutNotify(), mirror: e.mirror}
	k := quiet.create(t, "quiet", "u", "quiet-value")
	e.wait(t, k.Version)
	if !e.found("quiet-value") {
		t.Fatal("not mirrored")
	}
	v, _ := quiet.store.Delete(context.Background(), "quiet", "test", all)
	e.wait(t, v)
	if e.found("quiet-value") {
		t.Fatal("a silent delete was not polled")
	}
}

// TestPrunedCursorReloads: a mirror whose cursor is older than what the
// store pruned loads everything again.
func TestPrunedCursorReloads(t *testing.T) {
	pg := testkit.SharedPostgreSQL(t)
	e := newEnv(t, pg, store.MirrorOptions{Poll: 200 * time.Millisecond})
	k := e.create(t, "a", "u", "value-a")
	e.wait(t, k.Version)
	// While the mirror cannot see it: delete, prune, and a new key.
	quiet := e.store.WithoutNotify()
	if _, err := quiet.Delete(context.Background(), "a", "test", all); err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, e.dsn, "UPDATE portcullis_keys SET revoked_at = now() - interval '2 days' WHERE id = 'a'")
	if n, err := quiet.Prune(context.Background(), time.Now().Add(-24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	// One more change: by the time the mirror has it, it has seen that its
	// cursor fell behind what was pruned, whenever it polled.
	k = e.create(t, "b", "u", "value-b")
	e.wait(t, k.Version)
	if e.found("value-a") || !e.found("value-b") {
		t.Fatal("a pruned key is still found, or the later one is not")
	}
	if e.mirror.Resyncs() != 1 {
		t.Errorf("%d resyncs, want 1", e.mirror.Resyncs())
	}
}

// TestMirrorSurvivesTheDatabase: the listener's backend killed, the server
// stopped and started again: the last view keeps answering, the mirror
// reconnects and catches up.
func TestMirrorSurvivesTheDatabase(t *testing.T) {
	pg := testkit.NewPostgreSQL(t)
	e := newEnv(t, pg, store.MirrorOptions{Poll: 200 * time.Millisecond})
	k := e.create(t, "a", "u", "value-a")
	e.wait(t, k.Version)
	pg.Exec(t, e.dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%portcullis_version%' AND pid <> pg_backend_pid()")
	k = e.create(t, "b", "u", "value-b")
	e.wait(t, k.Version)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if !e.found("value-a") || !e.found("value-b") {
		t.Fatal("the last mirror stopped answering while the database is down")
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	e.store.Pool().Reset()
	k = e.create(t, "c", "u", "value-c")
	e.wait(t, k.Version)
	if !e.found("value-c") || !e.mirror.Connected() {
		t.Fatal("not caught up after the restart")
	}
}

// TestUsageFlushWhileRecording: checks recorded from many goroutines while
// flushes run (recording takes no lock, a flush swaps the counters out) are
// each counted once: none lost, none twice.
func TestUsageFlushWhileRecording(t *testing.T) {
	e := newEnv(t, testkit.SharedPostgreSQL(t), store.MirrorOptions{})
	e.create(t, "busy", "u", "value-busy")
	ctx := context.Background()
	u := store.NewUsage(e.store.Pool())
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				u.Record("busy", (i+w)%3 != 0, time.Now())
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for flushing := true; flushing; {
		select {
		case <-done:
			flushing = false
		default:
		}
		if _, err := u.Flush(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	days, err := e.store.Days(ctx, "busy", time.Now().Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, d := range days {
		total += d.Allowed + d.Denied
	}
	if total != workers*each {
		t.Fatalf("%d checks counted, %d recorded", total, workers*each)
	}
	if p := u.Pending("busy"); len(p) != 0 {
		t.Fatalf("pending after the last flush: %v", p)
	}
}

// TestUsageReadDuringFlushes: a reader asking for a key's usage while
// flushes run sees every count recorded before it asked, and none twice:
// a flush's counts are never in neither place (taken from memory, not yet
// committed) nor in both.
func TestUsageReadDuringFlushes(t *testing.T) {
	e := newEnv(t, testkit.SharedPostgreSQL(t), store.MirrorOptions{})
	e.create(t, "read", "u", "value-read")
	ctx := context.Background()
	u := store.NewUsage(e.store.Pool())
	var recorded atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			u.Record("read", true, time.Now())
			recorded.Add(1)
			if _, err := u.Flush(ctx, time.Now()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 300 {
		before := recorded.Load()
		days, err := u.Days(ctx, e.store, "read", time.Now().Add(-48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		after := recorded.Load()
		var seen int64
		for _, d := range days {
			seen += d.Allowed + d.Denied
		}
		if seen < before || seen > after+1 {
			close(stop)
			wg.Wait()
			t.Fatalf("read %d checks; %d were recorded before the read and %d after", seen, before, after)
		}
	}
	close(stop)
	wg.Wait()
}

// TestUsageFlush: counts from two recorders add up; last_used_at only
// moves forward.
func TestUsageFlush(t *testing.T) {
	e := newEnv(t, testkit.SharedPostgreSQL(t), store.MirrorOptions{})
	e.create(t, "a", "u", "value-a")
	ctx := context.Background()
	now := time.Now().UTC()
	r1, r2 := store.NewUsage(e.store.Pool()), store.NewUsage(e.store.Pool())
	for range 3 {
		r1.Record("a", true, now)
	}
	r2.Record("a", false, now)
	r2.Record("a", true, now.Add(-time.Hour))
	if _, err := r1.Flush(ctx, now); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Flush(ctx, now); err != nil {
		t.Fatal(err)
	}
	days, err := e.store.Days(ctx, "a", now.Add(-48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var allowed, denied int64
	for _, d := range days {
		allowed, denied = allowed+d.Allowed, denied+d.Denied
	}
	if allowed != 4 || denied != 1 {
		t.Fatalf("days %+v", days)
	}
	k, _ := e.store.Get(ctx, "a")
	if !k.LastUsedAt.Truncate(time.Second).Equal(now.Truncate(time.Second)) && k.LastUsedAt.Before(now.Add(-time.Second)) {
		t.Fatalf("last_used_at %v, want %v (the older use must not move it back)", k.LastUsedAt, now)
	}
}
