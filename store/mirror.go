package store

// This file holds the mirror: every replica's in-memory copy of the store's
// keys, following its changes.

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis/portcullis/credits"
	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/keys"
)

// MirrorOptions tune a Mirror. Zero values take the defaults noted.
type MirrorOptions struct {
	// Poll is how often the change log is read even without a
	// notification, so a lost one costs at most this; default 500ms (at
	// most 2s): a change is refused within 1.1 s p99 with its notification
	// lost (docs/design.md §6), which a 1 s poll met with 0.1 s to spare.
	Poll time.Duration
	// MergeAt is how many changed keys the layers on top of the index may
	// hold before they are merged into it, off the feed's path; default 4096.
	MergeAt int
	// Log receives the feed's state changes; default slog.Default().
	Log *slog.Logger
}

// Mirror holds every key of the store in memory and follows the store's
// changes: it LISTENs on one dedicated connection first, then loads a
// consistent snapshot, then applies the changes after it in version order,
// on each notification and at least every Poll. While the database is
// unreachable it keeps serving the last view and reconnects (within a
// second). Its methods are safe for concurrent use; checks only ever read
// the published view, which each batch of changes replaces atomically.
type Mirror struct {
	connect func(ctx context.Context) (*pgx.Conn, error)
	opts    MirrorOptions

	view      atomic.Pointer[state]
	changed   atomic.Pointer[chan struct{}] // closed and replaced at each publish
	applied   atomic.Int64
	connected atomic.Bool
	inSync    atomic.Int64 // Unix nanoseconds when the mirror last saw it was current
	resyncs   atomic.Int64
	loaded    chan struct{}

	merged     chan merged // a merge's result, for the feed to publish
	merging    bool        // owned by the feed goroutine
	dirMerged  chan dirMerged
	dirMerging bool // owned by the feed goroutine
	loads      int  // owned by the feed goroutine: snapshots loaded
	down       bool // owned by the feed goroutine: an outage was logged
}

// state is what the mirror publishes: the keys and the directory of one
// moment of the store, read together by a check.
type state struct {
	keys    *keys.View
	dir     *directory.View
	wallets *credits.Wallets
}

// merged is an index a merge made from the view of the loads'th snapshot.
type merged struct {
	idx   *keys.Index
	loads int
}

// dirMerged is a directory table a merge made from the view of the
// loads'th snapshot.
type dirMerged struct {
	table *directory.Table
	loads int
}

// NewMirror returns a Mirror of the database config names. Nothing happens
// until Run.
func NewMirror(config *pgx.ConnConfig, opts MirrorOptions) *Mirror {
	if opts.Poll <= 0 || opts.Poll > 2*time.Second {
		opts.Poll = 500 * time.Millisecond
	}
	if opts.MergeAt <= 0 {
		opts.MergeAt = 4096
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	m := &Mirror{
		connect: func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, config.Copy()) },
		opts:    opts, loaded: make(chan struct{}), merged: make(chan merged, 1), dirMerged: make(chan dirMerged, 1),
	}
	ch := make(chan struct{})
	m.changed.Store(&ch)
	return m
}

// Wait returns once the mirror has applied version (or ctx ends): a
// caller that made a change waits for it to be in this replica's checks.
func (m *Mirror) Wait(ctx context.Context, version int64) error {
	for {
		ch := *m.changed.Load()
		if m.applied.Load() >= version {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Keys returns the keys as the mirror holds them now (empty before the
// first snapshot).
func (m *Mirror) Keys() keys.Set {
	if v := m.view.Load(); v != nil {
		return v.keys
	}
	return (*keys.View)(nil)
}

// Directory returns the directory as the mirror holds it now (empty
// before the first snapshot).
func (m *Mirror) Directory() directory.Set {
	if v := m.view.Load(); v != nil {
		return v.dir
	}
	return (*directory.View)(nil)
}

// View returns the keys, the directory and the wallets as the mirror
// holds them now, all of the same moment.
func (m *Mirror) View() (keys.Set, directory.Set, *credits.Wallets) {
	if v := m.view.Load(); v != nil {
		return v.keys, v.dir, v.wallets
	}
	return (*keys.View)(nil), (*directory.View)(nil), nil
}

// Wallets returns the wallets as the mirror holds them now.
func (m *Mirror) Wallets() *credits.Wallets {
	if v := m.view.Load(); v != nil {
		return v.wallets
	}
	return nil
}

// Loaded reports whether the first snapshot is in.
func (m *Mirror) Loaded() bool {
	select {
	case <-m.loaded:
		return true
	default:
		return false
	}
}

// LoadedC is closed once the first snapshot is in.
func (m *Mirror) LoadedC() <-chan struct{} { return m.loaded }

// Version returns the version of the latest change applied.
func (m *Mirror) Version() int64 { return m.applied.Load() }

// Connected reports whether the feed's connection is up.
func (m *Mirror) Connected() bool { return m.connected.Load() }

// Lag returns how long ago the mirror last saw it held every change
// committed (0 before the first snapshot).
func (m *Mirror) Lag(now time.Time) time.Duration {
	t := m.inSync.Load()
	if t == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, t))
}

// Resyncs returns how many full snapshots were loaded after the first.
func (m *Mirror) Resyncs() int64 { return m.resyncs.Load() }

// Run follows the store until ctx ends, reconnecting after every failure.
func (m *Mirror) Run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		ok := m.session(ctx)
		m.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if ok {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// session is one connection's life: LISTEN, load or catch up, then apply
// changes until the connection fails. It reports whether it got connected.
func (m *Mirror) session(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := m.connect(cctx)
	cancel()
	if err != nil {
		m.lost(ctx, err)
		return false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		m.lost(ctx, err)
		return false
	}
	m.connected.Store(true)
	if m.down {
		m.opts.Log.Info("key store feed reconnected", "applied_version", m.applied.Load())
		m.down = false
	}
	for {
		if err := m.catchUp(ctx, conn); err != nil {
			m.lost(ctx, err)
			return true
		}
		wctx, cancel := context.WithTimeout(ctx, m.opts.Poll)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true
		case err != nil && !pgconn.Timeout(err):
			m.lost(ctx, err)
			return true
		}
	}
}

// lost logs the first failure of an outage; the last view keeps serving.
func (m *Mirror) lost(ctx context.Context, err error) {
	if !m.down && ctx.Err() == nil {
		m.opts.Log.Warn("key store unreachable: serving the last mirror of its keys; retrying",
			"error", err.Error(), "applied_version", m.applied.Load())
		m.down = true
	}
}

// catchUp applies every change committed after the applied version, or
// loads everything when there is no view yet or the cursor is older than
// what the store retains. It runs in one REPEATABLE READ transaction, so
// what it reads is one consistent state of the store.
func (m *Mirror) catchUp(ctx context.Context, conn *pgx.Conn) error {
	m.publishMerged()
	m.publishDirMerged()
	return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var version, prunedBelow int64
		if err := tx.QueryRow(ctx, "SELECT version, pruned_below FROM portcullis_version").Scan(&version, &prunedBelow); err != nil {
			return err
		}
		cur := m.view.Load()
		switch {
		case cur == nil || m.applied.Load() < prunedBelow:
			return m.load(ctx, tx, version, cur != nil)
		case version == m.applied.Load():
			m.inSync.Store(time.Now().UnixNano())
			return nil
		}
		return m.apply(ctx, tx, cur, version)
	})
}

// load builds the view from every key, streamed.
func (m *Mirror) load(ctx context.Context, tx pgx.Tx, version int64, resync bool) error {
	var n int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM portcullis_keys WHERE revoked_at IS NULL").Scan(&n); err != nil {
		return err
	}
	b := keys.NewIndexBuilder(int(n))
	start := time.Now()
	rows, err := tx.Query(ctx, "SELECT "+keyColumns+" FROM portcullis_keys WHERE revoked_at IS NULL")
	if err != nil {
		return err
	}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			rows.Close()
			return err
		}
		for d, ak := range values(k) {
			b.AddValue(d, ak)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	dir, err := loadDirectory(ctx, tx)
	if err != nil {
		return err
	}
	ws, err := walletChanges(ctx, tx, 0, version, true)
	if err != nil {
		return err
	}
	m.loads++
	m.merging, m.dirMerging = false, false // a merge of the view before is of no use now
	// A resync is counted before its view is seen: whoever sees the view
	// sees the count.
	if resync {
		m.resyncs.Add(1)
	}
	m.publish(&state{keys: keys.NewView(b.Build()), dir: directory.NewView(dir, directory.NewLayer()), wallets: (*credits.Wallets)(nil).With(ws)}, version)
	tenants, members, users := dir.Counts()
	m.opts.Log.Info("key store loaded", "version", version, "keys", n, "tenants", tenants, "memberships", members, "users", users,
		"took_ms", time.Since(start).Milliseconds(), "resync", resync)
	return nil
}

// apply adds the changes after the applied version as one layer.
func (m *Mirror) apply(ctx context.Context, tx pgx.Tx, cur *state, version int64) error {
	rows, err := tx.Query(ctx, "SELECT "+keyColumns+" FROM portcullis_keys WHERE version > $1 AND version <= $2",
		m.applied.Load(), version)
	if err != nil {
		return err
	}
	changes := map[string]map[keys.Digest]keys.APIKey{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			rows.Close()
			return err
		}
		changes[k.ID] = values(k)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	dc, err := directoryChanges(ctx, tx, m.applied.Load(), version)
	if err != nil {
		return err
	}
	wc, err := walletChanges(ctx, tx, m.applied.Load(), version, false)
	if err != nil {
		return err
	}
	// The view is the index, a layer being merged into it if any, and the
	// top layer, which takes the changes; the directory likewise.
	layers, top := cur.keys.Layers(), keys.NewLayer()
	if n := len(layers); n > 0 {
		top, layers = layers[n-1], layers[:n-1]
	}
	top = top.With(changes)
	next := &state{keys: keys.NewView(cur.keys.Base(), append(append([]*keys.Layer(nil), layers...), top)...), dir: cur.dir, wallets: cur.wallets}
	if len(wc) > 0 {
		next.wallets = cur.wallets.With(wc)
	}
	if dc.Len() > 0 {
		dlayers := cur.dir.Layers()
		below := directory.NewView(cur.dir.Base(), dlayers[:len(dlayers)-1]...)
		dtop := dlayers[len(dlayers)-1].With(dc, below)
		next.dir = directory.NewView(cur.dir.Base(), append(append([]*directory.Layer(nil), dlayers[:len(dlayers)-1]...), dtop)...)
	}
	m.publish(next, version)
	m.opts.Log.Debug("key store changes applied", "version", version, "keys_changed", len(changes), "directory_changed", dc.Len())
	if top.Len() >= m.opts.MergeAt && !m.merging {
		m.merge(next)
	}
	if l := next.dir.Layers(); l[len(l)-1].Len() >= m.opts.MergeAt && !m.dirMerging {
		m.mergeDirectory(next)
	}
	return nil
}

// merge folds the view's key layers into a new index off the feed's path;
// changes arriving meanwhile go to a new layer above them.
func (m *Mirror) merge(s *state) {
	m.merging = true
	v := s.keys
	m.publish(&state{keys: keys.NewView(v.Base(), append(append([]*keys.Layer(nil), v.Layers()...), keys.NewLayer())...), dir: s.dir, wallets: s.wallets}, m.applied.Load())
	loads := m.loads
	go func() { m.merged <- merged{idx: v.Merge(), loads: loads} }()
}

// publishMerged replaces the base and the layers a finished merge folded.
func (m *Mirror) publishMerged() {
	select {
	case r := <-m.merged:
		if r.loads != m.loads || !m.merging {
			return // a snapshot was loaded since: the merge is stale
		}
		cur := m.view.Load()
		layers := cur.keys.Layers()
		m.publish(&state{keys: keys.NewView(r.idx, layers[len(layers)-1]), dir: cur.dir, wallets: cur.wallets}, m.applied.Load())
		m.merging = false
	default:
	}
}

// mergeDirectory folds the view's directory layers into a new table off
// the feed's path, as merge does for keys.
func (m *Mirror) mergeDirectory(s *state) {
	m.dirMerging = true
	v := s.dir
	cur := m.view.Load()
	m.publish(&state{keys: cur.keys, dir: directory.NewView(v.Base(), append(append([]*directory.Layer(nil), v.Layers()...), directory.NewLayer())...), wallets: cur.wallets}, m.applied.Load())
	loads := m.loads
	go func() { m.dirMerged <- dirMerged{table: v.Merge(), loads: loads} }()
}

// publishDirMerged replaces the directory's base and the layers a
// finished merge folded.
func (m *Mirror) publishDirMerged() {
	select {
	case r := <-m.dirMerged:
		if r.loads != m.loads || !m.dirMerging {
			return
		}
		cur := m.view.Load()
		layers := cur.dir.Layers()
		m.publish(&state{keys: cur.keys, dir: directory.NewView(r.table, layers[len(layers)-1]), wallets: cur.wallets}, m.applied.Load())
		m.dirMerging = false
	default:
	}
}

func (m *Mirror) publish(v *state, version int64) {
	m.view.Store(v)
	m.applied.Store(version)
	m.inSync.Store(time.Now().UnixNano())
	next := make(chan struct{})
	close(*m.changed.Swap(&next))
	select {
	case <-m.loaded:
	default:
		close(m.loaded)
	}
}

// values returns what a check may find of k: nothing for a deleted key;
// else its current value and, during a refresh's overlap, its old one.
func values(k Key) map[keys.Digest]keys.APIKey {
	out := map[keys.Digest]keys.APIKey{}
	if !k.RevokedAt.IsZero() {
		return out
	}
	cur := keys.NewAPIKey(k.ID, k.Tenant, k.User, k.Tier, k.Disabled, false, k.ExpiresAt, k.Limit)
	out[k.Digest] = cur
	if p := k.Previous; p != nil {
		until := p.Expires
		if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(until) {
			until = k.ExpiresAt
		}
		out[p.Digest] = keys.NewAPIKey(k.ID, k.Tenant, k.User, k.Tier, k.Disabled, true, until, k.Limit)
	}
	return out
}

// LoadOnce returns a mirror holding every key of the store as it is now,
// and following nothing: for one-off commands (portcullis check).
func LoadOnce(ctx context.Context, config *pgx.ConnConfig) (*Mirror, error) {
	m := NewMirror(config, MirrorOptions{Log: slog.New(slog.DiscardHandler)})
	conn, err := m.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := m.catchUp(ctx, conn); err != nil {
		return nil, err
	}
	return m, nil
}
